"""Thread audit of the archive: a snapshot job (the node's snapshot thread) that outlives
``Archive.close()``.

Today a node's close() waits for ever for a hung snapshot job (tests/cluster/
test_thread_audit.py), so the job cannot outlive the archive. Once that wait is bounded, it
can: a job stuck in the snapshot file's fsync resumes after close(), and
``RecordingLog._append_locked`` reopens ``recording.log`` (its handle was closed) and writes
its record at the old instance's offset. If the data dir was opened again meanwhile (an
application restarting its node in the same process), that offset is the new instance's
latest record: a snapshot recorded by the new instance was overwritten, and its next start
deletes that snapshot file as a stray -- the loss commit b4ec9d5 fixed within one instance.
The fsync is held with an event, so the interleaving is forced; every wait is bounded.
"""
from __future__ import annotations

import os
import threading

import pytest

from aeronpy.archive import Archive
from aeronpy.archive.fs import OsFileSystem
from aeronpy.archive.recording_log import RecordingLog
from aeronpy.cluster.snapshotting import write_snapshot_file

_JOB_THREAD = "aeronpy-snapshot-test"


class _HungSnapshotSync(OsFileSystem):
    """The snapshot job's directory sync (after its rename, before its record) waits for
    ``release``: a hung disk."""

    def __init__(self):
        super().__init__()
        self.hung = threading.Event()
        self.release = threading.Event()

    def sync_dir(self, path: str) -> None:
        if threading.current_thread().name == _JOB_THREAD:
            self.hung.set()
            self.release.wait(10)
        super().sync_dir(path)


def test_a_snapshot_job_that_outlives_close_does_not_record(tmp_path):
    data_dir = str(tmp_path / "n0")
    fs = _HungSnapshotSync()
    old = Archive.open(data_dir, fs=fs)
    old.recover()
    outcome: list = []

    def job():                              # the snapshot thread's job, as Snapshotter submits it
        try:
            outcome.append(write_snapshot_file(old, 10, 1, 0, [b"header", b"state"]))
        except Exception as exc:  # noqa: BLE001 - refusing is what a fix does
            outcome.append(exc)
    writer = threading.Thread(target=job, name=_JOB_THREAD)
    writer.start()
    new = None
    try:
        assert fs.hung.wait(5), "the job never reached its directory sync"
        old.close()                         # the node gave up waiting for the job
        new = Archive.open(data_dir, fs=OsFileSystem())
        new.recover()
        snapshot = new.begin_snapshot(20, 1)
        snapshot.write(b"newer state")
        kept = snapshot.commit(5)           # recorded at offset 0 of recording.log
    finally:
        fs.release.set()
        writer.join(10)
    assert not writer.is_alive() and outcome
    new.close()
    log = RecordingLog(OsFileSystem(), data_dir)
    log.load()
    # before a fix: [10] -- the old job's record landed on the new instance's snapshot record
    assert [s.index for s in log.snapshots()] == [kept.index], log.entries
    again = Archive.open(data_dir, fs=OsFileSystem())
    try:
        again.recover()
        assert os.path.exists(kept.path), "the newer snapshot's file was deleted as a stray"
    finally:
        again.close()
