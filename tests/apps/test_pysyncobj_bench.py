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
    assert set(results) == {"throughput", "latency", "latency-client", "failover"}
    assert results["throughput"]["commands"] > 0 and results["throughput"]["failed"] == 0
    latency = results["latency"]
    assert latency["latency"]["count"] == latency["commands"] > 0
    assert latency["latency"]["p50_us"] <= latency["latency"]["p99_us"] <= latency["latency"]["max_us"]
    assert "appendEntriesUseBatch=False" in latency["settings"]
    via_client = results["latency-client"]       # from this process, over the leader's UDP port
    assert via_client["latency"]["count"] == via_client["commands"] > 0
    assert via_client["frontend"]["answered"] >= via_client["commands"]
    assert via_client["frontend"]["short"] == 0 and via_client["stale_answers"] == 0
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


class _FakePoller:
    def __init__(self):
        self.callbacks = {}

    def subscribe(self, descr, callback, mask):
        self.callbacks[descr] = callback


class _FakeNode:
    """What the front-end uses of a SyncObj: its poller and the replicated call with a
    callback, answered here at once with the given outcome."""

    def __init__(self, outcome):
        self._poller = _FakePoller()
        self.outcome = outcome
        self.payloads = []

    def apply_command(self, payload, callback):
        self.payloads.append(payload)
        callback(len(self.payloads), self.outcome)


def test_the_leaders_udp_front_end_answers_by_tag_and_counts_short_datagrams(monkeypatch):
    pytest.importorskip("pysyncobj")
    import socket
    from pysyncobj import FAIL_REASON
    from aeronpy.testing import pysyncobj_harness as harness
    for outcome, answer in ((FAIL_REASON.SUCCESS, harness.ANSWER_OK),
                            (FAIL_REASON.QUEUE_FULL, harness.ANSWER_FAILED)):
        monkeypatch.setattr(harness, "_FRONTEND", {})
        node = _FakeNode(outcome)
        port = harness._serve_udp(node)["port"]
        [(fd, on_readable)] = node._poller.callbacks.items()
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.settimeout(5.0)
        try:
            client.connect(("127.0.0.1", port))
            client.send(b"short")                       # under a tag's 8 bytes: dropped, counted
            client.send(b"T" * harness.TAG_BYTES + b"payload")
            import time
            deadline = time.monotonic() + 5.0
            while harness._frontend_counts()["received"] < 2 and time.monotonic() < deadline:
                on_readable(fd, 1)
            reply = client.recv(1000)
        finally:
            client.close()
            harness._FRONTEND["sock"].close()
        assert node.payloads == [b"payload"]
        ok = answer == harness.ANSWER_OK
        assert reply == b"T" * harness.TAG_BYTES + answer + (b"payload" if ok else b"")
        counts = harness._frontend_counts()
        assert counts == {"received": 2, "short": 1, "answered": int(ok), "failed": int(not ok)}


def test_the_client_counts_a_refused_or_silent_leader_instead_of_crashing():
    """The leader gone (nothing on its port: ICMP refusals on loopback) or silent: every call is
    counted without a latency sample, and the run ends on time."""
    import socket
    import time
    from aeronpy.testing import pysyncobj_harness as harness
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()                                        # nobody listens there now
    start = time.monotonic()
    result = harness._run_client_latency(port, 0.3, 32, 100.0)
    assert time.monotonic() - start < 0.3 + harness.CALL_TIMEOUT_S + 1.0
    assert result["commands"] == 0
    assert result["timeouts"] > 0
    assert result["send_errors"] + result["failed_answers"] <= result["timeouts"]
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # bound, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        result = harness._run_client_latency(silent.getsockname()[1], 0.2, 32, 100.0)
    finally:
        silent.close()
    assert result["commands"] == 0 and result["timeouts"] >= 1 and result["send_errors"] == 0
