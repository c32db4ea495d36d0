"""The recording log's term history: an append of a new term records (term, first index) in
recording.log, once per term (`Archive.record_term_starts`, called by the node after each
append, does nothing while the last term is `recorded_term`); a truncation or a crash never leaves a wrong
start visible. The end-to-end test (a real leader change) is tests/ops/test_term_history.py."""
from __future__ import annotations

from aeronpy._logindex import LogIndex  # noqa: F401 - the archive's in-memory log
from aeronpy.archive import Archive, MemFileSystem
from aeronpy.archive.recording_log import RecordingLog, TermStart

SEG = 4096


def open_mem(fs: MemFileSystem, file_sync: str = "data"):
    arc = Archive.open("/data", file_sync=file_sync, segment_bytes=SEG, fs=fs)
    return arc, arc.recover()


def append(arc, log, terms: list) -> None:
    """Append one entry per term in ``terms`` as one batch (a follower catching up), then
    record term starts as the node's `_process_ready` does."""
    lo, hi = log.last_index + 1, log.last_index + 1 + len(terms)
    for term in terms:
        log.append(term, 16, b"x" * 20)
    arc.append_from(log, lo, hi)
    arc.record_term_starts(log, lo, hi)


def live_starts(fs) -> list:
    rl = RecordingLog(fs, "/data")
    rl.load(cut=False)
    return rl.term_starts()


def test_each_term_is_recorded_once_with_its_first_index():
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    calls = []
    real = arc._recording_log.append_term_start
    arc._recording_log.append_term_start = lambda *a, **k: (calls.append(a), real(*a, **k))
    for _ in range(50):                       # many appends of one term: one record
        append(arc, rec.log, [1])
    append(arc, rec.log, [1, 1, 3, 3, 4])     # one batch spanning terms 3 and 4
    append(arc, rec.log, [4, 6])
    arc.close()
    assert [a[:2] for a in calls] == [(1, 1), (3, 53), (4, 55), (6, 57)]
    assert live_starts(fs) == [TermStart(1, 1), TermStart(3, 53), TermStart(4, 55), TermStart(6, 57)]
    _, rec2 = open_mem(fs)
    assert rec2.term_starts == (TermStart(1, 1), TermStart(3, 53), TermStart(4, 55), TermStart(6, 57))


def test_the_record_is_not_synced():
    """Informational: a term start costs a write, not a device flush, under every policy."""
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "full")
    append(arc, rec.log, [1])                 # creates recording.log (its directory is synced)
    synced = []
    for name in ("fdatasync", "fsync"):
        real = getattr(fs, name)
        setattr(fs, name, lambda h, real=real: (synced.append(h.path), real(h))[1])
    append(arc, rec.log, [2, 3])
    assert live_starts(fs)[-2:] == [TermStart(2, 2), TermStart(3, 3)]
    assert "/data/recording.log" not in synced
    arc.close()


def test_a_truncated_start_is_superseded_when_an_older_term_continues():
    """Raft figure 8: a follower's uncommitted entries of term 3 are replaced by the leader's
    entries of term 2. The start (3, 4) must not stay live over entries of term 2."""
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    append(arc, rec.log, [1, 2, 2, 3, 3])
    arc.truncate_from(4)
    rec.log.truncate_from(4)
    append(arc, rec.log, [2, 2, 5])
    arc.close()
    assert live_starts(fs) == [TermStart(1, 1), TermStart(2, 2), TermStart(5, 6)]


def test_a_crash_after_a_truncation_hides_the_cut_start_and_the_next_append_fixes_it():
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    append(arc, rec.log, [1, 2, 2, 3, 3])
    arc.truncate_from(4)
    fs.crash()
    arc, rec = open_mem(fs)
    assert rec.log.last_index == 3
    assert rec.term_starts == (TermStart(1, 1), TermStart(2, 2))   # (3, 4) lies past the end
    append(arc, rec.log, [2, 2])                                   # term 2 goes on over index 4
    arc.close()
    assert live_starts(fs) == [TermStart(1, 1), TermStart(2, 2)]


def test_a_crash_between_the_append_and_the_record_is_repaired_by_the_next_append():
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    append(arc, rec.log, [1, 1])
    arc._recording_log.append_term_start = lambda *a, **k: None   # the process dies in between
    append(arc, rec.log, [2, 2])
    fs.crash()
    arc, rec = open_mem(fs)
    assert rec.term_starts == (TermStart(1, 1),) and rec.log.last_index == 4
    append(arc, rec.log, [2])                 # the same term goes on: the start is recorded now
    arc.close()
    assert live_starts(fs) == [TermStart(1, 1), TermStart(2, 3)]


def test_an_installed_snapshot_supersedes_later_starts():
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    append(arc, rec.log, [1, 1, 2, 2])
    arc.note_commit_index(2)
    writer = arc.begin_snapshot(3, 3)        # the leader's snapshot: term 3 at index 3
    writer.write(b"state")
    writer.commit(0)
    arc.reset_to_snapshot(3, 3, keeps_suffix=False)
    log = LogIndex(3, 3)
    append(arc, log, [3, 4])
    arc.close()
    # term 2's start at 3 is dead (the snapshot's index holds term 3); term 3 began at or
    # before the snapshot, where is unknown here, so it has no start (it once said 3)
    assert live_starts(fs) == [TermStart(1, 1), TermStart(4, 5)]


def test_random_appends_truncations_and_crashes_never_show_a_wrong_start():
    """Seeded: after every append the live history is exactly the log's (term, first index)
    list; after a crash it may lack starts (until the next append) but never shows a wrong one."""
    import random
    for seed in range(60):
        rng = random.Random(seed)
        fs = MemFileSystem()
        arc, rec = open_mem(fs, "none")
        log, term = rec.log, 1
        for _ in range(25):
            kind = rng.choice(["append", "append", "truncate", "crash"])
            if kind == "truncate" and log.last_index > 1:
                index = rng.randint(2, log.last_index)
                arc.truncate_from(index)
                log.truncate_from(index)
                kind = "append"       # a leader's entries follow, of an older or a newer term
                term = rng.choice([log.term_at(index - 1), term + 1])
            if kind == "crash":
                fs.crash()
                arc, rec = open_mem(fs, "none")
                log = rec.log
                got = live_starts(fs)
                held = [t for t in got if t.index <= log.last_index]
                for t in held:
                    assert log.term_at(t.index) == t.term and (
                        t.index == 1 or log.term_at(t.index - 1) != t.term), (seed, t, got)
                continue
            if kind == "append":
                term = max(term, log.last_term) + rng.choice([0, 0, 1, 2])
                append(arc, log, sorted(term + rng.choice([0, 0, 1]) for _ in range(rng.randint(1, 4))))
                term = log.last_term
                want = [TermStart(t, log.first_index_of_term(t))
                        for t in sorted({log.term_at(i) for i in range(1, log.last_index + 1)})]
                assert live_starts(fs) == want, seed
        arc.close()


def test_a_term_start_the_disk_refuses_is_reported_not_fatal(caplog):
    """The term history is informational: a write of recording.log that fails (a full disk,
    while the preallocated segments still take entries) must not stop the member. It failed
    the archive, so the member stopped at its next new term. The start is left out (logged
    once); the entries stay, later terms are recorded again, and a snapshot record after the
    torn write still loads."""
    import logging
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    append(arc, rec.log, [1, 1])
    fs.fail("write", skip=1)                            # after the entries: the term-2 start
    with caplog.at_level(logging.WARNING, logger="aeronpy.archive"):
        append(arc, rec.log, [2, 2])
    assert not arc.failed
    assert any("term 2" in r.getMessage() for r in caplog.records), caplog.records
    append(arc, rec.log, [2])                           # no retry on every append of term 2
    append(arc, rec.log, [3])                           # the next term is recorded again
    arc.note_commit_index(5)
    writer = arc.begin_snapshot(5, 2)
    writer.write(b"state")
    writer.commit(0)
    arc.close()
    assert live_starts(fs) == [TermStart(1, 1), TermStart(3, 6)]
    _, rec2 = open_mem(fs)                              # the torn write left no damage
    assert rec2.log.last_index == 6
