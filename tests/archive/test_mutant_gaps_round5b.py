"""Mutation testing, round 5b (the async sync, second half): what the archive's mutants
showed no fast test held (BackgroundSyncer.last_step_ns after a batch, Archive.purge_below's
wait for a sync that uses a segment it deletes, SegmentLog.purge_touches_pinned)."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from aeronpy.archive import Archive
from aeronpy.archive.segments import SegmentLog
from aeronpy.archive.syncer import BackgroundSyncer


def test_a_finished_batch_is_progress_though_the_idle_sync_after_it_hangs():
    """last_step_ns moves when a batch finishes, before the idle housekeeping (the marker's
    sync) runs: a node times its stall from there (ClusterNode._check_sync), and a batch
    that finished is progress even if the marker sync behind it is slow."""
    idle_gate = threading.Event()
    syncer = BackgroundSyncer(lambda target, handles, sync_dir: None,
                              lambda: idle_gate.wait(10.0), name="test-syncer")
    try:
        before = time.monotonic_ns()
        syncer.submit(5, [], False)
        deadline = time.monotonic() + 5.0
        while syncer.completed < 5 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert syncer.completed == 5
        while syncer.last_step_ns < before and time.monotonic() < deadline:
            time.sleep(0.001)
        assert syncer.last_step_ns >= before, "the finished batch was not counted as progress"
        assert not idle_gate.is_set()                 # the idle sync is still running
    finally:
        idle_gate.set()
        syncer.stop(5.0)


def _segment_log(firsts, pinned):
    """A SegmentLog with segments starting at ``firsts``; ``pinned``: positions of those
    whose handles an in-flight sync uses."""
    log = object.__new__(SegmentLog)
    log.segments = [SimpleNamespace(first_index=f) for f in firsts]
    log._pinned = {id(log.segments[p]): 99 for p in pinned}
    return log


def test_purge_touches_pinned_names_exactly_the_segments_the_purge_deletes():
    """purge_below(i) deletes each segment whose successor starts at or below i (the last is
    kept): a pinned one among those is touched, one past them is not; nothing pinned, never
    touched (else every purge waited for the sync thread)."""
    assert not _segment_log([1, 11, 21], []).purge_touches_pinned(100)
    log = _segment_log([1, 11, 21], [0])
    assert not log.purge_touches_pinned(10)       # segment 1..10 stays: 11 > 10
    assert log.purge_touches_pinned(11)           # deleted: its successor starts at 11
    log = _segment_log([1, 11, 21], [1])
    assert not log.purge_touches_pinned(20) and log.purge_touches_pinned(21)
    log = _segment_log([1, 11, 21], [2])           # the last segment is never deleted
    assert not log.purge_touches_pinned(1000)


def _purging_archive(touches):
    """An Archive with only what purge_below uses: a background syncer, a snapshot at 100, and
    a segment log whose purge touches a pinned handle or not. Returns (archive, calls)."""
    calls = []
    arc = object.__new__(Archive)
    arc._check_writable = lambda: None
    arc._recording_log = SimpleNamespace(snapshots=lambda: [SimpleNamespace(index=100)])
    arc._syncer = object()
    arc.poll_synced = lambda: calls.append("poll_synced")
    arc._drain = lambda: calls.append("drain")
    arc._segments = SimpleNamespace(
        purge_touches_pinned=lambda index: calls.append(("touches", index)) or touches,
        purge_below=lambda index: calls.append(("purge_below", index)) or 2)
    return arc, calls


def test_a_purge_waits_for_a_running_sync_of_a_segment_it_deletes():
    """Closing a handle the sync thread is syncing (purge_below deletes its segment) fails
    that sync or syncs whatever file took its descriptor: the purge drains first. It polls
    first, so syncs already finished unpin their segments and cost no wait."""
    arc, calls = _purging_archive(touches=True)
    assert arc.purge_below(50) == 2
    assert calls == ["poll_synced", ("touches", 50), "drain", ("purge_below", 50)]
    arc, calls = _purging_archive(touches=False)
    assert arc.purge_below(50) == 2
    assert calls == ["poll_synced", ("touches", 50), ("purge_below", 50)]
