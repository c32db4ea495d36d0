"""Archive.reset_to_snapshot / recorded_snapshots: the public seam install-snapshot uses."""
from __future__ import annotations

import random

import pytest

from aeronpy._logindex import LogIndex
from aeronpy.archive import Archive, MemFileSystem

SEG = 4096


def open_mem(fs: MemFileSystem, file_sync: str = "data"):
    arc = Archive.open("/data", file_sync=file_sync, segment_bytes=SEG, fs=fs)
    return arc, arc.recover()


def fill(arc: Archive, log: LogIndex, n: int, term: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    lo = log.last_index + 1
    for _ in range(n):
        log.append(term, 16, rng.randbytes(40))
    arc.append_from(log, lo, log.last_index + 1)
    arc.sync()


def record_snapshot(arc: Archive, index: int, term: int, body: bytes = b"state") -> None:
    writer = arc.begin_snapshot(index, term)
    writer.write(body)
    writer.commit(0)


def test_reset_refuses_an_unrecorded_snapshot():
    arc, rec = open_mem(MemFileSystem())
    fill(arc, rec.log, 10, 1)
    with pytest.raises(ValueError, match="record the snapshot first"):
        arc.reset_to_snapshot(5, 1, keeps_suffix=True)
    assert arc.written_index == 10


@pytest.mark.parametrize("policy", ["none", "data", "full"])
def test_reset_without_suffix_starts_the_log_after_the_snapshot(policy):
    fs = MemFileSystem()
    arc, rec = open_mem(fs, policy)
    fill(arc, rec.log, 200, 1)                       # several segments, all of term 1
    record_snapshot(arc, 500, 3)                     # from a leader far ahead
    arc.reset_to_snapshot(500, 3, keeps_suffix=False)
    assert arc.written_index == 500 and arc.durable_index == 500
    log = LogIndex(500, 3)
    fill(arc, log, 5, 3, seed=1)
    assert arc.written_index == 505
    fs.power_fail(random.Random(0))                  # durable on return: nothing old comes back
    _, rec2 = open_mem(fs, policy)
    assert rec2.snapshot.index == 500
    assert rec2.log.base_index == 500 and rec2.log.last_index == 505
    assert [rec2.log.term_at(i) for i in range(501, 506)] == [3] * 5
    assert rec2.commit_index >= 500


def test_reset_with_suffix_keeps_the_entries_after_the_snapshot():
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    fill(arc, rec.log, 200, 2)
    before = [arc.read(i) for i in range(151, 201)]
    record_snapshot(arc, 150, 2)
    arc.reset_to_snapshot(150, 2, keeps_suffix=True)
    assert arc.written_index == 200
    assert [arc.read(i) for i in range(151, 201)] == before
    segments = sorted(n for n in fs.listdir("/data") if n.endswith(".seg"))
    assert segments and int(segments[0].split(".")[0]) <= 151     # whole segments below: purged
    assert all(int(n.split(".")[0]) > 1 for n in segments)
    fs.crash()
    _, rec2 = open_mem(fs)
    assert rec2.snapshot.index == 150 and rec2.log.base_index == 150 and rec2.log.last_index == 200


def test_reset_with_suffix_but_another_term_archived_drops_the_stale_suffix():
    """The core's log holds (index, term), but the archive's copy there is stale (a truncation
    not yet written): the archive must not keep its conflicting entries."""
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    fill(arc, rec.log, 100, 1)
    record_snapshot(arc, 80, 2)
    arc.reset_to_snapshot(80, 2, keeps_suffix=True)
    assert arc.written_index == 80
    fs.crash()
    _, rec2 = open_mem(fs)
    assert rec2.log.base_index == 80 and rec2.log.last_index == 80


def test_recorded_snapshots_lists_existing_files_oldest_first():
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    fill(arc, rec.log, 30, 1)
    record_snapshot(arc, 10, 1, b"a" * 7)
    record_snapshot(arc, 20, 1, b"b" * 9)
    record_snapshot(arc, 30, 1, b"c" * 11)
    listed = arc.recorded_snapshots()
    assert [(s.index, s.size) for s in listed] == [(10, 7), (20, 9), (30, 11)]
    fs.remove(listed[1].path)
    assert [s.index for s in arc.recorded_snapshots()] == [10, 30]


def test_recovery_picks_the_newest_snapshot_by_index_not_by_record_order():
    """A snapshot taken before an install can be recorded after the installed (newer) one."""
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    record_snapshot(arc, 43, 1, b"installed")
    arc.reset_to_snapshot(43, 1, keeps_suffix=False)
    record_snapshot(arc, 22, 1, b"own, older")
    assert [s.index for s in arc.recorded_snapshots()] == [22, 43]
    fs.crash()
    _, rec2 = open_mem(fs)
    assert rec2.snapshot.index == 43 and rec2.log.base_index == 43
