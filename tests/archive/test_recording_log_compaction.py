"""The recording log is rewritten once it holds COMPACT_SNAPSHOT_RECORDS snapshot records: the
live term starts and the records of snapshots whose files still exist stay, the rest go. A
member snapshotting every few seconds for months used to keep every record, in the file and in
memory, and scan them all at every snapshot (found by the session-churn memory review)."""
from __future__ import annotations

import pytest

from aeronpy.archive import MemFileSystem
from aeronpy.archive import recording_log as R
from aeronpy.archive.recording_log import RecordingLog, SnapshotEntry, TermStart, live_term_starts

DIR = "/data"


def _snapshot(fs, index: int, term: int, keep_file: bool) -> SnapshotEntry:
    name = f"snapshot-{index:020d}-{term}.snap"
    if keep_file:
        h = fs.open_file(f"{DIR}/{name}", create=True)
        fs.pwrite(h, b"s", 0)
        fs.fdatasync(h)
        fs.close(h)
    return SnapshotEntry(index, term, name, 0, index)


def _log(fs) -> RecordingLog:
    fs.makedirs(DIR)
    return RecordingLog(fs, DIR)


def test_compaction_keeps_live_starts_and_existing_snapshots_only(monkeypatch):
    monkeypatch.setattr(R, "COMPACT_SNAPSHOT_RECORDS", 10)
    fs = MemFileSystem()
    log = _log(fs)
    log.compact_at = 10
    log.append_term_start(1, 1, sync=False)
    log.append_term_start(2, 40, sync=False)
    log.append_term_start(2, 30, sync=False)        # supersedes the start at 40
    for i in range(9):
        log.append_snapshot(_snapshot(fs, 100 + i, 2, keep_file=i >= 7))   # 2 files kept
    assert log.compactions == 0 and log.snapshot_records == 9     # the control: not yet
    history = live_term_starts(log.entries)
    log.append_snapshot(_snapshot(fs, 109, 2, keep_file=True))    # the 10th record
    assert log.compactions == 1
    assert [e.index for e in log.entries if isinstance(e, SnapshotEntry)] == [107, 108, 109]
    assert live_term_starts(log.entries) == history == [TermStart(1, 1), TermStart(2, 30)]
    reread = RecordingLog(fs, DIR)
    reread.load()
    assert reread.entries == log.entries and reread.damaged_at is None
    log.append_snapshot(_snapshot(fs, 110, 2, keep_file=True))    # appends after the rewrite
    reread.load()
    assert [e.index for e in reread.snapshots()] == [107, 108, 109, 110]
    h = fs.open_file(f"{DIR}/{R.RECORDING_LOG_FILE}")
    assert fs.size(h) == 6 * R.ENTRY_BYTES          # 2 starts, 4 snapshots: nothing else
    fs.close(h)


def test_a_failed_rewrite_leaves_the_file_as_it_was(monkeypatch):
    monkeypatch.setattr(R, "COMPACT_SNAPSHOT_RECORDS", 4)
    fs = MemFileSystem()
    log = _log(fs)
    log.compact_at = 4

    def refuse(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(fs, "rename", refuse)
    for i in range(4):
        log.append_snapshot(_snapshot(fs, 10 + i, 1, keep_file=i == 3))
    assert log.compactions == 0 and log.compact_at == 8            # retried 4 records later
    log.append_snapshot(_snapshot(fs, 14, 1, keep_file=True))
    reread = RecordingLog(fs, DIR)
    reread.load()
    assert [e.index for e in reread.snapshots()] == [10, 11, 12, 13, 14]


def test_a_history_the_rewrite_would_change_is_left_alone(monkeypatch, caplog):
    """A start recorded after a snapshot that contradicts it (no sound log gives one): the
    rewrite puts snapshot records after the starts, where that snapshot would end the start,
    so the file is left as it is."""
    monkeypatch.setattr(R, "COMPACT_SNAPSHOT_RECORDS", 2)
    fs = MemFileSystem()
    log = _log(fs)
    log.compact_at = 2
    log.append_term_start(1, 1, sync=False)
    log.append_snapshot(_snapshot(fs, 60, 3, keep_file=True))
    log.append_term_start(2, 70, sync=False)                       # term 2 after a term-3 snapshot
    before = list(log.entries)
    log.append_snapshot(_snapshot(fs, 80, 3, keep_file=True))
    assert log.compactions == 0 and log.entries == before + [log.entries[-1]]
    assert "would change the term history" in caplog.text


def test_the_swarm_holds_with_a_rewrite_every_few_snapshots(monkeypatch):
    """Crashes, power failures (an unsynced rename undone) and installs with the recording log
    rewritten every 3 snapshot records: every invariant holds, and rewrites happened."""
    from aeronpy.testing.swarm import run_seed
    monkeypatch.setattr(R, "COMPACT_SNAPSHOT_RECORDS", 3)
    done = []
    compact = RecordingLog._compact_locked

    def counting(self):
        before = self.compactions
        compact(self)
        done.append(self.compactions - before)
    monkeypatch.setattr(RecordingLog, "_compact_locked", counting)
    failed = [r for r in (run_seed(seed) for seed in range(40)) if not r.ok]
    assert failed == [], failed[0].error
    assert sum(done) >= 20, sum(done)


def test_a_log_whose_damaged_tail_was_cut_is_compacted_again(monkeypatch):
    """A damaged last entry (cut at the start) left damaged_at set for the life of the process,
    and compaction never ran there (found by the review of today's changes)."""
    monkeypatch.setattr(R, "COMPACT_SNAPSHOT_RECORDS", 3)
    fs = MemFileSystem()
    log = _log(fs)
    log.append_term_start(1, 1, sync=True)
    h = fs.open_file(f"{DIR}/{R.RECORDING_LOG_FILE}")
    fs.pwrite(h, b"\\x01" * R.ENTRY_BYTES, R.ENTRY_BYTES)     # a damaged entry after it
    fs.fdatasync(h)
    fs.close(h)
    log = RecordingLog(fs, DIR)
    log.load(cut=False)
    assert log.damaged_at == R.ENTRY_BYTES                    # the control: seen
    log.cut_torn_tail()
    for i in range(3):
        log.append_snapshot(_snapshot(fs, 10 + i, 1, keep_file=i == 2))
    assert log.compactions == 1
    assert [e.index for e in log.snapshots()] == [12]
