"""A follower behind the leader's compaction point is sent the leader's newest kept snapshot,
not the oldest (the log base), so it replays only the entries after the newest.

Safe because the leader's log starts at its oldest kept snapshot, so it holds every entry
after the newest one too; a kept snapshot is recorded (fsynced) and sits at or below the
leader's commit index. Before, the leader sent the oldest kept snapshot and the follower
replayed every entry between the two snapshots as well."""
from aeronpy.testing.swarm import RecordingService
from aeronpy.testing import SimCluster
from tests.sim.test_snapshots_sim import batch, follower_of, offer_all


class CountingService(RecordingService):
    """RecordingService that also counts the messages applied since the last on_start (an
    installed snapshot calls on_start again)."""

    def __init__(self):
        super().__init__()
        self.applied_since_start = 0

    def on_start(self, cluster, snapshot):
        super().on_start(cluster, snapshot)
        self.applied_since_start = 0

    def on_session_message(self, session, timestamp_ns, message):
        super().on_session_message(session, timestamp_ns, message)
        self.applied_since_start += 1


def _lagging_follower_after_two_snapshots(seed: int):
    sim = SimCluster(members=3, seed=seed, service=CountingService, snapshot_log_bytes=0,
                     snapshot_write_ms=0, snapshots_to_keep=2)
    client = sim.client()
    sent = offer_all(sim, client, batch(b"s", 10))
    assert sim.run_until(lambda: not client.pending and sim.leader() is not None, 1000)
    lagger = follower_of(sim)
    sim.isolate(lagger)
    offer_all(sim, client, batch(b"v", 10), sent=sent)
    assert sim.snapshot() > 0                           # the older kept snapshot
    sim.run_for(20)
    offer_all(sim, client, batch(b"w", 5), sent=sent)
    assert sim.snapshot() > 0                           # the newest kept snapshot
    sim.run_for(20)
    offer_all(sim, client, batch(b"x", 3), sent=sent)   # the only messages after the newest
    assert sim.run_until(lambda: not client.pending, 500)
    sim.run_for(50)
    return sim, client, lagger, sent


def test_a_lagging_follower_installs_the_newest_kept_snapshot_and_replays_only_after_it():
    for seed in (3, 11):
        sim, client, lagger, sent = _lagging_follower_after_two_snapshots(seed)
        leader = sim.leader()
        kept = sim.members[leader].snapshots.snapshotter.kept
        assert len(kept) == 2 and sim.core(leader).log.base_index == kept[0].index < kept[1].index
        newest = kept[1].index
        sim.heal()
        assert sim.run_until(
            lambda: sim.core(lagger).applied_index >= sim.core(leader).commit_index, 3000), \
            f"seed {seed}: follower at {sim.core(lagger).applied_index}"
        follower = sim.members[lagger].snapshots
        assert follower.receiver.installed == 1
        assert sim.core(lagger).log.base_index == newest, \
            (f"seed {seed}: follower installed the snapshot at {sim.core(lagger).log.base_index}, "
             f"the leader's newest kept is at {newest}")
        assert [k.index for k in follower.snapshotter.kept] == [newest]
        replayed = sim.service(lagger).applied_since_start
        assert replayed == 3, f"seed {seed}: follower replayed {replayed} messages after the install"
        sim.check()
        for m in range(sim.member_count):
            assert [body for _ts, body in sim.service(m).applied] == sent


def test_a_damaged_oldest_kept_snapshot_is_not_the_one_sent():
    """The setting of test_review_transfer's damaged-compaction-point test: the oldest kept
    snapshot (the log base) is damaged on an idle leader. The newest, intact, is sent at once;
    the damaged one never is, and the follower catches up without a failed transfer."""
    sim, client, lagger, sent = _lagging_follower_after_two_snapshots(5)
    leader = sim.leader()
    snapshots = sim.members[leader].snapshots
    kept = snapshots.snapshotter.kept
    fs = sim.disks[leader].fs
    handle = fs.open_file(kept[0].path)
    fs.pwrite(handle, b"\xff", kept[0].size // 2)
    fs.close(handle)
    sim.heal()
    assert sim.run_until(
        lambda: sim.core(lagger).applied_index >= sim.core(leader).commit_index, 3000)
    assert snapshots.transfers_failed == 0 and snapshots.transfers_sent == 1
    assert sim.core(lagger).log.base_index == kept[1].index
    sim.check()
    for m in range(sim.member_count):
        assert [body for _ts, body in sim.service(m).applied] == sent
