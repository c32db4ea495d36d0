"""Every member must host the same services in the same order. An operator review found a
member started with fewer services ran on silently and skipped committed entries (its state
and snapshots diverged), and swapped --service flags handed each service the other's
snapshot. Now a leader writes its service list into its term's first entry, a member that
hosts another list reports it loudly at that entry, and a snapshot names the services that
took it (a member with another list refuses it)."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from aeronpy import ClusterClient
from aeronpy.cluster.nodefiles import read_errors

from .helpers import ADD, COUNTER_SERVICE

pytestmark = pytest.mark.process

ECHO = "aeronpy.testing.services:EchoService"


def _run(pc, member: int, services, timeout_s: float = 20) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "aeronpy", "node", "--config", pc.config_path, "--member-id",
           str(member), "--data-dir", pc.data_dir(member)]
    for service in services:
        cmd += ["--service", service]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              env=pc.env, cwd=pc.base_dir)
    except subprocess.TimeoutExpired as exc:      # still running: its output so far
        text = [x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
                for x in (exc.stdout, exc.stderr)]
        return subprocess.CompletedProcess(cmd, None, *text)


def test_a_member_with_another_service_list_reports_it_at_the_term_entry(make_cluster):
    """Reported, not stopped: a member cannot tell whether it or the leader is the
    misconfigured one (a review: a stop would have halted every correct member for good had
    the misconfigured member led). The record is in its log, errors.log and counters."""
    pc = make_cluster(members=3, services=(COUNTER_SERVICE, ECHO))
    pc.start(members=[0, 1])
    assert pc.leader(timeout_s=20) in (0, 1)
    client = ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    try:
        assert client.request(ADD.pack(1), timeout_s=10)
        out = _run(pc, 2, [COUNTER_SERVICE], timeout_s=5)   # one service fewer than its peers
        assert out.returncode is None, (out.returncode, out.stderr[-2000:])   # still running
        assert "the leader of term" in out.stderr and "hosts services" in out.stderr
        errors = " ".join(str(e) for e in read_errors(pc.data_dir(2)))
        assert "members hosting other services diverge" in errors
        assert client.request(ADD.pack(1), timeout_s=10)   # the others serve on
    finally:
        client.close()
    assert all("hosts services" not in pc.tail_log(m, 200) for m in (0, 1))


def test_a_member_with_another_service_list_gets_no_vote_so_never_leads(make_cluster):
    """Members refuse their vote to a candidate whose services differ (a digest in the
    canvass and ballot requests): with one correct member and one misconfigured member up,
    where either needed the other's vote, no leader is elected and both say why; the correct
    ones elect one of theirs once a second one is up."""
    pc = make_cluster(members=3, services=(COUNTER_SERVICE, ECHO))
    pc.start(members=[0])
    out = _run(pc, 2, [COUNTER_SERVICE], timeout_s=4)       # one service fewer than its peers
    assert out.returncode is None, (out.returncode, out.stderr[-2000:])   # ran until killed
    assert "asked for this member's vote but hosts other services" in out.stderr
    assert "hosts services" not in out.stderr             # never got a term entry: nobody led
    counters = pc.read_counters(0)
    assert counters["role"] != 2 and counters["leader_id"] == -1, counters
    refused = " ".join(str(e) for e in read_errors(pc.data_dir(0)))
    assert "member 2 asked for this member's vote but hosts other services" in refused
    pc.start(members=[1])
    assert pc.leader(timeout_s=20) in (0, 1)
    client = ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    try:
        assert client.request(ADD.pack(1), timeout_s=10)
    finally:
        client.close()


def test_control_the_same_list_joins(make_cluster):
    pc = make_cluster(members=3, services=(COUNTER_SERVICE, ECHO))
    pc.start(members=[0, 1])
    assert pc.leader(timeout_s=20) in (0, 1)
    out = _run(pc, 2, [COUNTER_SERVICE, ECHO], timeout_s=4)
    assert out.returncode is None, (out.returncode, out.stderr[-2000:])   # still running


def test_a_snapshot_taken_by_other_services_is_refused(make_cluster):
    pc = make_cluster(members=1, services=(COUNTER_SERVICE, ECHO))
    pc.start()
    assert pc.leader(timeout_s=20) == 0
    client = ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    try:
        client.request(ADD.pack(5), timeout_s=10)
    finally:
        client.close()
    snap = subprocess.run([sys.executable, "-m", "aeronpy", "tool", "snapshot", "--data-dir",
                           pc.data_dir(0)], capture_output=True, text=True, timeout=60,
                          env=pc.env, cwd=pc.base_dir)
    assert snap.returncode == 0, snap.stderr
    assert pc.kill(0, signal.SIGTERM) == 0
    out = _run(pc, 0, [ECHO, COUNTER_SERVICE])            # the flags swapped
    assert out.returncode == 4, (out.returncode, out.stderr[-2000:])
    assert "was taken by services" in out.stderr and "another's state" in out.stderr
    ok = _run(pc, 0, [COUNTER_SERVICE, ECHO], timeout_s=4)   # the control: as it was
    assert ok.returncode is None, (ok.returncode, ok.stderr[-2000:])
