"""Review: install-snapshot when the leader's compaction point is a damaged snapshot file and
it keeps a newer intact one (snapshots_to_keep=2, the default) on a cluster that has gone idle.

The sender finds the damage (the file no longer matches its recorded checksum) and the leader
drops the file from retention and tries to take a fresh snapshot at its applied index; on an
idle cluster that index is the newest kept snapshot's, so no snapshot is taken, and the
in-memory log still starts at the damaged one. The core then asked for the damaged snapshot
again every 100 ms ("needs snapshot ..., which this node does not hold"): the lagging follower
never caught up until enough new entries came for another snapshot.

Since the leader sends its newest kept snapshot (not its log base), the damaged file here is
the newest: once its transfer fails and it is dropped, the follower must get the older intact
one (tests/snapshots/test_install_newest_snapshot.py damages the oldest instead)."""
from tests.sim.test_snapshots_sim import batch, converged, follower_of, make, offer_all


def _damage(sim, member: int, info) -> None:
    fs = sim.disks[member].fs
    handle = fs.open_file(info.path)
    fs.pwrite(handle, b"\xff", info.size // 2)
    fs.close(handle)


def test_a_damaged_newest_kept_snapshot_on_an_idle_leader_does_not_strand_a_follower():
    sim = make(93, snapshot_log_bytes=0, snapshot_write_ms=0, snapshots_to_keep=2)
    client = sim.client()
    sent = offer_all(sim, client, batch(b"s", 10))
    assert sim.run_until(lambda: converged(sim, client), 1000)
    lagger = follower_of(sim)
    sim.isolate(lagger)
    offer_all(sim, client, batch(b"v", 10), sent=sent)
    assert sim.snapshot() > 0
    sim.run_for(20)
    offer_all(sim, client, batch(b"w", 5), sent=sent)
    assert sim.snapshot() > 0
    assert sim.run_until(lambda: not client.pending, 500)
    sim.run_for(50)
    leader = sim.leader()
    snapshots = sim.members[leader].snapshots
    kept = snapshots.snapshotter.kept
    assert len(kept) == 2 and sim.core(leader).log.base_index == kept[0].index
    assert sim.core(leader).applied_index == kept[1].index       # idle since the newest
    _damage(sim, leader, kept[1])
    sim.heal()
    assert sim.run_until(lambda: snapshots.transfers_failed >= 1, 500)
    # no new client entries: the follower must catch up from the intact snapshot alone
    caught_up = sim.run_until(
        lambda: sim.core(lagger).applied_index >= sim.core(leader).commit_index, 3000)
    assert caught_up, (f"follower stranded at {sim.core(lagger).applied_index}, leader at "
                       f"{sim.core(leader).commit_index}; leader base "
                       f"{sim.core(leader).log.base_index}, kept "
                       f"{[k.index for k in snapshots.snapshotter.kept]}, "
                       f"{snapshots.transfers_failed} transfers failed")
    assert sim.members[lagger].snapshots.receiver.installed == 1
    assert snapshots.transfers_failed <= 3
    sim.check()
    hashes = {sim.service(m).state_hash() for m in range(sim.member_count)}
    assert len(hashes) == 1, hashes


def test_a_received_snapshot_that_cannot_be_read_back_is_discarded_not_leaked():
    """verify_and_commit aborted the writer only for a bad checksum: a read error (EIO) left
    its temporary file and open handle behind, one more at every retry of the transfer."""
    import pytest

    from aeronpy.archive import Archive, MemFileSystem
    from aeronpy.cluster.snapshot_transfer import verify_and_commit
    from aeronpy.cluster.snapshotting import encode_snapshot

    fs = MemFileSystem()
    arc = Archive.open("/d", fs=fs)
    arc.recover()
    good = b"".join(bytes(p) for p in encode_snapshot(5, 1, 7, b"module", [b"svc"]))
    writer = arc.begin_snapshot(5, 1)
    writer.write(good)
    tmp = writer._tmp

    def read_back():
        raise OSError(5, "Input/output error")
    writer.read_back = read_back
    with pytest.raises(OSError):
        verify_and_commit(writer)
    assert not fs.exists(tmp), "the temporary file of a failed receive was left behind"
    assert arc.recorded_snapshots() == []
    # the next attempt of the transfer works as before
    writer = arc.begin_snapshot(5, 1)
    writer.write(good)
    assert verify_and_commit(writer).index == 5 and len(arc.recorded_snapshots()) == 1


def test_a_received_snapshot_that_does_not_fit_stops_the_member_saying_so():
    """A lagging member installing a snapshot on a full disk stopped with a bare
    OSError(28) and left the partial file behind (an operator's disk-full trial)."""
    import errno
    from types import SimpleNamespace

    import pytest

    from aeronpy.archive import Archive, MemFileSystem
    from aeronpy.archive.errors import ArchiveIOError
    from aeronpy.cluster.snapshot_transfer import SnapshotReceiver
    from aeronpy.core.messages import InstallSnapshot
    from aeronpy.service import Role

    fs = MemFileSystem()
    arc = Archive.open("/d", fs=fs)
    arc.recover()
    used = sum(len(fs.read_file(f"/d/{name}")) for name in fs.listdir("/d")
               if fs.exists(f"/d/{name}") and not name.endswith("/"))
    fs.capacity_bytes = used + 1000                  # room for a first chunk, not a second
    hooks = SimpleNamespace(core=SimpleNamespace(term=3, role=Role.FOLLOWER, commit_index=10),
                            archive=arc)
    receiver = SnapshotReceiver(hooks)
    first = InstallSnapshot(3, 50, 2, 0, 4000, False, b"a" * 800)
    assert receiver.on_chunk(1, first).success
    with pytest.raises(ArchiveIOError) as caught:
        receiver.on_chunk(1, InstallSnapshot(3, 50, 2, 800, 4000, False, b"b" * 800))
    message = str(caught.value)
    assert caught.value.errno == errno.ENOSPC
    assert "the disk is full" in message and "snapshot at index 50" in message
    assert "from member 1" in message and "restart" in message
    assert [n for n in fs.listdir("/d") if "snap" in n] == [], "a partial snapshot was left"
