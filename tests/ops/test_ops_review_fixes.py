"""Fixes for the operator review s11/ops (findings 4, 5, 7, 8, 9 and two nits).

- 4: a backup without the cluster's secret logs the member's readable refusal once, not a
  line per poll starting with the member's (per-request) response tag.
- 5: errors.log deduplicates across restarts (its dedup state is rebuilt from the file).
- 7: the read-only tool commands refuse (exit 2) a directory that holds no node data.
- 8: ``tool snapshot`` stops waiting when the member fails while taking the snapshot.
- 9: ``aeronpy backup`` refuses bad --poll-interval-ms / --snapshots-to-keep in argparse.
- nits: ``tool pid`` on a hung node prints its pid; a data_dir that is a file says so.

Every wait is bounded; every process started here is killed.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from aeronpy.cluster import admin_auth, tool
from aeronpy.cluster.nodefiles import ErrorLog, PidFile, read_errors

COUNTER_SERVICE = "aeronpy.testing.services:CounterService"
SECRET = "s3cret-for-the-test"


def run_cli(*argv: str, cwd: str = None, timeout: float = 60) -> subprocess.CompletedProcess:
    from aeronpy.testing.process_cluster import child_env
    return subprocess.run([sys.executable, "-m", "aeronpy", *argv], capture_output=True,
                          text=True, timeout=timeout, env=child_env(), cwd=cwd)


@pytest.fixture
def make_cluster(tmp_path):
    from aeronpy.testing.process_cluster import ProcessCluster
    made = []

    def make(**kwargs) -> "ProcessCluster":
        pc = ProcessCluster(base_dir=str(tmp_path / f"cluster{len(made)}"), **kwargs)
        made.append(pc)
        pc.start()
        assert pc.leader(timeout_s=30) is not None, pc.tail_log(0)
        pc.check_running(wait_up_s=30)
        return pc

    yield make
    for pc in made:
        for member in range(pc.members):
            proc = pc.procs.get(member)
            if proc is not None and proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)    # a member a test stopped
                except OSError:
                    pass
        pc.close()


# ------------------------------------------------------------------------------ finding 4
def test_an_unkeyed_client_reads_a_tagged_refusal_without_the_tag():
    key = admin_auth.admin_key(b"the cluster secret")
    reason = b"admin request not authenticated: it needs a tag made with the key"
    answers = set()
    for cid in (1, 2, 3):
        tagged = admin_auth.sign_response(key, cid, 5, 2, reason)     # the member's refusal
        body = admin_auth.verify_response(None, cid, 5, 2, tagged)
        assert body.startswith(reason) and b"secret" in body[len(reason):]
        answers.add(body)
    assert len(answers) == 1                     # the same reason for every request
    # an untagged refusal and any answer that is not a refusal are left as they are
    assert admin_auth.verify_response(None, 1, 5, 2, reason) == reason
    ok = bytes(range(40))
    assert admin_auth.verify_response(None, 1, 5, 0, ok) == ok
    # a keyed client still believes only answers tagged for its request
    from aeronpy.cluster import protocol as P
    request = admin_auth.SignedRequest(key, 9, 5, b"", "127.0.0.1:1")
    request.on_message(P.AdminResponse(9, 5, 2, admin_auth.sign_response(key, 9, 5, 2, reason)))
    assert request.answered is None and request.unverified == 1


@pytest.mark.process
def test_backup_without_the_secret_logs_the_refusal_once_and_readably(make_cluster, tmp_path,
                                                                       caplog):
    from aeronpy.cluster.backup import ClusterBackup
    pc = make_cluster(members=1, services=(COUNTER_SERVICE,), config={"secret": SECRET})
    backup = ClusterBackup(pc.ingress_endpoints.split(","), str(tmp_path / "bk"),
                           poll_interval_s=0.02, request_timeout_s=2.0, secret=None)
    try:
        with caplog.at_level(logging.WARNING, logger="aeronpy"):
            deadline = time.monotonic() + 30
            while backup.failures < 20 and time.monotonic() < deadline:
                backup.run(max_s=0.5)
    finally:
        backup.close()
    assert backup.failures >= 20, "the member did not answer the backup's requests"
    failed = [r.getMessage() for r in caplog.records if "failed:" in r.getMessage()]
    assert len(failed) == 1, failed
    (line,) = failed
    why = line.split("failed: ", 1)[1]
    assert why.startswith("admin request not authenticated"), line
    assert why.isprintable(), line


# ------------------------------------------------------------------------------ finding 5
def test_errors_log_deduplicates_across_restarts(tmp_path):
    log = ErrorLog(tmp_path, capacity=4)
    log.record("the first cause")
    log.record("KeyError: 'missing reference data' (at svc.py:4 in on_start)")
    log.close()
    for _ in range(10):                          # a member crash-looping on the same error
        log = ErrorLog(tmp_path, capacity=4)
        log.record("KeyError: 'missing reference data' (at svc.py:4 in on_start)")
        log.close()
    entries = read_errors(tmp_path)
    assert [(e.text, e.count) for e in entries] == [
        ("the first cause", 1),
        ("KeyError: 'missing reference data' (at svc.py:4 in on_start)", 11)]
    assert entries[1].last_ns > entries[1].first_ns
    log = ErrorLog(tmp_path, capacity=4)         # and a new error still gets a record
    log.record("something else")
    log.close()
    assert [e.text for e in read_errors(tmp_path)][-1] == "something else"


# ------------------------------------------------------------------------------ finding 7
@pytest.mark.parametrize("command", ["errors", "recording-log", "recovery-plan"])
def test_read_only_commands_refuse_a_dir_without_node_data(tmp_path, command):
    empty = tmp_path / "empty"
    empty.mkdir()
    parent = tmp_path / "cluster"
    (parent / "node0").mkdir(parents=True)
    ErrorLog(parent / "node0").close()
    for where in (empty, parent):
        out = run_cli("tool", command, "--data-dir", str(where), cwd=str(tmp_path))
        assert out.returncode == 2, (where, out)
        assert "holds no node data" in out.stderr and out.stdout == "", out
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "node0" in out.stderr                 # the parent names the data dir below it
    # a young data dir (a node that just started: its errors.log and pid file) still reads
    young = parent / "node0"
    PidFile(young).acquire().release()
    out = run_cli("tool", command, "--data-dir", str(young), "--json", cwd=str(tmp_path))
    assert out.returncode == 0, out


def test_no_node_data_accepts_any_data_dir_file(tmp_path):
    for name in ("counters.dat", "node.state", "recording.log", "durable.pos", "errors.log",
                 "identity", "node.pid", "00000000000000000001.seg",
                 "snapshot-00000000000000000008-1.snap"):
        d = tmp_path / name.replace(".", "_")
        d.mkdir()
        (d / name).write_bytes(b"")
        assert tool.no_node_data(str(d)) is None, name
    assert "not a directory" in tool.no_node_data(str(tmp_path / "counters_dat" / "counters.dat"))


# ------------------------------------------------------------------------------ finding 8
SNAPSHOT_RAISES = '''
from aeronpy.testing.services import CounterService

class SnapshotRaises(CounterService):
    def on_take_snapshot(self, writer):
        raise RuntimeError("snapshot bug in the test service")
'''


@pytest.mark.process
def test_tool_snapshot_reports_a_member_that_failed_while_taking_it(make_cluster, tmp_path):
    services = tmp_path / "svcmod"
    services.mkdir()
    (services / "snapraise.py").write_text(SNAPSHOT_RAISES)
    pc = make_cluster(members=1, services=("snapraise:SnapshotRaises",),
                      env={"PYTHONPATH": str(services)})
    started = time.monotonic()
    out = run_cli("tool", "snapshot", "--data-dir", pc.data_dir(0), "--json", "--timeout", "30",
                  cwd=pc.base_dir, timeout=90)
    took = time.monotonic() - started
    assert out.returncode == 1, out
    data = json.loads(out.stdout)
    assert data["recorded"] is False
    assert data["problem"].startswith("this member failed: "), data
    assert "snapshot bug in the test service" in data["problem"], data
    assert data["problem"].endswith("(aeronpy tool errors)"), data
    assert took < 20, f"waited {took:.1f} s: the failure was not noticed"


# ------------------------------------------------------------------------------ finding 9
@pytest.mark.parametrize("argv, says", [
    (["--poll-interval-ms", "-5"], "--poll-interval-ms: '-5': expected 0 or more milliseconds"),
    (["--poll-interval-ms", "fast"], "--poll-interval-ms: 'fast' is not a whole number"),
    (["--snapshots-to-keep", "0"], "--snapshots-to-keep: '0': expected 1 or more snapshots"),
    (["--snapshots-to-keep", "-3"], "--snapshots-to-keep: '-3': expected 1 or more snapshots"),
])
def test_backup_refuses_bad_numbers_before_starting(tmp_path, capsys, argv, says):
    from aeronpy.cluster.backup import main
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(tmp_path / "cluster.toml"), "--data-dir", str(tmp_path / "bk"),
              *argv])
    assert exited.value.code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "bk").exists()        # refused before anything was made


# ------------------------------------------------------------------------------ nits
@pytest.mark.process
def test_tool_pid_prints_a_hung_nodes_pid(make_cluster):
    pc = make_cluster(members=1, services=(COUNTER_SERVICE,))
    node = pc.procs[0]
    os.kill(node.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            status = tool.pid(pc.data_dir(0)).data["status"]
            if status == "stale":
                break
            time.sleep(0.2)
        assert status == "stale", status
        out = run_cli("tool", "pid", "--data-dir", pc.data_dir(0), cwd=pc.base_dir)
        assert out.returncode == 0, out
        assert out.stdout.strip() == str(node.pid), out         # what kill -9 needs
        assert "hung" in out.stderr, out
    finally:
        os.kill(node.pid, signal.SIGCONT)
    pc.kill(0)
    out = run_cli("tool", "pid", "--data-dir", pc.data_dir(0), cwd=pc.base_dir)
    assert out.returncode == 1 and out.stdout.strip() != str(node.pid), out


def test_a_pid_not_holding_the_data_dir_lock_is_not_offered(tmp_path):
    lock = PidFile(tmp_path).acquire()
    try:
        assert tool._holds_lock(str(tmp_path), os.getpid())
        assert not tool._holds_lock(str(tmp_path), 1)
    finally:
        lock.release()
    assert not tool._holds_lock(str(tmp_path), os.getpid())


def test_a_data_dir_that_is_a_file_is_named_as_such(tmp_path):
    from aeronpy.cluster.config import _probe_data_dir
    from aeronpy.errors import ConfigError
    path = tmp_path / "passwd"
    path.write_text("root:x:0:0\n")
    with pytest.raises(ConfigError) as refused:
        _probe_data_dir(str(path))
    assert "exists and is not a directory" in str(refused.value)
