"""Disk full and I/O errors; node state; durable marker; recording log; snapshots and purge."""
from __future__ import annotations

import errno
import random

import pytest

from aeronpy.archive import Archive, ArchiveCorruptError, ArchiveIOError, MemFileSystem
from aeronpy.archive.durable_marker import DurableMarker
from aeronpy.archive.node_state import HardState, load_node_state, save_node_state
from aeronpy.archive.recording_log import ENTRY_BYTES, RecordingLog, SnapshotEntry, TermStart

from .test_archive import entries, fill, flip_bit, open_mem


# -- disk full / I/O errors -------------------------------------------------------------------
@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO])
def test_write_error_fails_the_archive_and_spares_durable_data(err):
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "data")
    fill(arc, rec.log, 40, 1)
    durable = arc.sync()
    fs.fail("write", err)
    with pytest.raises(ArchiveIOError) as exc:
        fill(arc, rec.log, 40, 1, seed=1)
    assert exc.value.errno == err and "refuses writes" in str(exc.value)
    assert arc.failed
    with pytest.raises(ArchiveIOError, match="earlier failure"):   # never write past a failure
        fill(arc, rec.log, 1, 1, seed=2)
    with pytest.raises(ArchiveIOError):
        arc.save_hard_state(5, 1)
    fs.power_fail(random.Random(0))
    _, rec2 = open_mem(fs, "data")
    assert entries(rec2.log)[:durable] == entries(rec.log)[:durable]
    assert rec2.log.last_index >= durable


def test_disk_full_while_filling_segments():
    fs = MemFileSystem(capacity_bytes=40_000)
    arc, rec = open_mem(fs, "data")
    durable = 0
    with pytest.raises(ArchiveIOError, match="disk is full"):
        for round_ in range(100):
            fill(arc, rec.log, 10, 1, size=300, seed=round_)
            arc.request_sync()
            durable = arc.poll_synced()
    assert arc.failed and durable > 0
    fs.crash()
    fs.capacity_bytes = None   # the operator freed space
    _, rec2 = open_mem(fs, "data")
    assert rec2.log.last_index >= durable
    assert entries(rec2.log) == entries(rec.log)[: rec2.log.last_index]


def test_fsync_error_is_reported_and_durable_index_does_not_move():
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "data")
    fill(arc, rec.log, 10, 1)
    assert arc.sync() == 10
    fill(arc, rec.log, 10, 1, seed=5)
    fs.fail("sync", errno.EIO)
    with pytest.raises(ArchiveIOError, match="I/O error"):
        arc.request_sync()
    with pytest.raises(ArchiveIOError):
        arc.poll_synced()
    assert arc.durable_index == 10
    arc.close()   # closing a failed archive writes nothing and does not raise


def test_background_sync_error_surfaces_on_poll(tmp_path, monkeypatch):
    arc = Archive.open(str(tmp_path / "d"), file_sync="data", segment_bytes=4096)
    rec = arc.recover()
    fill(arc, rec.log, 5, 1)

    def broken(handle):
        raise OSError(errno.EIO, "injected")
    monkeypatch.setattr(arc.fs, "fdatasync", broken)
    arc.request_sync()
    arc._syncer.drain()
    with pytest.raises(ArchiveIOError, match="I/O error"):
        arc.poll_synced()
    with pytest.raises(ArchiveIOError):
        fill(arc, rec.log, 1, 1)
    arc.close()


# -- node state -------------------------------------------------------------------------------
def test_node_state_round_trip_and_atomic_replace():
    fs = MemFileSystem()
    fs.makedirs("/d")
    assert load_node_state(fs, "/d") == HardState(0, None)
    save_node_state(fs, "/d", 3, 2)
    save_node_state(fs, "/d", 4, None)
    fs.power_fail(random.Random(1))          # saved state is synced: survives
    assert load_node_state(fs, "/d") == HardState(4, None)
    # a crash in the middle of a save leaves the old state (or the new), never a mix
    for seed in range(30):
        fs.fail("rename", errno.EIO)
        with pytest.raises(OSError):
            save_node_state(fs, "/d", 9, 1)
        fs.power_fail(random.Random(seed))
        assert load_node_state(fs, "/d") == HardState(4, None)


def test_corrupt_node_state_is_a_clear_error():
    fs = MemFileSystem()
    fs.makedirs("/d")
    save_node_state(fs, "/d", 7, 1)
    flip_bit(fs, "/d/node.state", 17)
    with pytest.raises(ArchiveCorruptError, match="node-state file fails its checksum") as exc:
        load_node_state(fs, "/d")
    assert "/d/node.state" in str(exc.value)
    with pytest.raises(ValueError):
        save_node_state(fs, "/d", -1, None)


def test_archive_save_hard_state_is_durable_under_none():
    fs = MemFileSystem()
    arc, _ = open_mem(fs, "none")
    arc.save_hard_state(12, 0)
    fs.power_fail(random.Random(3))
    assert open_mem(fs, "none")[1].hard_state == HardState(12, 0)


# -- durable marker ---------------------------------------------------------------------------
def test_durable_marker_survives_a_torn_slot_write():
    fs = MemFileSystem()
    fs.makedirs("/d")
    m = DurableMarker(fs, "/d")
    m.open()
    m.write(10, 7, sync=True)
    h = m.handle
    m.write(20, 15, sync=False)
    # tear the newest slot: the previous value must win
    fs.pwrite(h, b"\xff\xff", 8 + (512 if m.sequence % 2 else 0))
    m2 = DurableMarker(fs, "/d")
    m2.load()
    assert (m2.durable_index, m2.commit_index, m2.valid) == (10, 7, True)
    fs.pwrite(h, b"\xff" * 600, 0)
    m3 = DurableMarker(fs, "/d")
    m3.load()
    assert not m3.valid and m3.durable_index == 0


# -- recording log ----------------------------------------------------------------------------
def test_recording_log_term_starts_snapshots_and_torn_tail():
    fs = MemFileSystem()
    fs.makedirs("/d")
    rl = RecordingLog(fs, "/d")
    rl.load()
    rl.append_term_start(1, 1, sync=True)
    rl.append_term_start(2, 40, sync=True)
    rl.append_snapshot(SnapshotEntry(30, 1, "snap-a", 0xABC, 123))
    rl.append_term_start(3, 35, sync=False)   # a truncation rewrote history from 35
    h = rl.handle
    fs.pwrite(h, b"\x01" * 50, rl.size)       # a torn extra entry
    rl2 = RecordingLog(fs, "/d")
    rl2.load()
    assert rl2.term_starts() == [TermStart(1, 1), TermStart(3, 35)]
    assert rl2.snapshots() == [SnapshotEntry(30, 1, "snap-a", 0xABC, 123)]
    plan = rl2.plan(rl2.snapshots()[-1], log_end=34)
    assert plan.log_start == 31 and plan.term_starts == (TermStart(1, 1),)
    assert len(fs.read_file("/d/recording.log")) == 4 * ENTRY_BYTES   # the torn tail was cut


def test_recording_log_damage_before_a_snapshot_entry_is_corruption():
    fs = MemFileSystem()
    fs.makedirs("/d")
    rl = RecordingLog(fs, "/d")
    rl.load()
    rl.append_term_start(1, 1, sync=True)
    rl.append_snapshot(SnapshotEntry(5, 1, "s", 1, 0))
    flip_bit(fs, "/d/recording.log", 20)
    with pytest.raises(ArchiveCorruptError, match="recording-log") as exc:
        RecordingLog(fs, "/d").load()
    assert "offset 0" in str(exc.value)


# -- snapshots and purge ----------------------------------------------------------------------
def take_snapshot(arc: Archive, index: int, term: int, body: bytes, ts: int = 0):
    w = arc.begin_snapshot(index, term)
    w.write(body)
    return w.commit(ts)


def test_recovery_starts_from_the_latest_valid_snapshot():
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "data")
    fill(arc, rec.log, 300, 1)
    arc.sync()
    old = take_snapshot(arc, 100, 1, b"state@100")
    new = take_snapshot(arc, 200, 1, b"state@200", ts=55)
    assert arc.purge_below(100) > 0
    with pytest.raises(ValueError, match="no snapshot covers"):
        arc.purge_below(250)
    fs.power_fail(random.Random(2))
    arc2, rec2 = open_mem(fs, "data")
    assert rec2.snapshot.index == 200 and rec2.snapshot.timestamp_ns == 55
    assert arc2.open_snapshot(rec2.snapshot).read() == b"state@200"
    assert rec2.log.base_index == 200 and rec2.log.last_index == 300
    assert entries(rec2.log) == entries(rec.log, 201)
    # damage the newest snapshot: the older one is used, the log after it is still there
    flip_bit(fs, new.path, 2)
    fs.crash()
    _, rec3 = open_mem(fs, "data")
    assert rec3.snapshot.index == old.index and len(rec3.skipped_snapshots) == 1
    assert rec3.log.base_index == 100 and entries(rec3.log) == entries(rec.log, 101)


def test_snapshot_beyond_the_archived_log_resets_it():
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "data")
    fill(arc, rec.log, 10, 1)
    arc.sync()
    take_snapshot(arc, 50, 2, b"installed from the leader")
    fs.crash()
    arc2, rec2 = open_mem(fs, "data")
    assert rec2.log.base_index == 50 and rec2.log.last_index == 50 and rec2.log.base_term == 2
    rec2.log.append(2, 16, b"next")
    arc2.append_from(rec2.log, 51, 52)
    arc2.sync()
    fs.power_fail(random.Random(0))
    _, rec3 = open_mem(fs, "data")
    assert rec3.log.last_index == 51 and bytes(rec3.log.payload_at(51)) == b"next"


def test_aborted_snapshot_leaves_nothing():
    fs = MemFileSystem()
    arc, _ = open_mem(fs, "data")
    w = arc.begin_snapshot(1, 1)
    w.write(b"partial")
    w.abort()
    assert not any(n.endswith((".snap", ".tmp")) for n in fs.listdir("/data"))
    assert arc.latest_valid_snapshot() is None
