"""Failover of real ``aeronpy node`` processes on loopback (issue 5, process tests).

Three nodes run the CounterService (each message adds to a total; the reply is the new total),
so exactly-once delivery shows in the replies: n acknowledged adds of 1 give totals 1..n.
Assertions are on behaviour (who leads, in which term, what committed, what each member's
service ended with), except the one comparison the issue asks for: a SIGTERM hand-over serves
again sooner than any election timeout could, with a SIGKILL in the same cluster as the control
that shows the measurement can tell the two apart.
"""
from __future__ import annotations

import signal
import time

import pytest

import aeronpy

from .helpers import LEADER, add, caught_up, counters, describe, read_hash_files, settled, wait_until

pytestmark = pytest.mark.process


def _stop_all_cleanly(pc) -> dict:
    """SIGTERM every live member (followers first) so each service records its final state,
    once every member knows the same commit index (a follower learns the last commit from the
    leader's next heartbeat, so stopping it sooner would record a shorter, correct, prefix)."""
    live = [m for m in range(pc.members) if pc.alive(m)]
    assert wait_until(lambda: settled(pc, live), 10), describe(pc)
    live.sort(key=lambda m: counters(pc, m).get("role") == LEADER)
    codes = {m: pc.kill(m, signal.SIGTERM, wait_s=10) for m in live}
    assert all(code == 0 for code in codes.values()), f"exit codes on SIGTERM: {codes}"
    return read_hash_files(pc.hash_dir)


def test_kill_leader_new_leader_commits_and_restarted_node_catches_up(make_cluster):
    pc = make_cluster().start()
    old_leader = pc.leader(timeout_s=20)
    assert old_leader is not None, "no leader elected\n" + describe(pc)
    client = aeronpy.ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    try:
        assert [add(client) for _ in range(10)] == list(range(1, 11))
        before = counters(pc, old_leader)

        assert pc.kill(old_leader, signal.SIGKILL) == -signal.SIGKILL
        # One request spanning the failover: the client follows the new leader by itself and
        # the add is applied exactly once.
        assert add(client, timeout_s=10) == 11
        new_leader = pc.leader(timeout_s=5, exclude={old_leader})
        assert new_leader is not None and new_leader != old_leader, describe(pc)
        # The reply can reach the client before the new leader's next counters publish (the
        # first empty duty cycle after the work): wait for that publish, not just any read.
        assert wait_until(lambda: counters(pc, new_leader).get("commit_index", 0)
                          > before["commit_index"], 5), describe(pc)
        after = counters(pc, new_leader)
        assert after["leadership_term"] > before["leadership_term"]

        assert [add(client) for _ in range(10)] == list(range(12, 22))   # the majority commits on

        pc.start_member(old_leader)
        others = [m for m in range(pc.members) if m != old_leader]
        assert wait_until(lambda: caught_up(pc, old_leader, others)
                          and counters(pc, old_leader).get("role") == 0, 15), \
            "restarted member did not catch up\n" + describe(pc)
        rejoined = counters(pc, old_leader)
        assert rejoined["leadership_term"] == counters(pc, new_leader)["leadership_term"]
        assert rejoined["commit_index"] >= after["commit_index"] + 10
        assert add(client) == 22   # and the cluster still serves with it back
    finally:
        client.close()

    finals = _stop_all_cleanly(pc)
    assert sorted(finals) == [0, 1, 2]
    assert {r["total"] for r in finals.values()} == {22}, finals       # every member applied each
    assert {r["state_hash"] for r in finals.values()} == {"22:22"}, finals  # add exactly once


def test_sigterm_leader_hands_over_faster_than_an_election_timeout(make_cluster):
    # Long timeouts make the two paths easy to tell apart on a busy machine: without a
    # hand-over, no follower may even start an election before election_timeout_ms minus one
    # heartbeat interval has passed since it last heard from the leader.
    election_timeout_ms, heartbeat_ms = 1500, 50
    pc = make_cluster(config={"election_timeout_ms": election_timeout_ms,
                              "heartbeat_interval_ms": heartbeat_ms,
                              "leader_heartbeat_timeout_ms": 3000}).start()
    leader = pc.leader(timeout_s=30)
    assert leader is not None, describe(pc)
    client = aeronpy.ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    try:
        total = 0
        for _ in range(5):
            total = add(client)
        term_before = counters(pc, leader)["leadership_term"]

        # Hand-over time: SIGTERM until a request sent once a successor leads (so the reply
        # cannot come from the old leader's term) is answered.
        started = time.monotonic()
        pc.procs[leader].send_signal(signal.SIGTERM)
        successor = pc.leader(timeout_s=10, exclude={leader}, min_term=term_before + 1,
                              interval_s=0.001)
        assert successor is not None and successor != leader, describe(pc)
        total_after = add(client, timeout_s=10)
        handover_s = time.monotonic() - started
        assert total_after == total + 1
        assert pc.procs[leader].wait(timeout=10) == 0
        assert "leadership handed over" in pc.tail_log(leader, 20)
        # The comparison the issue asks for, with a wide margin on both sides.
        assert handover_s < 0.5 * election_timeout_ms / 1000, \
            f"hand-over took {handover_s:.3f}s; election timeout is {election_timeout_ms} ms"

        # A rolling restart: the old leader comes back as a follower and catches up.
        restarted = time.monotonic()
        pc.start_member(leader)
        others = [m for m in range(pc.members) if m != leader]
        assert wait_until(lambda: caught_up(pc, leader, others), 15), describe(pc)
        print(f"restarted member caught up in {time.monotonic() - restarted:.3f}s")
        assert add(client) == total + 2   # keeps the session active (and checks service)

        # Control: a SIGKILLed leader cannot hand over, and the same measurement sees a
        # failover no shorter than an election timeout (minus the heartbeat gap).
        victim = pc.leader(timeout_s=5)
        assert victim is not None
        started = time.monotonic()
        pc.kill(victim, signal.SIGKILL)
        assert add(client, timeout_s=15) == total + 3
        failover_s = time.monotonic() - started
        assert failover_s >= (election_timeout_ms - heartbeat_ms) / 1000, \
            f"SIGKILL failover took only {failover_s:.3f}s: the control does not discriminate"
        assert failover_s > handover_s
        print(f"hand-over {handover_s * 1e3:.0f} ms; SIGKILL failover {failover_s * 1e3:.0f} ms; "
              f"election timeout {election_timeout_ms} ms")
    finally:
        client.close()
