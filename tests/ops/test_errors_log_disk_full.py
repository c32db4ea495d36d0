"""A full disk fails the same way at every log index: errors.log keeps one entry for it.

errors.log keeps the last 256 *distinct* errors; an error seen again bumps its count. A
disk-full failure names what it was writing, and that carries the log index: a snapshot's
temporary file (``snapshot-<index>-<term>.snap.tmp``, in the fs error), the entries being
appended (``appending entries N..M``). Each index was a new distinct entry, so one full disk
filled the ring with copies of one problem and pushed the older, different errors out.
These tests drive real disk-full failures (the in-memory disk of `MemFileSystem`) into the
log through the node's own paths."""
from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest

from aeronpy.archive import ArchiveIOError, MemFileSystem
from aeronpy.cluster.node_snapshots import NodeSnapshots
from aeronpy.cluster.nodefiles import ErrorLog, read_errors
from aeronpy.cluster.snapshotting import write_snapshot_file

from tests.archive.test_archive import fill, open_mem


def _record_snapshot_failure(log: ErrorLog, index: int, exc: BaseException) -> None:
    # the node's listener for a failed snapshot of its own (NodeSnapshots.__init__ wires it)
    NodeSnapshots._record_failed_snapshot(SimpleNamespace(node=SimpleNamespace(_errors=log)),
                                          index, exc)


def test_own_snapshots_failing_on_a_full_disk_at_many_indexes_are_one_entry(tmp_path):
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    log = ErrorLog(tmp_path, capacity=8)
    log.record("an earlier, different error")
    try:
        indexes = []
        for _ in range(12):                     # more failures than the ring has records
            fill(arc, rec.log, 3, 1)
            index = rec.log.last_index
            fs.fail("write", errno.ENOSPC, skip=1)      # the snapshot's bytes (after truncate)
            with pytest.raises(OSError) as info:
                write_snapshot_file(arc, index, 1, 0, [b"state" * 100])
            assert info.value.errno == errno.ENOSPC and str(index) in str(info.value)
            _record_snapshot_failure(log, index, info.value)
            indexes.append(index)
        entries = read_errors(tmp_path)
        assert [e.text for e in entries][0] == "an earlier, different error", \
            [e.text for e in entries]
        failed = [e for e in entries if e.text.startswith("snapshot failed")]
        assert [e.count for e in failed] == [12], [(e.count, e.text) for e in failed]
        (entry,) = failed
        assert f"first at index {indexes[0]}" in entry.detail, entry.detail
        assert f"{indexes[-1]:020d}" in entry.text, entry.text     # the latest one's text
    finally:
        log.close()
        arc.close()


def test_a_member_failing_on_a_full_disk_at_every_start_keeps_one_entry(tmp_path):
    """A supervisor restarts the member; each run appends a segment further before the disk
    fills (`archive ...: the disk is full while appending entries N..M`)."""
    from tests.archive.test_archive import SEG
    fs = MemFileSystem(capacity_bytes=3 * SEG)
    errors_seen = []
    for run in range(5):
        arc, rec = open_mem(fs)
        with pytest.raises(ArchiveIOError) as info:
            for seed in range(10_000):
                fill(arc, rec.log, 1, 1, seed=seed)
                arc.sync()
        arc.close()
        fs.crash()
        fs.capacity_bytes += SEG            # room for one more segment freed meanwhile
        errors_seen.append(str(info.value))
        log = ErrorLog(tmp_path)            # a new run's log, as the node opens it
        log.record(info.value)
        log.close()
    assert len(set(errors_seen)) == 5, errors_seen  # each run failed at other indexes
    entries = read_errors(tmp_path)
    assert [e.count for e in entries] == [5], [(e.count, e.text) for e in entries]
    assert "the disk is full while appending entries" in entries[0].text


def test_control_other_errors_that_differ_in_numbers_stay_distinct(tmp_path):
    log = ErrorLog(tmp_path)
    try:
        log.record("KeyError: 17 (at svc.py:4 in on_message)")
        log.record("KeyError: 18 (at svc.py:4 in on_message)")
        log.record("snapshot failed: OSError: [Errno 5] Input/output error: "
                   "'/d/snapshot-00000000000000000020-1.snap.tmp'")
        log.record("snapshot failed: OSError: [Errno 5] Input/output error: "
                   "'/d/snapshot-00000000000000000030-1.snap.tmp'")
        assert [e.count for e in read_errors(tmp_path)] == [1, 1, 1, 1]
    finally:
        log.close()
