"""Snapshot files a crash leaves behind do not pile up: recovery deletes half-written and
unrecorded snapshot files, and a node that starts with more recorded snapshots than it keeps
(killed between recording one and deleting the oldest, or started with a lower
``snapshots_to_keep``) deletes the surplus, never the snapshot it recovered from."""
import os
import random

import pytest

from aeronpy.archive import Archive
from aeronpy.archive.snapshots import snapshot_name
from aeronpy.cluster import admin

from .cluster_helpers import LocalCluster, add, applied_everywhere

SEG = 4096


def _archive_with_snapshots(directory, indexes):
    arc = Archive.open(directory, segment_bytes=SEG)
    log = arc.recover().log
    rng = random.Random(5)
    for _ in range(max(indexes)):
        log.append(1, 16, rng.randbytes(50))
    arc.append_from(log, 1, log.last_index + 1)
    arc.request_sync()
    arc.poll_synced()
    for index in indexes:
        writer = arc.begin_snapshot(index, 1)
        writer.write(b"state at %d" % index)
        writer.commit()
    return arc


def _snap_names(directory):
    return sorted(n for n in os.listdir(directory) if n.startswith("snapshot-"))


def test_recovery_removes_half_written_and_unrecorded_snapshot_files(tmp_path):
    d = str(tmp_path)
    arc = _archive_with_snapshots(d, [40, 80])
    recorded = _snap_names(d)
    # a crash mid-write (the temporary file), and one after the rename but before the record
    half = arc.begin_snapshot(90, 1)
    half.write(b"half")
    tmp_name = os.path.basename(half._tmp)
    unrecorded = snapshot_name(95, 1)
    with open(os.path.join(d, unrecorded), "wb") as f:
        f.write(b"never recorded")
    # a recorded snapshot that fails its checksum stays: it is the evidence of the damage
    with open(os.path.join(d, recorded[-1]), "r+b") as f:
        f.write(b"X")
    arc.close()
    assert sorted(_snap_names(d)) == sorted(recorded + [tmp_name, unrecorded])

    arc2 = Archive.open(d, segment_bytes=SEG)
    recovered = arc2.recover()
    assert sorted(recovered.stray_files_removed) == sorted([tmp_name, unrecorded])
    assert _snap_names(d) == recorded
    assert recovered.snapshot.index == 40           # the damaged newest one skipped, not deleted
    assert [s.index for s in recovered.skipped_snapshots] == [80]
    arc2.close()

    arc3 = Archive.open(d, segment_bytes=SEG)
    assert arc3.recover().stray_files_removed == ()   # nothing left to remove
    arc3.close()


def test_unrelated_files_are_left_alone(tmp_path):
    d = str(tmp_path)
    _archive_with_snapshots(d, [40]).close()
    for name in ("notes.txt", "snapshot.txt", "my-snapshot-1.snap"):
        with open(os.path.join(d, name), "wb") as f:
            f.write(b"keep me")
    arc = Archive.open(d, segment_bytes=SEG)
    assert arc.recover().stray_files_removed == ()
    arc.close()
    assert {"notes.txt", "snapshot.txt", "my-snapshot-1.snap"} <= set(os.listdir(d))


def test_a_restart_with_fewer_kept_snapshots_deletes_the_oldest(tmp_path):
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0, snapshots_to_keep=3).start()
    try:
        leader = cluster.leader()
        victim = (leader + 1) % 3
        with cluster.client() as client:
            for round_ in range(3):
                for _ in range(20):
                    add(client)
                assert admin.snapshot(cluster.data_dir(leader))["recorded"]
                assert cluster.wait_for(
                    lambda: cluster.nodes[victim].snapshots.snapshotter.stats.taken == round_ + 1, 10)
            total = add(client)
        assert cluster.wait_for(lambda: applied_everywhere(cluster, cluster.nodes[leader].commit_index), 10)
        cluster.stop(victim)
        before = [n for n in _snap_names(cluster.data_dir(victim)) if n.endswith(".snap")]
        assert len(before) == 3
        cluster.settings["snapshots_to_keep"] = 1
        cluster.start(victim)
        node = cluster.nodes[victim]
        assert node.archive.drain_removals(10)
        assert _snap_names(cluster.data_dir(victim)) == before[-1:]     # the newest, in use, stays
        assert node.snapshots.snapshotter.stats.deleted_snapshots == 2
        assert cluster.wait_for(lambda: cluster.services[victim].state_hash() == f"{total}:{total}", 10)
    finally:
        cluster.close()


def test_the_snapshot_in_use_is_never_deleted_at_start(tmp_path):
    d = str(tmp_path)
    arc = _archive_with_snapshots(d, [20, 40, 60])
    from aeronpy.cluster.snapshotting import Snapshotter

    class _Shell(Snapshotter):          # only what adopt_recovered and _delete use
        def __init__(self, archive, keep):
            import logging
            from types import SimpleNamespace
            self.archive, self.snapshots_to_keep = archive, keep
            self.stats = SimpleNamespace(deleted_snapshots=0)
            self.log = logging.getLogger("test")
            self.last_snapshot_index = 0

    shell = _Shell(arc, 1)
    # the node recovered from the snapshot at 20 (the newer ones failed, say): nothing below
    # it exists, and the two above it are kept on disk although retention would drop them
    shell.adopt_recovered(arc.recorded_snapshots(), in_use_index=20)
    assert arc.drain_removals(10)
    assert len(_snap_names(d)) == 3 and shell.stats.deleted_snapshots == 0
    shell.adopt_recovered(arc.recorded_snapshots(), in_use_index=60)
    assert arc.drain_removals(10)
    assert _snap_names(d) == [snapshot_name(60, 1)] and shell.stats.deleted_snapshots == 2
    arc.close()


def test_a_backup_restarted_with_surplus_snapshots_deletes_the_oldest(tmp_path):
    from aeronpy.cluster.backup import ClusterBackup
    d = str(tmp_path / "backup")
    os.makedirs(d)
    _archive_with_snapshots(d, [20, 40, 60]).close()
    backup = ClusterBackup(["127.0.0.1:9"], d, snapshots_to_keep=2)    # never asks anyone here
    try:
        assert [s.index for s in backup.snapshots] == [40, 60]
        assert _snap_names(d) == [snapshot_name(40, 1), snapshot_name(60, 1)]
    finally:
        backup.close()
    backup = ClusterBackup(["127.0.0.1:9"], d, snapshots_to_keep=1)
    try:
        assert [s.index for s in backup.snapshots] == [60]
        assert _snap_names(d) == [snapshot_name(60, 1)]
    finally:
        backup.close()


def test_a_leftover_that_cannot_be_removed_does_not_stop_the_start(tmp_path):
    d = str(tmp_path)
    _archive_with_snapshots(d, [40]).close()
    os.mkdir(os.path.join(d, snapshot_name(50, 1)))       # not a file: remove() fails
    arc = Archive.open(d, segment_bytes=SEG)
    with pytest.warns(RuntimeWarning, match="could not remove the stray snapshot file"):
        recovered = arc.recover()
    assert recovered.snapshot.index == 40 and recovered.stray_files_removed == ()
    arc.close()
