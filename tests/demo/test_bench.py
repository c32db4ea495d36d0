"""``aeronpy bench --quick``: runs both systems and reports figures for each.

Speed is a benchmark matter: figures are printed, never asserted. The test checks that the
benchmark measured every part on both systems and that its comparison arithmetic is right.
"""
import json
import os
import subprocess
import sys

import pytest

from aeronpy import bench
from aeronpy.testing.process_cluster import child_env


@pytest.mark.process
def test_quick_bench_reports_numbers_for_both_systems(tmp_path):
    try:
        import pysyncobj  # noqa: F401
    except ImportError:
        pytest.skip("pysyncobj is not importable (pip install pysyncobj==0.3.17)")
    # not from the source tree: ``-m`` puts the working directory first on sys.path
    proc = subprocess.run([sys.executable, "-m", "aeronpy", "bench", "--quick", "--json"],
                          capture_output=True, text=True, timeout=150, env=child_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    print(bench.format_table(report))
    rows = {r["metric"]: r for r in report["rows"]}
    for metric in ("throughput 32 B (msgs/s)", "1-at-a-time 32 B p50 (us)",
                   "1-at-a-time 32 B p99 (us)", "failover gap (ms)"):
        assert rows[metric]["aeronpy"] and rows[metric]["aeronpy"] > 0, metric
        assert rows[metric]["pysyncobj"] and rows[metric]["pysyncobj"] > 0, metric
        assert rows[metric]["ratio"] and rows[metric]["ratio"] > 0, metric
    assert rows["open loop 32 B p50 (us)"]["aeronpy"] > 0
    # the like-for-like row: PySyncObj's commands from a client process, as aeronpy's are
    via_client = rows[f"  {bench.CLIENT_ROWS} 32 B p50 (us)"]
    assert via_client["aeronpy"] == rows["1-at-a-time 32 B p50 (us)"]["aeronpy"]
    assert via_client["pysyncobj"] > 0 and via_client["ratio"] > 0
    [client_run] = [r for r in report["pysyncobj"] if r["mode"] == "latency-client"]
    front = client_run["frontend"]             # every command the client timed went through it
    assert front["answered"] >= client_run["commands"] > 0 and front["short"] == 0
    [open_loop] = [r for r in report["aeronpy"] if r["mode"] == "latency" and r["msg_size"] == 32]
    cpu = open_loop["cpu_us_per_request"]         # every process of the run, from /proc
    assert {"leader", "client", "all"} <= set(cpu) and len(cpu) == 5
    assert sum(1 for k in cpu if k.startswith("follower ")) == 2
    assert all(v > 0 for v in cpu.values()) and cpu["all"] >= cpu["leader"] + cpu["client"]
    assert report["machine"]["nproc"] >= 1
    assert {r["system"] for r in report["pysyncobj"]} == {"pysyncobj"}
    if hasattr(os, "SCHED_BATCH"):                # the default policy, said in the table
        assert report["sched_policy"] == "batch"
        assert "scheduling: SCHED_BATCH for aeronpy's nodes and client" in bench.format_table(report)


def test_ratios_say_how_many_times_better_aeronpy_is():
    aeron = [{"system": "aeronpy", "mode": "throughput", "msg_size": 32, "msgs_per_s": 300.0},
             {"system": "aeronpy", "mode": "latency-serial", "msg_size": 32, "achieved_rate": 10.0,
              "latency": {"p50_us": 100.0, "p90_us": 1, "p99_us": 1, "p99_9_us": 1, "max_us": 1}},
             {"system": "aeronpy", "mode": "failover", "msg_size": 32, "failover_gap_ms": 500.0}]
    pso = [{"system": "pysyncobj", "mode": "throughput", "msg_size": 32, "msgs_per_s": 100.0},
           {"system": "pysyncobj", "mode": "latency", "msg_size": 32, "achieved_rate": 5.0,
            "latency": {"p50_us": 400.0, "p90_us": 1, "p99_us": 1, "p99_9_us": 1, "max_us": 1}},
           {"system": "pysyncobj", "mode": "failover", "msg_size": 32, "failover_gap_ms": 250.0}]
    rows = {r["metric"]: r["ratio"] for r in bench.compare(aeron, pso, [32])}
    assert not any(bench.CLIENT_ROWS in m for m in rows)       # that run was not made
    assert rows["throughput 32 B (msgs/s)"] == 3.0           # higher is better
    assert rows["1-at-a-time 32 B p50 (us)"] == 4.0          # lower is better
    assert rows["failover gap (ms)"] == 0.5                  # aeronpy worse here
    assert rows["open loop 32 B p50 (us)"] is None           # not measured: no ratio
    targets = bench.check_targets(aeron, bench.compare(aeron, pso, [32]))
    assert targets["failover gap < 1 s"]["met"] is True
    assert targets["throughput >= 200,000 msgs/s"]["met"] is False
    assert targets["p50 <= 100 us at 10k/s (open loop)"]["met"] is None


def test_pysyncobj_via_a_client_has_rows_of_its_own():
    aeron = [{"system": "aeronpy", "mode": "latency-serial", "msg_size": 32, "achieved_rate": 10.0,
              "latency": {"p50_us": 200.0, "p90_us": 300.0, "p99_us": 400.0, "p99_9_us": 1,
                          "max_us": 1}}]
    pso = [{"system": "pysyncobj", "mode": "latency", "msg_size": 32, "achieved_rate": 5.0,
            "latency": {"p50_us": 100.0, "p90_us": 1, "p99_us": 1, "p99_9_us": 1, "max_us": 1}},
           {"system": "pysyncobj", "mode": "latency-client", "msg_size": 32, "achieved_rate": 4.0,
            "latency": {"p50_us": 300.0, "p90_us": 300.0, "p99_us": 200.0, "p99_9_us": 1,
                        "max_us": 1}}]
    rows = {r["metric"]: r for r in bench.compare(aeron, pso, [32])}
    assert rows["1-at-a-time 32 B p50 (us)"]["ratio"] == 0.5         # inside its leader
    p50 = rows[f"  {bench.CLIENT_ROWS} 32 B p50 (us)"]
    assert (p50["aeronpy"], p50["pysyncobj"], p50["ratio"]) == (200.0, 300.0, 1.5)
    assert rows[f"  {bench.CLIENT_ROWS} 32 B p90 (us)"]["ratio"] == 1.0
    assert rows[f"  {bench.CLIENT_ROWS} 32 B p99 (us)"]["ratio"] == 0.5
    # the target stays on the in-leader figure, PySyncObj's best case
    targets = bench.check_targets(aeron, list(rows.values()))
    assert targets["p50 >= 5x better than PySyncObj"]["achieved"] == 0.5
    report = {"machine": {}, "duration_s": 1, "rows": list(rows.values()), "aeronpy": aeron,
              "pysyncobj": pso, "targets": {}, "pysyncobj_version": "0.3.17"}
    table = bench.format_table(report)
    assert f"'{bench.CLIENT_ROWS}': PySyncObj's commands sent from a client process" in table
    report["rows"] = [r for r in report["rows"] if bench.CLIENT_ROWS not in r["metric"]]
    assert "from a client process over UDP, as" not in bench.format_table(report)


def test_bad_arguments_are_refused(capsys):
    assert bench.main(["--sizes", "a,b", "--no-pysyncobj"]) == 2
    assert bench.main(["--duration", "-1", "--no-pysyncobj"]) == 2
    assert "positive" in capsys.readouterr().err


def test_file_sync_reaches_the_benchmarks_cluster():
    cluster = bench._cluster(file_sync="data")
    try:
        with open(cluster.config_path) as f:
            text = f.read()
        assert 'file_sync = "data"' in text
    finally:
        cluster.close()


@pytest.mark.process
def test_quick_bench_with_file_sync_data_reports_it(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "aeronpy", "bench", "--quick", "--no-pysyncobj",
                           "--file-sync", "data", "--json"],
                          capture_output=True, text=True, timeout=150, env=child_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["file_sync"] == "data"
    table = bench.format_table(report)
    assert "aeronpy file_sync: data (every member fsyncs" in table
    assert table.startswith("aeronpy alone (--no-pysyncobj): 3 processes")
    rows = {r["metric"]: r for r in report["rows"]}
    assert rows["1-at-a-time 32 B p50 (us)"]["aeronpy"] > 0
    assert rows["failover gap (ms)"]["aeronpy"] > 0


def test_a_bad_file_sync_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--file-sync", "sometimes", "--no-pysyncobj"])
    assert exc.value.code == 2
    assert "--file-sync" in capsys.readouterr().err


def test_machine_info_reports_guest_halt_polling(tmp_path):
    path = tmp_path / "guest_halt_poll_ns"
    path.write_text("200000\n")
    assert bench._guest_halt_poll_ns(str(path)) == 200000
    assert bench._guest_halt_poll_ns(str(tmp_path / "absent")) is None
    path.write_text("garbage")
    assert bench._guest_halt_poll_ns(str(path)) is None
    report = {"machine": {"nproc": 2, "guest_halt_poll_ns": 0, "date": "d"}, "duration_s": 1,
              "rows": [], "aeronpy": [], "pysyncobj": [], "targets": {}}
    assert ", guest_halt_poll_ns 0" in bench.format_table(report)


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux-only")
@pytest.mark.parametrize("policy, expected", [("batch", "SCHED_BATCH"), ("normal", "SCHED_OTHER")])
def test_sched_policy_reaches_started_processes_and_is_put_back(policy, expected):
    child = [sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"]
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    with bench.sched_policy(policy) as in_force:
        assert in_force == policy
        assert os.sched_getscheduler(0) == getattr(os, expected)
        started = subprocess.run(child, capture_output=True, text=True, timeout=30)
        assert int(started.stdout) == getattr(os, expected)       # inherited by what we start
    assert os.sched_getscheduler(0) == os.SCHED_OTHER               # put back


def test_sched_policy_reaches_the_benchmarks_cluster_config():
    cluster = bench._cluster(sched_policy="batch")
    try:
        with open(cluster.config_path) as f:
            assert 'sched_policy = "batch"' in f.read()
    finally:
        cluster.close()


def test_a_bad_sched_policy_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--sched-policy", "fifo", "--no-pysyncobj"])
    assert exc.value.code == 2
    assert "--sched-policy" in capsys.readouterr().err


def test_a_refused_sched_policy_runs_under_the_default_and_says_so(monkeypatch, capsys):
    def refused(*_args):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "SCHED_BATCH", getattr(os, "SCHED_BATCH", 3), raising=False)
    monkeypatch.setattr(os, "sched_getscheduler", lambda _pid: 0, raising=False)
    monkeypatch.setattr(os, "sched_getparam", lambda _pid: None, raising=False)
    monkeypatch.setattr(os, "sched_setscheduler", refused, raising=False)
    with bench.sched_policy("batch") as in_force:
        assert in_force == "normal"
    assert "SCHED_BATCH refused" in capsys.readouterr().err


def test_a_bad_host_is_refused(capsys):
    for host in ("no-such-host.invalid", "fe80::1"):
        assert bench.main(["--host", host, "--no-pysyncobj"]) == 2
        assert f"--host {host!r}" in capsys.readouterr().err


def test_host_puts_the_benchmarks_cluster_on_ipv6_and_the_table_says_so():
    try:
        cluster = bench._cluster(host="::1")
    except OSError as exc:      # a machine without IPv6 loopback
        pytest.skip(f"no IPv6 loopback: {exc}")
    try:
        with open(cluster.config_path) as f:
            assert f.read().count('host = "::1"') == 3
        assert all(e.startswith("[::1]:") for e in cluster.ingress_endpoints.split(","))
        client = bench._connect(cluster)                 # the cluster serves on IPv6
        try:
            assert bytes(client.request(b"ping", timeout_s=10)) == b"ping"
        finally:
            client.close()
    finally:
        cluster.close()
    report = {"machine": {}, "duration_s": 1.0, "host": "::1", "rows": [], "targets": {},
              "aeronpy": [], "pysyncobj": []}
    assert "aeronpy alone (--no-pysyncobj): 3 processes on ::1," in bench.format_table(report)
    report.update(pysyncobj=[{"system": "pysyncobj", "mode": "x"}], pysyncobj_version="0.3.17")
    assert "3 processes each, aeronpy's on ::1, PySyncObj's on 127.0.0.1" in \
        bench.format_table(report)
