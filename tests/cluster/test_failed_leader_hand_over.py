"""A leader that fails (its disk full, an I/O error, a service error) asks the follower most up
to date to stand for election as it closes (TimeoutNow), instead of leaving its followers to
wait out the leader heartbeat timeout and an election timeout (found by bench/diskfull_trial:
about 1.4 s to a new leader after the leader's disk filled)."""
from __future__ import annotations

from tests.snapshots.cluster_helpers import LocalCluster


def _fail_the_leader(tmp_path, *, slow_timeouts: bool = True):
    # long timeouts: a successor within them came from the TimeoutNow, not from a timeout
    settings = dict(election_timeout_ms=3000, leader_heartbeat_timeout_ms=6000,
                    session_timeout_ms=20000) if slow_timeouts else {}
    cluster = LocalCluster(str(tmp_path), **settings).start()
    try:
        old = cluster.leader()
        assert old is not None
        node = cluster.nodes[old]
        node._fail(OSError(28, "No space left on device"))
        node.close(transfer_timeout_ms=1)
        others = [m for m in cluster.nodes if m != old]
        elected = cluster.wait_for(
            lambda: any(cluster.nodes[m].role.name == "LEADER" for m in others), 5.0)
        told = sum(cluster.nodes[m].core.counters.get("timeout_now_received", 0) for m in others)
        return elected, told
    finally:
        for m in list(cluster.nodes):
            cluster.nodes[m].close(transfer_timeout_ms=1)


def test_a_failed_leader_has_a_follower_stand_at_once(tmp_path):
    elected, told = _fail_the_leader(tmp_path, slow_timeouts=True)
    assert told == 1
    assert elected          # within 5 s, where the timeouts alone take 9 s and more
