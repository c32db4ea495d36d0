"""Review: one snapshot file recorded twice. A damaged newest snapshot is skipped at start;
the replay passes its CLUSTER_ACTION again and the member takes it again under the same name
(snapshot-<index>-<term>.snap, renamed over the damaged file) and records it a second time.
The file now holds the newer record's bytes: the older record must not count any more --
neither as a skipped (damaged) snapshot, which takes the one in use out of retention, nor as
a second kept snapshot, whose deletion by retention deletes the file the newer record names."""
from __future__ import annotations

import warnings

import pytest

from aeronpy.archive import Archive, MemFileSystem

SEG = 4096


def open_mem(fs):
    arc = Archive.open("/data", file_sync="data", segment_bytes=SEG, fs=fs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return arc, arc.recover()


def take(arc, index, body):
    writer = arc.begin_snapshot(index, 1)
    writer.write(body)
    return writer.commit(0)


@pytest.mark.parametrize("same_bytes", [True, False])
def test_a_snapshot_taken_again_under_its_name_is_one_snapshot(same_bytes):
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    for i in range(150):
        rec.log.append(1, 16, bytes([i % 256]) * 40)
    arc.append_from(rec.log, 1, 151)
    arc.note_commit_index(150)
    arc.sync()
    take(arc, 50, b"state at 50")
    take(arc, 100, b"state at 100")
    arc.close()
    path = f"/data/snapshot-{100:020d}-1.snap"
    inode = fs._dirs["/data"][path.rsplit("/", 1)[1]]
    inode.written[3] ^= 1                                 # the newest snapshot is damaged
    inode.durable = bytearray(inode.written)
    arc, rec = open_mem(fs)
    assert rec.snapshot.index == 50 and [s.index for s in rec.skipped_snapshots] == [100]
    take(arc, 100, b"state at 100" if same_bytes else b"state at 100, again")  # the replay
    arc.close()

    arc, rec = open_mem(fs)
    assert rec.snapshot.index == 100
    assert rec.skipped_snapshots == ()                    # nothing damaged any more
    assert [s.index for s in arc.recorded_snapshots()] == [50, 100]   # one file, one snapshot
    arc.close()
