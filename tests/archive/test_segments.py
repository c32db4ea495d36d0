"""SegmentLog: appends across segment ends, reading by index, truncation, purge, recovery scan."""
from __future__ import annotations

import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aeronpy import _segscan
from aeronpy._logindex import LogIndex
from aeronpy.archive.fs import MemFileSystem
from aeronpy.archive.segments import SEGMENT_HEADER_BYTES, SegmentLog, decode_segment_header

SEG = 4096


def make(fs=None, seg=SEG):
    fs = fs or MemFileSystem()
    fs.makedirs("/d")
    return fs, SegmentLog(fs, "/d", seg)


def append(segs: SegmentLog, model: list, entries: list) -> None:
    """Append (term, type, payload) entries through the real codec; mirror them in `model`."""
    log = LogIndex(segs.last_index, segs.last_term)
    for term, etype, payload in entries:
        log.append(term, etype, payload)
    lo, hi = segs.last_index + 1, segs.last_index + 1 + len(entries)
    packed, n = log.pack(lo, hi, log.size_between(lo, hi))
    records, ends, last_term = _segscan.encode_records(packed, n, lo)
    segs.append(records, ends, lo, n, last_term)
    model.extend(entries)


def recovered(fs, start=1, seg=SEG):
    segs = SegmentLog(fs, "/d", seg)
    log, stop = segs.recover(start, None, LogIndex)
    return segs, log, stop


def entries_of(log) -> list:
    return [(log.term_at(i), log.type_at(i), bytes(log.payload_at(i)))
            for i in range(log.first_index, log.last_index + 1)]


def test_records_roll_over_to_new_segments_and_read_back():
    fs, segs = make()
    model: list = []
    rng = random.Random(1)
    for term in range(1, 6):
        append(segs, model, [(term, 16, rng.randbytes(rng.randint(0, 900))) for _ in range(25)])
    assert len(segs.segments) > 10
    for seg in segs.segments:
        assert seg.end <= seg.capacity == SEG
    for i, entry in enumerate(model, 1):
        assert segs.read(i) == entry
    fs.crash()
    segs2, log, stop = recovered(fs)
    assert stop.clean and entries_of(log) == model
    assert [s.first_index for s in segs2.segments] == [s.first_index for s in segs.segments]


def test_record_larger_than_a_segment_gets_a_segment_of_its_own():
    fs, segs = make()
    model: list = []
    append(segs, model, [(1, 16, b"a" * 100), (1, 16, b"b" * 10_000), (1, 16, b"c")])
    big = segs.segments[1]
    assert big.capacity >= 10_000 + 32 + SEGMENT_HEADER_BYTES and big.count == 1
    assert segs.read(2) == (1, 16, b"b" * 10_000)
    fs.crash()
    assert entries_of(recovered(fs)[1]) == model


def test_truncate_across_segment_boundaries_then_append():
    fs, segs = make()
    model: list = []
    append(segs, model, [(1, 16, bytes([i]) * 300) for i in range(60)])
    n_before = len(segs.segments)
    segs.truncate_from(20)
    del model[19:]
    assert segs.last_index == 19 and len(segs.segments) < n_before
    append(segs, model, [(2, 17, b"new" * i) for i in range(30)])
    fs.crash()
    segs2, log, stop = recovered(fs)
    assert stop.clean and entries_of(log) == model
    # every cut file is gone, and nothing of the old tail shows up again
    assert all(s.first_index <= segs.last_index for s in segs2.segments)


def test_truncate_everything_keeps_the_base():
    fs, segs = make()
    model: list = []
    append(segs, model, [(3, 16, b"x")] * 5)
    segs.truncate_from(1)
    assert segs.last_index == 0 and len(segs.segments) == 1 and segs.segments[0].count == 0
    append(segs, model := [], [(4, 16, b"y")])
    assert segs.read(1) == (4, 16, b"y")
    with pytest.raises(ValueError):
        segs.truncate_from(0)


def test_purge_removes_whole_segments_below_an_index_only():
    fs, segs = make()
    model: list = []
    append(segs, model, [(1, 16, bytes(500)) for _ in range(80)])
    firsts = [s.first_index for s in segs.segments]
    removed = segs.purge_below(40)
    kept = [s.first_index for s in segs.segments]
    assert removed == len(firsts) - len(kept) > 0
    assert kept[0] <= 40 < (kept[1] if len(kept) > 1 else 10**9)
    assert segs.base_index == kept[0] - 1
    assert segs.read(40)[2] == bytes(500)
    with pytest.raises(IndexError):
        segs.read(kept[0] - 1)
    fs.crash()
    _, log, stop = recovered(fs, start=kept[0])
    assert stop.clean and log.first_index == kept[0] and log.last_index == 80


def test_recovery_cuts_a_torn_tail_and_scrubs_its_debris():
    fs, segs = make()
    model: list = []
    append(segs, model, [(1, 16, b"p" * 100) for _ in range(10)])
    last = segs.segments[-1]
    h = segs._handle(last)
    start = last.record_start(10)
    fs.pwrite(h, b"\xff" * 50, start + 40)     # tear the last record
    fs.crash()
    segs2, log, stop = recovered(fs)
    assert not stop.clean and stop.index == 10 and log.last_index == 9
    end = segs2.cut_after_recovery(stop)
    assert end.offset == start
    assert not any(fs.read_file(end.path)[start:])


def test_recovery_stops_at_a_missing_segment_and_drops_later_ones():
    fs, segs = make()
    model: list = []
    append(segs, model, [(1, 16, bytes(1000)) for _ in range(20)])
    paths = [s.path for s in segs.segments]
    fs.remove(paths[2])
    fs.crash()
    segs2, log, stop = recovered(fs)
    assert "no segment holds" in stop.reason and log.last_index == segs.segments[2].first_index - 1
    segs2.cut_after_recovery(stop)
    assert all(not fs.exists(p) for p in paths[3:])


def test_segment_header_round_trip_and_damage():
    from aeronpy.archive.segments import encode_segment_header
    raw = bytearray(encode_segment_header(7, 3, 4096))
    assert decode_segment_header(raw) == (7, 3, 4096)
    raw[20] ^= 1
    assert decode_segment_header(raw) is None
    assert decode_segment_header(b"short") is None


# -- property test: random appends, truncations, purges and process crashes against a model ---
op_st = st.one_of(
    st.tuples(st.just("append"), st.lists(st.integers(0, 1500), min_size=1, max_size=12)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("purge"), st.floats(0, 1)),
    st.tuples(st.just("crash"), st.none()),
)


@settings(max_examples=60, deadline=None)
@example(ops=[("append", [0, 0, 0, 0, 809, 1500, 1500]), ("purge", 1.0), ("truncate", 0.0),
              ("crash", None)], seed=0)   # truncating all after a purge must keep the base
@given(st.lists(op_st, max_size=25), st.integers(0, 2**32))
def test_segment_log_matches_a_model(ops, seed):
    rng = random.Random(seed)
    fs, segs = make()
    model: dict = {}   # index -> entry
    term = 1
    for kind, arg in ops:
        if kind == "append":
            term += rng.random() < 0.3
            entries = [(term, 16 + rng.randint(0, 3), rng.randbytes(n)) for n in arg]
            first = segs.last_index + 1
            append(segs, [], entries)
            model.update({first + i: e for i, e in enumerate(entries)})
        elif kind == "truncate" and segs.last_index > segs.base_index:
            index = segs.base_index + 1 + int(arg * (segs.last_index - segs.base_index))
            segs.truncate_from(index)
            for i in [i for i in model if i >= index]:
                del model[i]
            term += 1
        elif kind == "purge":
            segs.purge_below(int(arg * segs.last_index))
        elif kind == "crash":
            fs.crash()
            segs, log, stop = recovered(fs, start=segs.first_index)
            assert stop.clean, stop
            segs.cut_after_recovery(stop)
            assert entries_of(log) == [model[i] for i in range(log.first_index, log.last_index + 1)]
        assert segs.last_index == (max(model) if model else segs.base_index)
    for i in range(segs.first_index, segs.last_index + 1):
        assert segs.read(i) == model[i]
