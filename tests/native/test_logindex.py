"""LogIndex unit tests: the packed wire format, edge cases, errors, memory safety of payload
views, and the amortised storage rules (checked by copy counters, not by timing)."""
import gc
import random

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from aeronpy._logindex import PACKED_HEADER_BYTES, LogIndex

from .logmodel import pack_entries, unpack_entries
from .test_logindex_model import LogIndexMachine


def filled(n, term_every=4, payload_len=32, base=(0, 0)):
    log = LogIndex(*base)
    for i in range(n):
        log.append(base[1] + 1 + i // term_every, 16 + i % 3, bytes([i % 251]) * payload_len)
    return log


def test_packed_format_golden_bytes():
    log = LogIndex()
    log.append(7, 0x1234, b"ab")
    log.append(0x0102030405060708, 2, b"")
    blob, n = log.pack(1, 3, 1 << 20)
    assert n == 2
    assert blob == bytes.fromhex(
        "02000000" "3412" "0000" "0700000000000000" "6162"
        "00000000" "0200" "0000" "0807060504030201")
    assert PACKED_HEADER_BYTES == 16


def test_fresh_log_and_base():
    log = LogIndex()
    assert (log.base_index, log.base_term, log.first_index, log.last_index, log.last_term,
            log.count, log.payload_bytes) == (0, 0, 1, 0, 0, 0, 0)
    assert log.term_at(0) == 0
    snap = LogIndex(100, 7)
    assert (snap.first_index, snap.last_index, snap.last_term, snap.term_at(100)) == (101, 100, 7, 7)
    assert snap.append(7, 1, b"x") == 101
    with pytest.raises(IndexError):
        snap.type_at(100)  # the base is a snapshot point, not an entry
    with pytest.raises(ValueError):
        LogIndex(-1, 0)


def test_pack_budget_always_takes_one_entry():
    log = filled(10, payload_len=100)
    blob, n = log.pack(3, 11, 0)
    assert n == 1 and len(blob) == 116
    blob, n = log.pack(3, 11, 116 * 3 + 115)
    assert n == 3 and len(blob) == 348
    assert log.pack(5, 5, 1000) == (b"", 0)
    assert log.size_between(1, 11) == 1160


def test_pack_roundtrip_through_append_packed():
    src = filled(200)
    dst = LogIndex()
    lo = 1
    while lo <= src.last_index:
        blob, n = src.pack(lo, src.last_index + 1, 1408)
        assert len(blob) <= 1408 and n == min(1408 // 48, src.last_index + 1 - lo)
        dst.append_packed(blob)
        lo += n
    assert [(dst.term_at(i), dst.type_at(i), bytes(dst.payload_at(i))) for i in range(1, 201)] == \
           [(src.term_at(i), src.type_at(i), bytes(src.payload_at(i))) for i in range(1, 201)]


def test_append_packed_count_and_errors():
    blob = pack_entries([(1, 1, b"a"), (1, 2, b"bb"), (2, 3, b"")])
    log = LogIndex()
    assert log.append_packed(blob, 2) == 2
    assert log.append_packed(b"", 0) == 2 and log.append_packed(b"") == 2
    with pytest.raises(ValueError):
        log.append_packed(blob[:17 + 18 - 1], 2)  # promises 2 entries, the second is cut short
    with pytest.raises(ValueError):
        log.append_packed(blob + b"\x00")  # count=-1: trailing garbage is malformed
    with pytest.raises(ValueError):
        log.append_packed(pack_entries([(0, 1, b"")]))  # term 0 < last term 1
    with pytest.raises(TypeError):
        log.append_packed("not bytes")
    assert log.count == 2


def test_append_argument_errors():
    log = LogIndex()
    for bad_type in (-1, 0x10000):
        with pytest.raises(ValueError):
            log.append(1, bad_type, b"")
    with pytest.raises(TypeError):
        log.append(1, 0, "text")
    with pytest.raises(TypeError):
        log.append(1, 0, None)
    log.append(5, 0, b"")
    with pytest.raises(ValueError):
        log.append(4, 0, b"")
    assert log.count == 1


def test_payload_views_are_read_only_and_never_dangle():
    log = LogIndex()
    log.append(1, 1, b"first")
    view = log.payload_at(1)
    assert view.readonly
    with pytest.raises(TypeError):
        view[0] = 0
    for i in range(20000):  # forces several relocations of the payload block
        log.append(1, 1, b"y" * 64)
    log.drop_prefix(19000, 1)
    gc.collect()
    assert bytes(view) == b"first"  # the old block is still alive while the view is


def test_append_from_own_payload_view_survives_relocation():
    log = LogIndex()
    log.append(1, 1, b"z" * 3000)
    for _ in range(8):  # each append copies the previous payload; the block grows meanwhile
        log.append(1, 1, log.payload_at(log.last_index))
    assert all(bytes(log.payload_at(i)) == b"z" * 3000 for i in range(1, 10))


def test_truncate_and_drop_prefix_edges():
    log = filled(10)
    log.truncate_from(11)  # past the end: no-op
    assert log.last_index == 10
    with pytest.raises(IndexError):
        log.truncate_from(0)
    log.truncate_from(9)
    assert (log.last_index, log.last_term) == (8, 2)
    log.drop_prefix(4, log.term_at(4))
    assert (log.base_index, log.base_term, log.count) == (4, 1, 4)
    log.drop_prefix(2, 1)  # stale snapshot
    assert log.base_index == 4
    log.drop_prefix(6, 99)  # held index with another term: whole log discarded
    assert (log.base_index, log.base_term, log.count, log.last_term) == (6, 99, 0, 99)
    log.drop_prefix(50, 100)  # beyond the end
    assert (log.first_index, log.last_index, log.term_at(50)) == (51, 50, 100)
    assert log.append(100, 0, b"q") == 51
    with pytest.raises(ValueError):
        log.drop_prefix(60, -1)


def test_term_searches_include_the_base():
    log = LogIndex(10, 3)
    assert log.first_index_of_term(3) == log.last_index_of_term(3) == 10
    log.append(3, 0, b"")
    log.append(5, 0, b"")
    log.append(5, 0, b"")
    assert (log.first_index_of_term(3), log.last_index_of_term(3)) == (10, 11)
    assert (log.first_index_of_term(5), log.last_index_of_term(5)) == (12, 13)
    assert log.first_index_of_term(4) == log.last_index_of_term(4) == 0
    assert LogIndex().first_index_of_term(0) == 0  # index 0 of a fresh log is not an entry


def test_entries_iterator_and_mutation_guard():
    log = filled(5)
    got = list(log.entries(2, 5))
    assert [(i, t, ty, bytes(p)) for i, t, ty, p in got] == [
        (i, log.term_at(i), log.type_at(i), bytes(log.payload_at(i))) for i in range(2, 5)]
    with pytest.raises(IndexError):
        log.entries(0, 3)
    it = log.entries(1, 6)
    next(it)
    log.append(9, 0, b"")
    with pytest.raises(RuntimeError):
        next(it)


def test_large_payloads():
    log = LogIndex()
    big = bytes(range(256)) * 4096  # 1 MiB
    log.append(1, 1, big)
    log.append(1, 2, b"small")
    assert bytes(log.payload_at(1)) == big and log.payload_bytes == len(big) + 5
    blob, n = log.pack(1, 3, 1408)
    assert n == 1 and unpack_entries(blob) == [(1, 1, big)]


def test_rolling_window_drop_prefix_is_amortised():
    """A leader that snapshots every few entries: copies stay linear in what was appended,
    and storage stays proportional to the live window (no quadratic compaction)."""
    log = LogIndex()
    appended_bytes = 0
    for i in range(1, 60001):
        log.append(1, 1, b"p" * 40)
        appended_bytes += 40
        if i % 7 == 0 and i > 1000:
            log.drop_prefix(i - 1000, 1)  # keep a ~1000-entry window
    info = log._storage_info()
    assert info["moved_slots"] <= 4 * 60000
    assert info["slot_capacity"] <= 16384
    # payload storage: chunks sized to the live window, never the whole history
    assert info["chunk_bytes"] <= 8 * 1000 * 40, info
    assert log.count <= 1007
    for index in range(log.first_index, log.last_index + 1):
        assert bytes(log.payload_at(index)) == b"p" * 40


def test_drop_everything_releases_a_big_block():
    log = filled(5000, payload_len=1000)
    assert log._storage_info()["chunk_bytes"] >= 5_000_000
    log.drop_prefix(log.last_index, log.last_term)
    assert log.count == 0 and log._storage_info()["chunk_bytes"] <= 1 << 16


def test_payloads_are_never_copied_and_released_chunks_go_to_retire():
    """Growth adds chunks and compaction releases whole ones: no payload byte is moved (the
    single doubling block it replaced copied the live log, 30-130 ms at tens to hundreds of
    MiB), views handed out before stay intact, and big released chunks reach ``retire``."""
    log = LogIndex()
    retired = []
    log.retire = retired.append
    payload = bytes(range(256)) * 4
    first_view = None
    for i in range(1, 40001):                       # ~40 MiB of payloads
        log.append(1, 16, payload)
        if i == 5:
            first_view = log.payload_at(5)
    info = log._storage_info()
    assert info["chunks"] > 4                       # grew by adding chunks
    assert max_chunk_bytes(log) <= 8 << 20
    log.drop_prefix(39000, 1)
    assert bytes(first_view) == payload            # a view of a released chunk stays readable
    assert retired and all(chunk_bytes(c) >= 1 << 20 for c in retired)
    assert log._storage_info()["chunk_bytes"] <= 2 * (8 << 20)
    for index in (39001, 39500, 40000):
        assert bytes(log.payload_at(index)) == payload
    blob, n = log.pack(39001, 40001, 1 << 30)
    assert n == 1000 and unpack_entries(blob)[-1] == (1, 16, payload)


def test_entries_that_straddle_chunks_pack_and_truncate():
    log = LogIndex()
    sizes = [3000, 3000, 5000, 1, 0, 70000, 10, 9000]   # past the 4 KiB first chunk and beyond
    for i, size in enumerate(sizes):
        log.append(1, 16, bytes([i]) * size)
    blob, n = log.pack(1, len(sizes) + 1, 1 << 20)
    assert [p for _, _, p in unpack_entries(blob)] == [bytes([i]) * s for i, s in enumerate(sizes)]
    log.truncate_from(4)                             # back into an earlier chunk
    log.append_packed(pack_entries([(2, 16, b"x" * 6000), (2, 16, b"y" * 2)]))
    got = [bytes(log.payload_at(i)) for i in range(1, log.last_index + 1)]
    assert got == [b"\x00" * 3000, b"\x01" * 3000, b"\x02" * 5000, b"x" * 6000, b"y" * 2]


def chunk_bytes(chunk) -> int:
    return memoryview(chunk).nbytes


def max_chunk_bytes(log) -> int:
    return max(log._storage_info()["chunk_sizes"])


# ---------------------------------------------------------------------- negative controls
class OffByOneTruncate(LogIndex):
    def truncate_from(self, index):
        super().truncate_from(index + 1)


class SwappedTermSearch(LogIndex):
    def first_index_of_term(self, term):
        return super().last_index_of_term(term)


@pytest.mark.parametrize("broken", [OffByOneTruncate, SwappedTermSearch])
def test_model_machine_catches_a_broken_log(broken):
    class Machine(LogIndexMachine):
        def __init__(self):
            super().__init__()
            self.log = broken()

    with pytest.raises((AssertionError, pytest.fail.Exception)):
        run_state_machine_as_test(Machine, settings=settings(
            max_examples=300, stateful_step_count=30, deadline=None, database=None,
            phases=[Phase.generate], suppress_health_check=list(HealthCheck)))


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15, 16])
def test_the_slot_ring_wraps_grows_and_stays_consistent(seed):
    """Drops move the ring's head past its end; appends wrap to its front; growth unwraps
    (moving either part). Every read, pack and term search is checked against a plain list."""
    rng = random.Random(seed)
    log = LogIndex()
    model = []                        # (index, term, type, payload)
    term = 1
    base = 0
    wrapped_seen = grew_wrapped = 0
    for step in range(3000):
        info = log._storage_info()
        wrapped = info["head"] + log.count >= info["slot_capacity"]
        wrapped_seen += wrapped
        op = rng.random() if step % 500 < 350 else 0.0    # spells of appends only: growth
        if op < 0.75 or len(model) < 2:
            term += rng.random() < 0.05
            payload = rng.randbytes(rng.choice((0, 3, 40, 2000)))
            index = log.append(term, 16 + step % 5, payload)
            model.append((index, term, 16 + step % 5, payload))
            grew_wrapped += wrapped and log._storage_info()["slot_capacity"] > info["slot_capacity"]
        elif op < 0.87:
            keep = rng.randrange(0, min(len(model) - 1, 40))      # drop a few, keep the rest
            index, t = model[keep][0], model[keep][1]
            log.drop_prefix(index, t)
            model = model[keep + 1:]
            base = index
        elif op < 0.9 and len(model) > 1:
            cut = rng.randrange(1, len(model))
            log.truncate_from(model[cut][0])
            model = model[:cut]
            term = max(term, model[-1][1]) if model else term
        if step % 50 == 0 or op >= 0.9:
            assert log.count == len(model) and log.base_index == (model[0][0] - 1 if model else log.base_index)
            for index, t, typ, payload in model:
                assert (log.term_at(index), log.type_at(index), bytes(log.payload_at(index))) == (t, typ, payload)
            if model:
                blob, n = log.pack(model[0][0], model[-1][0] + 1, 1 << 30)
                assert n == len(model)
                assert unpack_entries(blob) == [(t, typ, p) for _, t, typ, p in model]
                for t in {m[1] for m in model}:
                    firsts = [m[0] for m in model if m[1] == t]
                    if firsts[0] > model[0][0] or log.base_term != t:
                        assert log.first_index_of_term(t) == firsts[0]
                    assert log.last_index_of_term(t) == firsts[-1]
    info = log._storage_info()
    assert info["moved_slots"] <= 6 * 3000
    assert wrapped_seen > 100 and grew_wrapped >= 1      # the cases this test is for happened
