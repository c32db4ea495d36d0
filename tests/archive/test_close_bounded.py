"""Closing an archive whose sync thread is stuck in fsync (a hung disk) waits one limit in all
(``CLOSE_SYNC_TIMEOUT_S``), not 60 s three times over (the final sync's drain, then the sync
thread's stop: its drain and its join), and says which entries may not be durable."""
from __future__ import annotations

import logging
import threading

from aeronpy._logindex import LogIndex  # noqa: F401 - the archive's in-memory log
from aeronpy.archive import Archive, ArchiveIOError, MemFileSystem
from aeronpy.archive import archive as archive_module
from aeronpy.archive import syncer as syncer_module


def test_close_with_a_hung_sync_waits_one_limit_and_names_what_is_not_durable(monkeypatch, caplog):
    limit = 0.3
    monkeypatch.setattr(archive_module, "CLOSE_SYNC_TIMEOUT_S", limit, raising=False)
    waits = []                           # the timeouts close() hands to every wait it does
    real_wait_for = threading.Condition.wait_for
    real_join = threading.Thread.join

    class Recorded(threading.Condition):
        def wait_for(self, predicate, timeout=None):
            if threading.current_thread() is threading.main_thread():
                waits.append(timeout)
            return real_wait_for(self, predicate, timeout)
    monkeypatch.setattr(syncer_module.threading, "Condition", Recorded)

    fs = MemFileSystem()
    arc = Archive.open("/data", file_sync="data", segment_bytes=4096, fs=fs, background_sync=True)
    log = arc.recover().log
    for i in range(10):
        log.append(1, 16, b"entry %d" % i)
    arc.append_from(log, 1, 11)
    arc.request_sync()
    assert arc._drain() is None and arc.poll_synced() == 10
    for i in range(5):
        log.append(1, 16, b"late %d" % i)
    arc.append_from(log, 11, 16)

    hung = threading.Event()
    release = threading.Event()
    real_sync = fs.fdatasync

    def hang(handle):
        hung.set()
        release.wait(20)                 # bounded: the test ends it below
        return real_sync(handle)
    monkeypatch.setattr(fs, "fdatasync", hang)
    monkeypatch.setattr(fs, "fsync", hang)
    monkeypatch.setattr(threading.Thread, "join",
                        lambda self, timeout=None: (waits.append(timeout), real_join(self, timeout))[1])
    waits.clear()
    raised = None
    try:
        with caplog.at_level(logging.WARNING, logger="aeronpy.archive"):
            arc.close()
    except ArchiveIOError as exc:
        raised = exc
    finally:
        release.set()
        monkeypatch.undo()
    assert hung.is_set()
    assert waits and all(w is not None for w in waits), waits
    assert sum(waits) <= limit + 1e-6, f"close waited up to {sum(waits):.1f} s in all: {waits}"
    assert raised is not None, "a sync that did not finish is a failure (node.failure, errors.log)"
    said = str(raised) + " ".join(r.getMessage() for r in caplog.records)
    assert "11..15" in said and "may not be durable" in said, said


def test_close_leaves_the_hung_sync_threads_files_open(monkeypatch, caplog):
    """The sync thread that close() gave up on still holds the segments' and the durable
    marker's descriptors (it fsyncs the one, then writes the other): closing them under it let
    a reused descriptor number take its write into another file (thread audit)."""
    monkeypatch.setattr(archive_module, "CLOSE_SYNC_TIMEOUT_S", 0.3, raising=False)
    fs = MemFileSystem()
    arc = Archive.open("/data", file_sync="data", segment_bytes=4096, fs=fs, background_sync=True)
    log = arc.recover().log
    for i in range(5):
        log.append(1, 16, b"entry %d" % i)
    arc.append_from(log, 1, 6)
    hung = threading.Event()
    release = threading.Event()
    real_sync = fs.fdatasync
    closed_while_hung = []
    real_close = fs.close

    def hang(handle):
        hung.set()
        release.wait(20)                 # bounded: the test ends it below
        return real_sync(handle)

    def close(handle):
        if hung.is_set() and not release.is_set():
            closed_while_hung.append(handle.path)
        return real_close(handle)
    monkeypatch.setattr(fs, "fdatasync", hang)
    monkeypatch.setattr(fs, "fsync", hang)
    monkeypatch.setattr(fs, "close", close)
    try:
        with caplog.at_level(logging.WARNING, logger="aeronpy.archive"):
            try:
                arc.close()
            except ArchiveIOError:
                pass                     # the unfinished sync is a failure (the test above)
        assert hung.is_set()
        held = [p for p in closed_while_hung if p.endswith(".seg") or "durable" in p]
        assert held == [], f"closed under the hung sync thread: {held}"
        assert "left open" in caplog.text
    finally:
        release.set()
        monkeypatch.undo()
