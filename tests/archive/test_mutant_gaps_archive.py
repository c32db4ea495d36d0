"""Gaps found by mutation testing (round 2, /work/notes/trials/mutants2): each test here failed
with one mutant of aeronpy/archive/*.py applied, and passes on the real code."""
from __future__ import annotations

import random

import pytest

from aeronpy import _segscan
from aeronpy._logindex import LogIndex
from aeronpy.archive import ArchiveCorruptError, ArchiveIOError, MemFileSystem
from aeronpy.archive.recording_log import RecordingLog, TermStart, live_term_starts
from aeronpy.archive.segments import encode_segment_header
from tests.archive import test_archive as ta
from tests.archive import test_review_install_crash as tic
from tests.archive.test_segments import append, entries_of, make, recovered


# ---- segments.py ------------------------------------------------------------------------------

def test_each_segment_header_names_the_term_of_the_record_before_it_within_one_batch():
    """(mutants A08 + A09 together; each alone is equivalent, as either one still reads the
    right term.) One batch of term 1 records that spill into a new segment, then term 2 ones
    that spill into more: each new header must name the term of the record just before it, or
    recovery finds the header inconsistent and loses everything from there."""
    fs, segs = make()
    model: list = []
    append(segs, model, [(1, 16, b"a" * 100)] * 3)
    append(segs, model, [(1, 16, b"b" * 300)] * 20 + [(2, 16, b"c" * 300)] * 30)
    assert len(segs.segments) >= 4
    for before, seg in zip(segs.segments, segs.segments[1:]):
        assert seg.prev_term == segs.read(before.last_index)[0], seg
    fs.crash()
    _, log, stop = recovered(fs)
    assert stop.clean, stop.reason
    assert entries_of(log) == model


def test_a_segment_whose_header_names_another_prev_term_is_not_read():
    """(mutant A02: the header's prev_term not compared with the log's term before it.) A
    segment file of another history at the right index (say a removal a power failure undid)
    is inconsistent even when its records would scan: recovery stops at its start."""
    fs, segs = make()
    model: list = []
    append(segs, model, [(1, 16, b"x" * 1000)] * 8)
    second = segs.segments[1]
    h = segs._handle(second)
    fs.pwrite(h, encode_segment_header(second.first_index, 7, second.capacity), 0)
    fs.crash()
    _, log, stop = recovered(fs)
    assert not stop.clean and "header" in stop.reason
    assert stop.index == second.first_index and log.last_index == second.first_index - 1


def test_a_zeroed_record_with_written_bytes_after_it_is_a_torn_write_and_they_are_scrubbed():
    """(mutant A03: the scan's clean end taken at face value.) A page lost in the middle of a
    write leaves a zero frame with written bytes after it: that is a torn write (not a clean
    end), and the bytes after it are zeroed so no old record can be read there later."""
    fs, segs = make()
    model: list = []
    append(segs, model, [(1, 16, b"p" * 100)] * 12)
    last = segs.segments[-1]
    start, after = last.record_start(10), last.record_start(11)
    fs.pwrite(segs._handle(last), bytes(after - start), start)    # record 10's page lost
    fs.crash()
    segs2, log, stop = recovered(fs)
    assert log.last_index == 9 and stop.index == 10
    assert not stop.clean and "torn" in stop.reason
    end = segs2.cut_after_recovery(stop)
    assert end.offset == start
    assert not any(fs.read_file(end.path)[start:])


def test_an_append_leaving_a_gap_is_refused_even_when_it_fits_the_open_segment():
    """(mutant A07: the fast path wrote it.) Records numbered 12.. after a log ending at 10
    would be read back under the wrong indexes: refused, and nothing is written."""
    fs, segs = make()
    model: list = []
    append(segs, model, [(1, 16, b"q" * 50)] * 10)
    end_before = segs.segments[-1].end
    log = LogIndex(11, 1)
    log.append(1, 16, b"gap")
    packed, n = log.pack(12, 13, log.size_between(12, 13))
    records, ends, last_term = _segscan.encode_records(packed, n, 12)
    with pytest.raises(ValueError, match="ends at 10"):
        segs.append(records, ends, 12, n, last_term)
    assert segs.last_index == 10 and segs.segments[-1].end == end_before


def test_reading_back_a_record_whose_payload_was_damaged_raises_instead_of_returning_it():
    """(mutant A12: read() checked length and index only.) A bit flipped in a payload on disk
    (the header intact) fails the record's checksum: read() raises, never returns bad bytes."""
    fs, segs = make()
    model: list = []
    append(segs, model, [(1, 16, b"r" * 64)] * 5)
    seg = segs.segments[-1]
    h = segs._handle(seg)
    at = seg.record_start(3) + 40                    # inside record 3's payload
    fs.pwrite(h, bytes([fs.pread(h, 1, at)[0] ^ 0x01]), at)
    assert segs.read(2) == model[1] and segs.read(4) == model[3]
    with pytest.raises(ValueError, match="record 3 .* fails verification"):
        segs.read(3)


def test_truncating_the_last_record_leaves_the_term_of_the_one_before_it():
    """(mutant A14: the term was read from the record being cut.) After a cut, the log's last
    term is the term of its new last record; the next segment's header is written with it,
    so a wrong one makes the following recovery stop at that segment."""
    fs, segs = make()
    model: list = []
    append(segs, model, [(1, 16, b"s" * 300)] * 11 + [(2, 16, b"t" * 300)])
    assert len(segs.segments) == 1
    segs.truncate_from(12)
    del model[11:]
    assert segs.last_index == 11 and segs.last_term == 1
    append(segs, model, [(3, 16, b"u" * 1000)])        # does not fit: a new segment after 11
    assert len(segs.segments) == 2 and segs.segments[1].prev_term == 1
    fs.crash()
    _, log, stop = recovered(fs)
    assert stop.clean, stop.reason
    assert entries_of(log) == model


def test_purge_below_keeps_the_segment_whose_last_record_is_the_index():
    """(mutant A16: a segment ending exactly at ``index`` was deleted.) purge_below(i) deletes
    only segments whose records all lie below i: the one ending with record i stays."""
    fs, segs = make()
    model: list = []
    append(segs, model, [(1, 16, bytes(500)) for _ in range(30)])
    boundary = segs.segments[1].first_index           # the second segment starts here
    assert segs.purge_below(boundary - 1) == 0
    assert segs.read(boundary - 1) == model[boundary - 2]
    assert segs.purge_below(boundary) == 1
    assert segs.base_index == boundary - 1


# ---- archive.py -------------------------------------------------------------------------------

def test_damage_to_exactly_the_last_durable_entry_refuses_to_start():
    """(mutant B01: only damage below the durable index counted.) Entry 10 was reported
    durable: a bit flipped in it is corruption of an acknowledged entry, not a torn tail."""
    fs = MemFileSystem()
    arc, rec = ta.open_mem(fs, "data")
    ta.fill(arc, rec.log, 10, 1)
    assert arc.sync() == 10
    seg = arc._segments.segments[-1]
    at = seg.record_start(10) + 40
    fs.crash()
    ta.flip_bit(fs, seg.path, at)
    with pytest.raises(ArchiveCorruptError, match="up to index 10"):
        ta.open_mem(fs, "data")


def test_a_snapshot_of_another_term_at_exactly_the_known_commit_index_is_corruption():
    """(mutant B06: only a commit index past the snapshot counted.) The local entry at 80 was
    known committed (commit index 80): a snapshot with another term there is real damage,
    refused, not a stale tail dropped as after an interrupted install."""
    fs = MemFileSystem()
    arc, rec = tic.open_mem(fs)
    tic.fill(arc, rec.log, 100, 1)
    arc.note_commit_index(80)
    arc.sync()
    tic.record_snapshot(arc, 80, 3)
    arc.close()
    with pytest.raises(ArchiveCorruptError, match="committed up to 80"):
        tic.open_mem(fs)


def test_purge_and_reset_refuse_an_index_one_past_what_the_newest_snapshot_covers():
    """(mutants B14 and B15: each bound one too loose.) With the newest snapshot at 40,
    purge_below(41) may delete entries up to 40, but purge_below(42) would drop entry 41,
    which no snapshot holds; reset_to_snapshot(41) names a snapshot never recorded."""
    fs = MemFileSystem()
    arc, rec = tic.open_mem(fs)
    tic.fill(arc, rec.log, 100, 1)
    arc.note_commit_index(100)
    tic.record_snapshot(arc, 40, 1)
    with pytest.raises(ValueError, match="no snapshot covers"):
        arc.purge_below(42)
    with pytest.raises(ValueError, match="record the snapshot first"):
        arc.reset_to_snapshot(41, 1, keeps_suffix=False)
    assert arc.read(41)[0] == 1
    arc.purge_below(41)
    assert arc.read(41)[0] == 1 and arc.written_index == 100
    arc.close()


def test_a_reset_keeping_the_suffix_still_makes_the_snapshot_committed():
    """(mutant B16: the commit index stayed where it was.) After an installed snapshot at 50
    kept the archived entries after it, everything up to 50 is committed: a truncation at 50
    (an uncommitted-tail cut) must be refused."""
    fs = MemFileSystem()
    arc, rec = tic.open_mem(fs)
    tic.fill(arc, rec.log, 100, 1)
    arc.note_commit_index(10)
    tic.record_snapshot(arc, 50, 1)
    arc.reset_to_snapshot(50, 1, keeps_suffix=True)
    assert arc.read(60)[0] == 1
    with pytest.raises(ValueError, match="would drop committed entries"):
        arc.truncate_from(50)
    assert arc.written_index == 100
    arc.close()


class DirSyncCrash(MemFileSystem):
    """A MemFileSystem whose next directory sync, once armed, fails: the process "dies" there."""
    armed = False

    def sync_dir(self, path: str) -> None:
        if self.armed:
            self.armed = False
            raise OSError(5, "killed at the directory sync")
        super().sync_dir(path)


def test_a_crash_between_dropping_the_segments_and_the_new_marker_is_no_false_alarm():
    """(mutant B17: the marker not lowered before the old segments go.) reset_to_snapshot
    removes every segment, then syncs the directory, then writes the new marker: killed in
    between, the marker on disk must not still claim the removed entries durable, or the next
    start refuses with a false corruption alarm."""
    fs = DirSyncCrash()
    arc, rec = tic.open_mem(fs)
    tic.fill(arc, rec.log, 100, 1)                    # the marker claims 100 durable
    tic.record_snapshot(arc, 50, 2)                   # installed: the leader has term 2 at 50
    fs.armed = True
    with pytest.raises(OSError):
        arc.reset_to_snapshot(50, 2, keeps_suffix=False)
    fs.crash()
    _, rec2 = tic.open_mem(fs)
    assert rec2.snapshot.index == 50 and rec2.log.last_index == 50
    assert rec2.log.term_at(50) == 2


def test_a_failed_data_sync_leaves_no_durable_claim_that_a_power_loss_could_keep():
    """(mutant B22: the marker written before the data sync.) The marker claims an index
    durable only after the data sync returned: when that sync fails, no claim is written, so
    no power loss can leave a marker claiming entries the disk lost (a corruption alarm)."""
    for seed in range(20):                 # bounded: each seed one power loss
        fs = MemFileSystem()
        arc, rec = ta.open_mem(fs, "data")
        ta.fill(arc, rec.log, 10, 1)
        assert arc.sync() == 10
        ta.fill(arc, rec.log, 10, 1, seed=seed)
        fs.fail("sync")
        with pytest.raises(ArchiveIOError):
            arc.request_sync()
        fs.power_fail(random.Random(seed))
        _, rec2 = ta.open_mem(fs, "data")           # never ArchiveCorruptError
        assert 10 <= rec2.log.last_index <= 20, seed


# ---- recording_log.py -------------------------------------------------------------------------

def test_recording_log_entries_after_a_damaged_one_are_ignored_and_cut():
    """(mutant R02: valid entries after the damaged one were kept.) A damaged entry with only
    term starts after it is a torn write: it and everything after it are ignored, the cut
    leaves the file at the last good entry, and the next entry goes right there."""
    fs = MemFileSystem()
    fs.makedirs("/d")
    rl = RecordingLog(fs, "/d")
    for term, index in ((1, 1), (2, 5), (3, 9)):
        rl.append_term_start(term, index, sync=False)
    rl.close()
    h = fs.open_file(rl.path)
    fs.pwrite(h, b"\xee", 128 + 20)                     # the second entry's index field
    fs.close(h)
    rl2 = RecordingLog(fs, "/d")
    rl2.load()
    assert rl2.entries == [TermStart(1, 1)] and rl2.damaged_at == 128
    assert len(fs.read_file(rl2.path)) == 128
    rl2.append_term_start(4, 12, sync=False)
    rl2.close()
    rl3 = RecordingLog(fs, "/d")
    rl3.load()
    assert rl3.entries == [TermStart(1, 1), TermStart(4, 12)] and rl3.damaged_at is None


def test_a_later_start_of_a_lower_term_supersedes_a_higher_terms_start_before_it():
    """(mutant R05: only starts at or after its index were superseded.) Term 3 began at 10,
    then a truncation at 10 and a new leader's entries: term 1 again up to 11, term 2 from 12.
    The start (3, 10) is dead: the live history never goes down in term."""
    entries = [TermStart(1, 1), TermStart(3, 10), TermStart(2, 12)]
    assert live_term_starts(entries) == [TermStart(1, 1), TermStart(2, 12)]
    fs = MemFileSystem()
    fs.makedirs("/d")
    rl = RecordingLog(fs, "/d")
    for e in entries:
        rl.append_term_start(e.term, e.index, sync=False)
    assert rl.term_starts() == [TermStart(1, 1), TermStart(2, 12)]
    rl.close()
