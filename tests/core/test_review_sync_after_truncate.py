"""Review: a follower's acknowledgement after its log was cut must wait for the new entries'
sync (file_sync data/full).

The node sends a Ready's messages once ``archive.poll_synced() >= rd.persist_hi - 1``
(ClusterNode._process_ready). ``Archive.truncate_from`` lowers the archive's durable index
to the cut, but the background syncer keeps ``completed`` (and its merged ``_target``) at the
old, higher index, and ``poll_synced`` raises the durable index back to ``completed``. So a
follower that cuts a conflicting tail and appends the new leader's entries in its place sees
them "durable" at once and acknowledges them before they are synced: a power failure then
loses entries the leader counted for commit. The next sync also writes the old target to the
durable marker, past the log's end.

Fixed: ``BackgroundSyncer.lower_to`` after the drain in ``truncate_from`` and
``reset_to_snapshot``.
"""
from __future__ import annotations

import contextlib
import threading
import time

import pytest

from aeronpy.archive import Archive

SEG = 4096


def _fill(arc, log, lo, hi, term):
    for index in range(lo, hi):
        assert log.append(term, 16, b"e%d-t%d" % (index, term)) == index
    arc.append_from(log, lo, hi)


@contextlib.contextmanager
def syncs_held(fs):
    """The sync thread's fsyncs wait (up to 10 s) until the block ends."""
    release = threading.Event()
    real = {name: getattr(fs, name) for name in ("fsync", "fdatasync")}

    def blocking(name):
        def call(handle):
            if threading.current_thread().name == "aeronpy-archive-sync":
                release.wait(10)
            return real[name](handle)
        return call
    for name in real:
        setattr(fs, name, blocking(name))
    try:
        yield
    finally:
        release.set()
        for name, fn in real.items():
            setattr(fs, name, fn)


def _wait_synced(arc, index, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while arc.poll_synced() < index and time.monotonic() < deadline:
        time.sleep(0.001)
    return arc.poll_synced()


@pytest.mark.parametrize("policy", ["data", "full"])
def test_entries_written_over_a_cut_tail_are_not_durable_before_their_sync(tmp_path, policy):
    arc = Archive.open(str(tmp_path / policy), file_sync=policy, segment_bytes=SEG)
    rec = arc.recover()
    log = rec.log
    assert arc._syncer is not None
    _fill(arc, log, 1, 11, 1)
    arc.request_sync()
    assert _wait_synced(arc, 10) == 10
    # from now on the sync thread's syncs wait until released
    with syncs_held(arc.fs):
        # a new leader's entries conflict from index 8: the follower cuts and appends 8, 9
        arc.truncate_from(8)
        log.truncate_from(8)
        _fill(arc, log, 8, 10, 2)
        arc.request_sync()
        durable = arc.poll_synced()       # what _process_ready compares with persist_hi - 1
    assert durable < 9, f"entries 8..9 reported durable ({durable}) before their sync ran"
    arc.close()


@pytest.mark.parametrize("policy", ["data", "full"])
def test_entries_written_after_a_reset_at_a_snapshot_are_not_durable_before_their_sync(
        tmp_path, policy):
    """The same through ``reset_to_snapshot`` (a snapshot installed from the leader, whose
    entry at its index differs from ours): the syncer had completed 10 before the reset at 5."""
    arc = Archive.open(str(tmp_path / policy), file_sync=policy, segment_bytes=SEG)
    rec = arc.recover()
    log = rec.log
    _fill(arc, log, 1, 11, 1)
    arc.request_sync()
    assert _wait_synced(arc, 10) == 10
    writer = arc.begin_snapshot(5, 2)                # the leader's snapshot: term 2 at index 5
    writer.write(b"state")
    writer.commit(0)
    with syncs_held(arc.fs):
        arc.reset_to_snapshot(5, 2, keeps_suffix=False)
        from aeronpy._logindex import LogIndex
        log = LogIndex(5, 2)
        _fill(arc, log, 6, 10, 2)
        arc.request_sync()
        durable = arc.poll_synced()
    assert durable < 9, f"entries 6..9 reported durable ({durable}) before their sync ran"
    arc.close()
