"""Smoke run of the PySyncObj benchmark: it starts, measures, reports and cleans up.

Figures are printed, never asserted (speed is a benchmark matter); the test checks the report
is complete and that no node process outlives the run.
"""
import json
import os
import subprocess
import sys

import pytest

from aeronpy.testing.process_cluster import child_env

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO_ROOT, "bench", "pysyncobj_bench.py")


def _node_processes():
    out = subprocess.run(["pgrep", "-f", f"{SCRIPT} --node"], capture_output=True, text=True)
    return out.stdout.split()


def test_quick_run_reports_every_mode_and_leaves_no_process(tmp_path):
    try:
        import pysyncobj  # noqa: F401
    except ImportError:
        print("SKIPPED: pysyncobj is not importable (pip install pysyncobj==0.3.17)")
        pytest.skip("pysyncobj is not importable")
    # The script puts the repository root first on sys.path unless it is on sys.path already:
    # listed after the imported aeronpy's directory, the script and its node processes (which
    # inherit the environment) import the aeronpy this process imported.
    proc = subprocess.run([sys.executable, SCRIPT, "--quick", "--json"], capture_output=True,
                          text=True, timeout=60, env=child_env(REPO_ROOT), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = {r["mode"]: r for r in json.loads(proc.stdout)["results"]}
    print(json.dumps(results, indent=1))
    assert set(results) == {"throughput", "latency", "failover"}
    assert results["throughput"]["commands"] > 0 and results["throughput"]["failed"] == 0
    latency = results["latency"]
    assert latency["latency"]["count"] == latency["commands"] > 0
    assert latency["latency"]["p50_us"] <= latency["latency"]["p99_us"] <= latency["latency"]["max_us"]
    assert "appendEntriesUseBatch=False" in latency["settings"]
    assert results["failover"]["failover_gap_ms"] is not None
    if sys.platform.startswith("linux"):
        assert _node_processes() == []


def test_bad_arguments_are_refused():
    sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))
    try:
        import pysyncobj_bench
    finally:
        sys.path.pop(0)
    with pytest.raises(ValueError, match="mode"):
        pysyncobj_bench.run("sideways", 1.0, 32)
    with pytest.raises(ValueError, match="positive"):
        pysyncobj_bench.run("latency", 1.0, 0)
