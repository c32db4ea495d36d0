"""Second review of e5a1035 (followers step on while their log sync runs, their messages held in
ClusterNode._held until durable). Each test here failed on e5a1035, and passes since the fix.
"""
from __future__ import annotations

from aeronpy.cluster import snapshot_transfer
from aeronpy.testing import swarm


def _early_successes_beyond_durable(seed: int) -> list:
    """Run a swarm seed and collect every InstallSnapshotResponse a follower's
    SnapshotReceiver.on_chunk answered as complete (success, offset >= the snapshot's size:
    the leader's SnapshotSender then reports success and sets pr.match to the snapshot index)
    for a snapshot index its log does not hold durably (past both its durable log end and its
    newest recorded snapshot)."""
    receiver = snapshot_transfer.SnapshotReceiver
    original = receiver.on_chunk
    found = []

    def on_chunk(self, from_id, msg):
        archive = self.hooks.archive
        durable = max(archive.durable_index,
                      max((s.index for s in archive.recorded_snapshots()), default=0))
        response = original(self, from_id, msg)
        if response is not None and response.success and response.offset >= msg.total_bytes \
                and msg.snapshot_index > durable:
            found.append((msg.snapshot_index, durable, self.hooks.core.commit_index))
        return response

    receiver.on_chunk = on_chunk
    try:
        result = swarm.run_seed(seed)
    finally:
        receiver.on_chunk = original
    assert result.ok, result.error
    return found


def test_a_follower_does_not_report_a_snapshot_it_does_not_hold_durably():
    # seed 237 (default swarm, sync_lags_ms as in the swarm): a follower with its sync lagging
    # answered snapshot 14 as installed, its durable log and newest snapshot at 12
    found = _early_successes_beyond_durable(237)
    assert not found, f"(snapshot index, durable end, commit index): {found}"
