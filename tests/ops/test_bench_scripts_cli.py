"""Command lines of bench/ scripts a user runs first: snapshot_bench's short run ends (it used
to wait minutes for a snapshot install that could not happen), bad sizes are refused,
ops_counters_bench has a --help that does not run it, tail_stalls cleans up its directory."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from aeronpy.testing.process_cluster import child_env

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "bench")


def _script(name: str, *args: str, timeout: float, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(BENCH, name), *args], capture_output=True,
                          text=True, timeout=timeout, env=child_env(), cwd=cwd)


@pytest.mark.process
def test_snapshot_bench_quick_measures_every_part(tmp_path):
    proc = _script("snapshot_bench.py", "--quick", timeout=150, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for line in ("baseline:", "snapshot of 8 MiB state:", "catch-up by log replay:",
                 "install snapshot: 4 MiB in"):
        assert line in proc.stdout, proc.stdout


def test_snapshot_bench_refuses_sizes_with_nothing_to_measure(tmp_path):
    proc = _script("snapshot_bench.py", "--install-mib", "0", timeout=60, cwd=tmp_path)
    assert proc.returncode == 2 and "--install-mib 0: at least 1" in proc.stderr


def test_ops_counters_bench_help_does_not_run_it(tmp_path):
    proc = _script("ops_counters_bench.py", "--help", timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and "usage:" in proc.stdout and "baseline" not in proc.stdout
    proc = _script("ops_counters_bench.py", "--number", "2000", timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and "x baseline" in proc.stdout, proc.stderr[-2000:]


def test_tail_stalls_removes_its_work_dir(monkeypatch):
    from benchscript import load

    tool = load("tail_stalls")
    seen = []

    def fake_run_in(args, policy, work):
        seen.append(work)
        assert os.path.isdir(work)
        raise RuntimeError("stop here")
    monkeypatch.setattr(tool, "_run_in", fake_run_in)
    with pytest.raises(RuntimeError):
        tool._run(None, "normal")
    assert seen and not os.path.exists(seen[0])


def test_open_loop_ab_needs_two_trees_and_has_help():
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "bench" / "open_loop_ab.py"
    helped = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                            text=True, timeout=60)
    assert helped.returncode == 0 and "--pairs" in helped.stdout
    missing = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2 and "--a and --b" in missing.stderr


def test_idle_cpu_has_help_and_refuses_a_bad_duration(tmp_path):
    proc = _script("idle_cpu.py", "--help", timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and "--seconds" in proc.stdout and "of a CPU" not in proc.stdout
    proc = _script("idle_cpu.py", "--seconds", "0", timeout=60, cwd=tmp_path)
    assert proc.returncode == 2 and "--seconds must be in" in proc.stderr


@pytest.mark.process
def test_idle_cpu_measures_every_node_and_the_async_client(tmp_path):
    import json
    proc = _script("idle_cpu.py", "--seconds", "0.5", "--json", timeout=150, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert sorted(result["nodes"]) == ["0", "1", "2"]
    assert sorted(v["role"] for v in result["nodes"].values()) == ["follower", "follower", "leader"]
    assert result["async_client"]["request_after_idle"] is True


def test_aio_burst_refuses_bad_sizes(tmp_path):
    proc = _script("aio_burst.py", "--tasks", "ten", timeout=60, cwd=tmp_path)
    assert proc.returncode == 2 and "comma-separated whole numbers" in proc.stderr


@pytest.mark.process
def test_aio_burst_runs_both_ways_and_keeps_the_order(tmp_path):
    proc = _script("aio_burst.py", "--tasks", "600", "--rounds", "1", timeout=150, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any("client's own line" in line for line in lines), proc.stdout
    assert any("Semaphore in front" in line for line in lines), proc.stdout
    own = next(line for line in lines if "client's own line" in line)
    assert own.endswith("largest displacement 0"), own      # first come, first answered
