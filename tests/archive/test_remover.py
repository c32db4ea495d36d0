"""Files the archive no longer needs are deleted on a thread, never on the duty cycle.

An unlink of a 64 MiB segment took 12-24 ms on the development VM (more while the kernel still
wrote the file's pages back), and a purge after a snapshot removes several in a row. The
tests: the remover deletes in submission order, counts and logs failures without raising, is
bounded, finishes its queue on close; an archive with real files returns from
``purge_below`` while a deletion is still blocked (the negative control, deleting at once,
stays blocked inside it); a crash that leaves purged segments undeleted recovers from the
snapshot as before, and the next purge deletes the leftovers.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time

import pytest

from aeronpy._logindex import LogIndex
from aeronpy.archive import Archive
from aeronpy.archive.fs import OsFileSystem
from aeronpy.archive.remover import BackgroundRemover

SEG = 4096
WAIT_S = 10.0


def _fill(arc: Archive, log, records: int = 300) -> None:
    rng = random.Random(3)
    for _ in range(records // 30):
        lo = log.last_index + 1
        for _ in range(30):
            log.append(1, 16, rng.randbytes(rng.randint(40, 600)))
        arc.append_from(log, lo, log.last_index + 1)
    arc.request_sync()
    arc.poll_synced()


def _snapshot(arc: Archive, index: int) -> None:
    writer = arc.begin_snapshot(index, 1)
    writer.write(b"state at %d" % index)
    writer.commit()


def _segment_files(directory) -> list:
    return sorted(name for name in os.listdir(directory) if name.endswith(".seg"))


class _HeldRemoves(OsFileSystem):
    """Real files whose ``remove`` of a segment or snapshot file waits for ``release`` (an
    unlink the kernel makes slow); other removes (the data-dir probe) go at once."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def remove(self, path: str) -> None:
        if path.endswith((".seg", ".snap")):
            self.entered.set()
            assert self.release.wait(WAIT_S), "the test never released the remove"
        super().remove(path)


# ------------------------------------------------------------------ the remover alone
def test_removes_in_submission_order_and_counts():
    done = []
    remover = BackgroundRemover(done.append)
    for name in ("a", "b", "c", "d"):
        remover.submit(name)
    assert remover.drain(WAIT_S)
    assert done == ["a", "b", "c", "d"] and remover.removed == 4 and remover.pending == 0
    assert remover.close()


def test_a_failed_delete_is_counted_and_logged_not_raised(caplog):
    def remove(path):
        if path == "bad":
            raise PermissionError(13, "denied", path)
        if path == "gone":
            raise FileNotFoundError(2, "no such file", path)
    remover = BackgroundRemover(remove)
    with caplog.at_level(logging.WARNING, logger="aeronpy.archive"):
        for name in ("ok", "bad", "gone", "ok2"):
            remover.submit(name)
        assert remover.drain(WAIT_S)
    assert remover.failed == 1 and remover.removed == 3
    assert isinstance(remover.last_error, PermissionError)
    assert any("could not delete bad" in r.getMessage() for r in caplog.records)
    remover.close()


def test_a_full_queue_waits_and_removes_inline_in_order():
    release = threading.Event()
    done = []

    def remove(path):
        if path == "first":
            assert release.wait(WAIT_S)
        done.append(path)
    remover = BackgroundRemover(remove, max_pending=2)
    remover.submit("first")                    # the thread holds it
    deadline = time.monotonic() + WAIT_S
    while remover.pending != 1 or remover._queue:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    remover.submit("second")
    remover.submit("third")                    # the queue (2) is full now
    blocked = threading.Thread(target=remover.submit, args=("fourth",))
    blocked.start()
    time.sleep(0.05)
    assert blocked.is_alive() and done == []   # waits for the queue rather than overtake it
    release.set()
    blocked.join(WAIT_S)
    assert not blocked.is_alive()
    assert done == ["first", "second", "third", "fourth"] and remover.inline == 1
    remover.close()


def test_no_thread_until_something_is_queued():
    remover = BackgroundRemover(lambda path: None)
    assert remover._thread is None               # an archive only read (a tool) has none
    remover.submit("x")
    assert remover._thread is not None and remover.drain(WAIT_S)
    assert remover.close()


def test_close_finishes_the_queue_and_refuses_more():
    done = []
    remover = BackgroundRemover(lambda p: (time.sleep(0.002), done.append(p)))
    for i in range(20):
        remover.submit(str(i))
    assert remover.close()
    assert done == [str(i) for i in range(20)]
    with pytest.raises(RuntimeError, match="closed"):
        remover.submit("late")


# ------------------------------------------------------------------ in the archive
def test_purge_returns_while_the_deletion_is_still_held(tmp_path):
    fs = _HeldRemoves()
    arc = Archive.open(str(tmp_path), segment_bytes=SEG, fs=fs)
    assert arc._remover is not None             # real files: the remover thread
    log = arc.recover().log
    _fill(arc, log)
    before = _segment_files(tmp_path)
    _snapshot(arc, 200)
    started = time.monotonic()
    removed = arc.purge_below(200)
    assert removed > 1
    assert fs.entered.wait(WAIT_S)              # the thread is inside the first remove, held
    assert time.monotonic() - started < WAIT_S / 2
    assert _segment_files(tmp_path) == before   # nothing deleted yet: purge did not wait
    assert arc.removals_pending == removed
    assert arc.read(250)[2] == bytes(log.payload_at(250))   # the archive is usable meanwhile
    fs.release.set()
    assert arc.drain_removals(WAIT_S)
    assert len(_segment_files(tmp_path)) == len(before) - removed
    arc.close()


def test_negative_control_deleting_at_once_blocks_the_purge(tmp_path):
    fs = _HeldRemoves()
    arc = Archive.open(str(tmp_path), segment_bytes=SEG, fs=fs, background_remove=False)
    log = arc.recover().log
    _fill(arc, log)
    _snapshot(arc, 200)
    purge = threading.Thread(target=arc.purge_below, args=(200,))
    purge.start()
    assert fs.entered.wait(WAIT_S)
    time.sleep(0.05)
    assert purge.is_alive()                     # the duty cycle would be stuck in here
    fs.release.set()
    purge.join(WAIT_S)
    assert not purge.is_alive()
    arc.close()


def test_an_old_snapshot_is_deleted_by_the_remover(tmp_path):
    fs = _HeldRemoves()
    fs.release.set()
    arc = Archive.open(str(tmp_path), segment_bytes=SEG, fs=fs)
    log = arc.recover().log
    _fill(arc, log)
    _snapshot(arc, 100)
    old = arc.recorded_snapshots()[0].path
    fs.release.clear()
    fs.entered.clear()
    arc.remove_file(old)                        # returns at once; the thread holds the unlink
    assert fs.entered.wait(WAIT_S) and os.path.exists(old)
    fs.release.set()
    assert arc.drain_removals(WAIT_S) and not os.path.exists(old)
    arc.close()


def test_close_waits_for_pending_deletions(tmp_path):
    fs = _HeldRemoves()
    arc = Archive.open(str(tmp_path), segment_bytes=SEG, fs=fs)
    log = arc.recover().log
    _fill(arc, log)
    _snapshot(arc, 200)
    removed = arc.purge_below(200)
    assert fs.entered.wait(WAIT_S)
    threading.Timer(0.05, fs.release.set).start()
    arc.close()                                 # a reopened archive must not meet half-deleted files
    assert arc.removals_pending == 0
    assert removed > 1


def test_purged_segments_left_by_a_crash_are_stale_at_recovery(tmp_path):
    """A node killed before its remover ran: the purged files are still there. Recovery starts
    from the snapshot as it would have, and the next purge deletes the leftovers."""
    arc = Archive.open(str(tmp_path), segment_bytes=SEG)
    log = arc.recover().log
    _fill(arc, log)
    _snapshot(arc, 200)
    arc._segments.remove_path = lambda path: None   # killed before any deletion happened
    kept_before = _segment_files(tmp_path)
    removed = arc.purge_below(200)
    assert removed > 1 and _segment_files(tmp_path) == kept_before
    arc.close()
    arc2 = Archive.open(str(tmp_path), segment_bytes=SEG)
    recovered = arc2.recover()
    assert recovered.snapshot is not None and recovered.snapshot.index == 200
    assert recovered.log.first_index <= 201 and recovered.log.last_index == 300
    for index in range(201, 301):
        assert bytes(recovered.log.payload_at(index)) == bytes(log.payload_at(index))
    stale = arc2._segments.stale_paths
    assert stale                                     # the leftovers, found
    assert arc2.purge_below(200) >= len(stale)
    assert arc2.drain_removals(WAIT_S)
    assert all(not os.path.exists(path) for path in stale)
    arc2.close()


def test_the_simulators_files_are_deleted_at_once():
    from aeronpy.archive import MemFileSystem
    arc = Archive.open("/d", segment_bytes=SEG, fs=MemFileSystem())
    assert arc._remover is None and arc.removals_pending == 0 and arc.drain_removals()
    arc.close()


class _Noted:
    """Records the thread its deallocation ran on."""
    def __init__(self, seen: list):
        self.seen = seen

    def __del__(self):
        self.seen.append(threading.current_thread().name)


def test_a_released_object_is_dropped_on_the_remover_thread():
    seen = []
    remover = BackgroundRemover(lambda path: None, name="the-remover")
    obj = _Noted(seen)
    remover.release(obj)
    del obj                                   # the queue holds the last reference now
    assert remover.drain(WAIT_S)
    assert seen == ["the-remover"]
    remover.close()
    late = _Noted(seen)
    remover.release(late)                     # closed: not queued, dropped by the caller
    del late
    assert seen == ["the-remover", threading.current_thread().name]


def test_a_nodes_log_hands_released_chunks_to_the_remover(tmp_path):
    """The wiring ClusterNode does: a compaction's released chunks are freed off the caller."""
    arc = Archive.open(str(tmp_path), segment_bytes=SEG)
    log = arc.recover().log
    log.retire = arc.release_later
    for _ in range(6000):
        log.append(1, 16, b"z" * 1024)           # several chunks of 1 MiB and more
    before = log._storage_info()["chunks"]
    released = []
    real = arc.release_later
    arc.release_later = lambda chunk: (released.append(memoryview(chunk).nbytes), real(chunk))
    log.retire = arc.release_later
    log.drop_prefix(5990, 1)
    assert log._storage_info()["chunks"] < before
    assert released and min(released) >= 1 << 20     # the big ones went to the remover
    assert arc.drain_removals(WAIT_S)
    assert bytes(log.payload_at(6000)) == b"z" * 1024
    arc.close()
