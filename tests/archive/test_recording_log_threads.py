"""Two threads append to the recording log: the snapshot thread records a snapshot
(``SnapshotWriter.commit`` -> ``append_snapshot``, synced) while the duty cycle records a new
term's start (``Archive.record_term_starts`` -> ``append_term_start``). Both took the write
offset from ``RecordingLog.size`` with no lock, so a term start written while the snapshot
record's fdatasync ran landed on the same offset: the snapshot record was gone from disk,
the log below it could be purged, and the next start deleted the snapshot file as a stray.
"""
from __future__ import annotations

import threading
import time

from aeronpy.archive.fs import OsFileSystem
from aeronpy.archive.recording_log import ENTRY_BYTES, RecordingLog, SnapshotEntry, TermStart


class _SlowSyncFs(OsFileSystem):
    """An fdatasync that takes a while (and says when it has begun)."""

    def __init__(self):
        super().__init__()
        self.in_sync = threading.Event()

    def fdatasync(self, handle) -> None:
        self.in_sync.set()
        time.sleep(0.05)
        super().fdatasync(handle)


def test_a_term_start_recorded_during_a_snapshot_records_sync_keeps_both(tmp_path):
    fs = _SlowSyncFs()
    log = RecordingLog(fs, str(tmp_path))
    log.load()
    log.append_term_start(1, 1, sync=False)
    snapshot = SnapshotEntry(100, 1, "snapshot-100-1.snap", 123, 0)
    writer = threading.Thread(target=log.append_snapshot, args=(snapshot,))
    writer.start()
    assert fs.in_sync.wait(5)
    log.append_term_start(2, 101, sync=False)     # the duty cycle: a new term's first entry
    writer.join(5)
    assert not writer.is_alive()
    log.close()
    again = RecordingLog(OsFileSystem(), str(tmp_path))
    again.load()
    assert again.snapshots() == [snapshot]
    assert [e for e in again.entries if isinstance(e, TermStart)] == [TermStart(1, 1), TermStart(2, 101)]
    assert again.size == again.file_size == 3 * ENTRY_BYTES == log.size


def test_close_does_not_wait_for_ever_for_a_hung_append(tmp_path, caplog):
    release = threading.Event()

    class _HungSyncFs(_SlowSyncFs):
        def fdatasync(self, handle) -> None:
            self.in_sync.set()
            release.wait(10)

    fs = _HungSyncFs()
    log = RecordingLog(fs, str(tmp_path))
    log.load()
    writer = threading.Thread(target=log.append_snapshot,
                              args=(SnapshotEntry(100, 1, "snapshot-100-1.snap", 123, 0),))
    writer.start()
    try:
        assert fs.in_sync.wait(5)
        log.close(wait_s=0.1)
        assert log.handle is not None            # left open for the append still using it
        assert "an append is still running" in caplog.text
    finally:
        release.set()
        writer.join(5)
    log.close()
    assert log.handle is None
