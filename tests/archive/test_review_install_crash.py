"""Review: a crash between recording a snapshot received from the leader (InstallSnapshot,
recorded on the snapshot thread) and `Archive.reset_to_snapshot` (on the duty cycle) leaves a
recorded snapshot at (I, T) beside a local log whose uncommitted entry at I has another term.
That is a legitimate crash point, not corruption: the member must start again."""
from __future__ import annotations

import pytest

from aeronpy._logindex import LogIndex
from aeronpy.archive import Archive, MemFileSystem
from aeronpy.archive.errors import ArchiveCorruptError

SEG = 4096


def open_mem(fs, file_sync="data"):
    arc = Archive.open("/data", file_sync=file_sync, segment_bytes=SEG, fs=fs)
    return arc, arc.recover()


def fill(arc, log, n, term):
    lo = log.last_index + 1
    for i in range(n):
        log.append(term, 16, bytes([i % 251]) * 40)
    arc.append_from(log, lo, log.last_index + 1)
    arc.sync()


def record_snapshot(arc, index, term):
    writer = arc.begin_snapshot(index, term)
    writer.write(b"leader state")
    return writer.commit(0)


@pytest.mark.parametrize("policy", ["none", "data"])
@pytest.mark.parametrize("snap_index", [56, 60, 80])
@pytest.mark.parametrize("clean_first", [False, True])
@pytest.mark.parametrize("then_crash", [False, True])
def test_crash_after_recording_an_installed_snapshot_before_the_reset(policy, snap_index,
                                                                      clean_first, then_crash):
    fs = MemFileSystem()
    arc, rec = open_mem(fs, policy)
    fill(arc, rec.log, 50, 1)            # committed prefix
    arc.note_commit_index(50)
    fill(arc, rec.log, 100, 2)           # 51..150: a divergent, uncommitted tail of term 2
    assert arc.read(snap_index)[0] == 2
    if clean_first:                      # a clean close and restart in between
        arc.close()
        arc, _ = open_mem(fs, policy)
    record_snapshot(arc, snap_index, 3)  # the leader's snapshot: term 3 at snap_index
    fs.crash()                           # killed before install_snapshot reset the archive
    with pytest.warns(RuntimeWarning, match=f"entries after index {snap_index} were dropped"):
        arc2, rec2 = open_mem(fs, policy)      # said, not silent
    assert rec2.snapshot is not None and rec2.snapshot.index == snap_index
    assert rec2.log.base_index == snap_index
    assert rec2.log.term_at(snap_index) == 3       # the snapshot's term, not the stale tail's
    assert rec2.log.last_index == snap_index        # the divergent tail is dropped
    assert rec2.commit_index >= snap_index
    assert arc2.written_index == snap_index
    log = LogIndex(snap_index, 3)
    fill(arc2, log, 3, 3)
    if then_crash:                       # no false alarm from the old tail's marker either
        fs.crash()
    else:
        arc2.close()
    _, rec3 = open_mem(fs, policy)
    assert rec3.log.last_index == snap_index + 3
    assert [rec3.log.term_at(i) for i in range(snap_index + 1, snap_index + 4)] == [3, 3, 3]


def test_a_conflicting_committed_entry_is_still_corruption():
    """The local log's entry at the snapshot index was committed locally: a different term
    there is real damage, and recovery still refuses."""
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    fill(arc, rec.log, 100, 1)
    arc.note_commit_index(100)
    arc.sync()
    record_snapshot(arc, 80, 3)
    arc.close()
    with pytest.raises(ArchiveCorruptError):
        open_mem(fs)


@pytest.mark.parametrize("policy", ["none", "data"])
def test_the_dropped_tail_leaves_no_claim_in_the_marker(policy):
    """Killed right after the recovery that dropped the stale tail: the marker (which said the
    tail was durable/written) must have been lowered, or the next start is a false alarm."""
    fs = MemFileSystem()
    arc, rec = open_mem(fs, policy)
    fill(arc, rec.log, 50, 1)
    arc.note_commit_index(50)
    fill(arc, rec.log, 100, 2)
    arc.close()                          # the marker now claims 150 durable
    arc, _ = open_mem(fs, policy)
    record_snapshot(arc, 80, 3)
    fs.crash()
    with pytest.warns(RuntimeWarning, match="entries after index 80 were dropped"):
        open_mem(fs, policy)             # drops 81..150
    fs.crash()
    arc3, rec3 = open_mem(fs, policy)
    assert rec3.snapshot.index == 80 and rec3.log.last_index == 80
    arc3.close()
