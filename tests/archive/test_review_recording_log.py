"""Review: a refused start changes nothing on disk (docs/archive-format.md, "Corruption").
A damaged last recording-log entry (a snapshot record: always synced, so a bit flip, not a
torn write) was cut -- the file truncated and synced -- while loading, before recovery went on
to refuse the start; the refusal then blamed only the missing log, and the snapshot's record
was gone for good."""
from __future__ import annotations

import warnings

import pytest

from aeronpy.archive import Archive, ArchiveCorruptError, MemFileSystem
from aeronpy.archive.recording_log import ENTRY_BYTES

SEG = 4096


def open_mem(fs):
    arc = Archive.open("/data", file_sync="data", segment_bytes=SEG, fs=fs)
    return arc, arc.recover()


def build(fs, keep_older: bool):
    arc, rec = open_mem(fs)
    for i in range(200):
        rec.log.append(1, 16, bytes([i % 256]) * 40)
    arc.append_from(rec.log, 1, 201)
    arc.note_commit_index(200)
    arc.sync()
    for idx in (50, 150):
        writer = arc.begin_snapshot(idx, 1)
        writer.write(b"state at %d" % idx)
        writer.commit(0)
        arc.purge_below((50 if keep_older else idx) + 1)
    if not keep_older:                   # snapshots_to_keep = 1: the older file is deleted
        arc.remove_file(f"/data/snapshot-{50:020d}-1.snap")
    arc.close()


def damage_last_entry(fs) -> bytes:
    inode = fs._dirs["/data"]["recording.log"]
    inode.written[ENTRY_BYTES + 50] ^= 0x04         # inside the newest snapshot's record
    inode.durable = bytearray(inode.written)
    return bytes(inode.written)


def test_refused_start_leaves_the_recording_log_untouched():
    fs = MemFileSystem()
    build(fs, keep_older=False)
    damaged = damage_last_entry(fs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ArchiveCorruptError) as exc:
            open_mem(fs)
    assert bytes(fs.read_file("/data/recording.log")) == damaged
    assert f"offset {ENTRY_BYTES} of /data/recording.log" in str(exc.value)
    assert fs.exists(f"/data/snapshot-{150:020d}-1.snap")          # the evidence stays


def test_a_damaged_last_entry_is_still_cut_when_recovery_goes_on():
    fs = MemFileSystem()
    build(fs, keep_older=True)
    damage_last_entry(fs)
    with pytest.warns(RuntimeWarning, match="fails its checksum"):
        arc, rec = open_mem(fs)
    assert rec.snapshot is not None and rec.snapshot.index == 50
    assert rec.log.last_index == 200
    assert len(fs.read_file("/data/recording.log")) == ENTRY_BYTES
    arc.close()


def test_an_entry_whose_sync_failed_leaves_no_hole_for_the_next():
    """A failed fdatasync of a recording-log append (EIO) raised, but the log's size had moved
    past the entry: the next entry was written after it, and if the kernel dropped the failed
    page the log had a hole in its middle, which the next start takes for damage. The next
    entry now goes where the failed one was, and the file is cut back."""
    from aeronpy.archive.fs import MemFileSystem
    from aeronpy.archive.recording_log import RecordingLog, SnapshotEntry, TermStart
    fs = MemFileSystem()
    fs.makedirs("/d")
    log = RecordingLog(fs, "/d")
    log.load()
    log.append_term_start(1, 1, sync=True)
    fs.fail("sync")
    with pytest.raises(OSError):
        log.append_snapshot(SnapshotEntry(10, 1, "snapshot-10-1.snap", 123, 0))
    log.append_term_start(2, 11, sync=True)
    again = RecordingLog(fs, "/d")
    again.load(cut=False)
    assert again.damaged_at is None and again.file_size == again.size
    assert again.entries == [TermStart(1, 1), TermStart(2, 11)]
