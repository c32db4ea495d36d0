"""Review R2 of the recording log's term history (Archive.record_term_starts, recorded_term,
live_term_starts): sequences that leave a wrong live term start, not just a missing one.

1. A truncation keeps the cut start in the file (nothing marks it dead) until the next term's
   start supersedes it. A crash between the new term's entries and their start record then
   leaves the cut start live *inside* the log, over entries of another term.
2. An installed snapshot at (S, T) followed by entries of T: the term's start is unknown to
   the member (it began at or before S), and the start recorded was the snapshot's index.
   Now none is recorded for it (Archive._append_term_starts), and a snapshot entry ends the
   starts it contradicts (live_term_starts)."""
from __future__ import annotations

from aeronpy._logindex import LogIndex
from aeronpy.archive import MemFileSystem
from aeronpy.archive.recording_log import TermStart

from .test_term_starts import append, live_starts, open_mem


def _truncated_then_crash_before_the_record(fs):
    arc, rec = open_mem(fs)
    append(arc, rec.log, [1, 2, 2, 3, 3])          # starts (1, 1), (2, 2), (3, 4)
    arc.truncate_from(4)                            # a new leader's entries replace term 3's
    rec.log.truncate_from(4)
    rec.log.append(5, 16, b"x" * 20)
    rec.log.append(5, 16, b"x" * 20)
    arc.append_from(rec.log, 4, 6)                  # the process dies before record_term_starts
    arc.sync()
    fs.crash()
    return open_mem(fs)


def _consistent(starts, log) -> list:
    """The starts that contradict the log (a start whose index holds another term)."""
    return [t for t in starts if log.base_index < t.index <= log.last_index
            and log.term_at(t.index) != t.term]


def test_a_crash_after_a_truncation_leaves_no_wrong_start_in_the_recovered_history():
    arc, rec = _truncated_then_crash_before_the_record(MemFileSystem())
    assert rec.log.last_index == 5 and rec.log.term_at(4) == 5
    assert _consistent(rec.term_starts, rec.log) == [], rec.term_starts
    arc.close()


def test_the_next_append_after_that_crash_records_the_new_term():
    fs = MemFileSystem()
    arc, rec = _truncated_then_crash_before_the_record(fs)
    append(arc, rec.log, [5])                       # term 5 goes on
    arc.close()
    assert live_starts(fs) == [TermStart(1, 1), TermStart(2, 2), TermStart(5, 4)]


def test_control_without_the_crash_the_new_term_supersedes_the_cut_start():
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    append(arc, rec.log, [1, 2, 2, 3, 3])
    arc.truncate_from(4)
    rec.log.truncate_from(4)
    append(arc, rec.log, [5, 5])
    arc.close()
    _, rec = open_mem(fs)
    assert rec.term_starts == (TermStart(1, 1), TermStart(2, 2), TermStart(5, 4))
    assert _consistent([TermStart(3, 4)], rec.log) == [TermStart(3, 4)]   # the check can fail


def _install(arc, index: int, term: int) -> LogIndex:
    """A leader's snapshot at (index, term) installed past the member's log: the member's
    log now starts after it."""
    writer = arc.begin_snapshot(index, term)
    writer.write(b"state")
    writer.commit(0)
    arc.reset_to_snapshot(index, term, keeps_suffix=False)
    return LogIndex(index, term)


def test_an_installed_snapshot_does_not_record_its_index_as_the_start_of_a_term_begun_before():
    """The leader's term 3 began at index 5; its snapshot at (8, 3) reaches a lagging member,
    whose next append is of term 3: the recorded start must not say 8 (or 9)."""
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    append(arc, rec.log, [1, 1])
    arc.note_commit_index(2)
    log = _install(arc, 8, 3)
    append(arc, log, [3, 3])
    arc.close()
    assert [t for t in live_starts(fs) if t.term == 3] in ([], [TermStart(3, 5)]), live_starts(fs)


def test_the_tool_shows_no_cut_start_over_entries_of_another_term(tmp_path):
    from aeronpy.archive import Archive
    from aeronpy.cluster.admin_client import read_recording_log
    data = str(tmp_path / "data")
    arc = Archive.open(data, file_sync="data")
    rec = arc.recover()
    append(arc, rec.log, [1, 2, 2, 3, 3])
    arc.truncate_from(4)
    rec.log.truncate_from(4)
    arc._recording_log.append_term_start = lambda *a, **k: None   # the process dies in between
    append(arc, rec.log, [5, 5])
    arc.close()
    terms = read_recording_log(data)["terms"]
    assert {"term": 3, "first_index": 4} not in terms, terms


def _snap(index: int, term: int):
    from aeronpy.archive.recording_log import SnapshotEntry
    return SnapshotEntry(index=index, term=term, name=f"snapshot-{index}-{term}.snap",
                         checksum=0, timestamp_ns=0)


def test_a_snapshot_entry_ends_the_starts_it_contradicts_and_only_those():
    from aeronpy.archive.recording_log import live_term_starts
    assert live_term_starts([TermStart(1, 1), TermStart(2, 3), _snap(3, 3)]) == [TermStart(1, 1)]
    assert live_term_starts([TermStart(1, 1), TermStart(5, 4), _snap(4, 3)]) == [TermStart(1, 1)]
    consistent = [TermStart(1, 1), TermStart(3, 2), TermStart(4, 7)]
    assert live_term_starts([consistent[0], consistent[1], _snap(5, 3), consistent[2]]) == consistent
    assert live_term_starts([*consistent, _snap(7, 4)]) == consistent


def test_the_installed_snapshots_term_gets_no_start_after_a_restart_either():
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    append(arc, rec.log, [1, 1])
    arc.note_commit_index(2)
    log = _install(arc, 8, 3)
    append(arc, log, [3])
    arc.close()
    arc, rec = open_mem(fs)                         # recovered: the log starts after (8, 3)
    append(arc, rec.log, [3, 3, 4])
    arc.close()
    assert live_starts(fs) == [TermStart(1, 1), TermStart(4, 12)]


def test_random_appends_installs_and_restarts_never_show_a_wrong_start():
    """Seeded: entries appended, snapshots installed from a leader (past the log's end, of its
    term or a newer one, which began somewhere in the gap the member never saw) and restarts.
    Every live start is the term's true first index; each term the log holds past its base,
    but the base's own, has its start after every append."""
    import random
    for seed in range(60):
        rng = random.Random(seed)
        fs = MemFileSystem()
        arc, rec = open_mem(fs)
        log = rec.log
        truth: dict = {}                            # term -> its first index, cluster-wide
        for _ in range(25):
            kind = rng.choice(["append", "append", "install", "restart"])
            if kind == "install":
                index = log.last_index + rng.randint(1, 5)
                term = max(log.last_term, 1) + rng.choice([0, 1])
                truth.setdefault(term, rng.randint(log.last_index + 1, index))
                log = _install(arc, index, term)
                continue
            if kind == "restart":
                arc.close()
                arc, rec = open_mem(fs)
                log = rec.log
            else:
                term = max(log.last_term, 1) + rng.choice([0, 0, 1])
                truth.setdefault(term, log.last_index + 1)
                append(arc, log, [term] * rng.randint(1, 3))
            got = live_starts(fs)
            assert all(truth[t.term] == t.index for t in got), (seed, truth, got)
            if kind == "append":
                terms = {log.term_at(i) for i in range(log.base_index + 1, log.last_index + 1)}
                want = {TermStart(k, truth[k]) for k in terms
                        if k != log.base_term or log.first_index_of_term(k) > log.base_index}
                assert want <= set(got), (seed, want, got)
        arc.close()
