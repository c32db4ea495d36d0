"""Review: LogIndex against a plain list model, driven by the same random operations, with
payloads from empty to bigger than a chunk (8 MiB), a ``retire`` hook, and payload views held
across later mutations. After every step every observable is compared, views of entries that
stayed live must still read their bytes, no live entry may point into a retired chunk, and
no chunk may be kept that holds no live entry (besides the tail one)."""
import itertools

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from aeronpy._logindex import LogIndex

from .logmodel import ListLog, pack_entries, unpack_entries

KIB = 1024
sizes = st.one_of(st.integers(0, 40), st.integers(0, 40), st.integers(3 * KIB, 5 * KIB),
                  st.integers(200 * KIB, 1300 * KIB), st.sampled_from([0, 4096, 8 * 1024 * KIB + 1]))
_uid = itertools.count()


def payload(size, seed):
    if size == 0:
        return b""
    unit = bytes([(seed + i) % 256 for i in range(7)])
    return (unit * (size // 7 + 1))[:size]


class Model(ListLog):
    """The shared list model; its entries here carry a uid too: (term, type, bytes, uid)."""


class DiffMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.log = LogIndex()
        self.m = Model()
        self.retired = []       # every chunk handed to retire (kept alive: identity checks)
        self.log.retire = self.retired.append
        self.held = []          # (view, index, uid, bytes)

    # ------------------------------------------------------------------ mutations
    @rule(step=st.integers(0, 2), etype=st.integers(0, 0xFFFF), size=sizes, seed=st.integers(0, 255))
    def append(self, step, etype, size, seed):
        term = self.m.last_term + step
        p = payload(size, seed)
        assert self.log.append(term, etype, p) == self.m.last_index + 1
        self.m.entries.append((term, etype, p, next(_uid)))

    @rule(items=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 0xFFFF), sizes,
                                   st.integers(0, 255)), max_size=6))
    def append_packed(self, items):
        term, built = self.m.last_term, []
        for step, etype, size, seed in items:
            term += step
            built.append((term, etype, payload(size, seed)))
        assert self.log.append_packed(pack_entries(built)) == self.m.last_index + len(built)
        self.m.entries.extend((t, ty, p, next(_uid)) for t, ty, p in built)

    @precondition(lambda self: self.m.entries)
    @rule(data=st.data())
    def append_own_view(self, data):
        i = data.draw(st.integers(self.m.base_index + 1, self.m.last_index))
        src = self.m.entries[i - self.m.base_index - 1]
        self.log.append(self.m.last_term, 7, self.log.payload_at(i))
        self.m.entries.append((self.m.last_term, 7, src[2], next(_uid)))

    @rule(data=st.data())
    def truncate_from(self, data):
        index = data.draw(st.integers(self.m.base_index - 1, self.m.last_index + 2))
        if index <= self.m.base_index:
            before = self.log.mutation_count
            with pytest.raises(IndexError):
                self.log.truncate_from(index)
            assert self.log.mutation_count == before
            return
        self.log.truncate_from(index)
        del self.m.entries[index - self.m.base_index - 1:]

    @rule(data=st.data())
    def drop_prefix(self, data):
        m = self.m
        index = data.draw(st.integers(max(0, m.base_index - 1), m.last_index + 2))
        if m.base_index <= index <= m.last_index and data.draw(st.booleans()):
            term = m.base_term if index == m.base_index else m.entries[index - m.base_index - 1][0]
        else:
            term = data.draw(st.integers(max(m.last_term - 1, 0), m.last_term + 1))
        self.log.drop_prefix(index, term)
        if index < m.base_index:
            return
        held = m.base_term if index == m.base_index else (
            m.entries[index - m.base_index - 1][0] if index <= m.last_index else None)
        if held == term:
            del m.entries[:index - m.base_index]
        else:
            m.entries = []
        m.base_index, m.base_term = index, term

    @rule(data=st.data())
    def refused_append(self, data):
        if self.m.last_term == 0:
            return
        before = self.log.mutation_count
        with pytest.raises(ValueError):
            self.log.append(self.m.last_term - 1, 0, b"x")
        with pytest.raises(ValueError):
            self.log.append_packed(pack_entries([(self.m.last_term, 0, b"a"),
                                                 (self.m.last_term - 1, 0, b"b")]))
        assert self.log.mutation_count == before

    @precondition(lambda self: self.m.entries)
    @rule(data=st.data())
    def hold_view(self, data):
        i = data.draw(st.integers(self.m.base_index + 1, self.m.last_index))
        e = self.m.entries[i - self.m.base_index - 1]
        self.held.append((self.log.payload_at(i), i, e[3], e[2]))
        del self.held[:-6]

    @precondition(lambda self: self.m.entries)
    @rule(data=st.data(), max_bytes=st.integers(0, 3 * 1024 * KIB))
    def pack(self, data, max_bytes):
        lo = data.draw(st.integers(self.m.base_index + 1, self.m.last_index + 1))
        hi = data.draw(st.integers(lo, self.m.last_index + 1))
        blob, n = self.log.pack(lo, hi, max_bytes)
        want, total = [], 0
        for t, ty, p, _ in self.m.entries[lo - self.m.base_index - 1:hi - self.m.base_index - 1]:
            if want and total + 16 + len(p) > max_bytes:
                break
            want.append((t, ty, p))
            total += 16 + len(p)
        assert n == len(want) and unpack_entries(blob) == want
        assert self.log.size_between(lo, hi) == sum(
            16 + len(e[2]) for e in self.m.entries[lo - self.m.base_index - 1:hi - self.m.base_index - 1])

    # ------------------------------------------------------------------ invariants
    @invariant()
    def same_observables(self):
        m, log = self.m, self.log
        assert (log.base_index, log.base_term, log.first_index) == (m.base_index, m.base_term, m.base_index + 1)
        assert (log.last_index, log.last_term, log.count) == (m.last_index, m.last_term, len(m.entries))
        assert log.payload_bytes == sum(len(e[2]) for e in m.entries)
        assert log.term_at(m.base_index) == m.base_term
        for bad in (m.base_index - 1, m.last_index + 1):
            if bad >= 0 and bad != m.base_index:
                with pytest.raises(IndexError):
                    log.term_at(bad)
        for bad in (m.base_index, m.last_index + 1):
            with pytest.raises(IndexError):
                log.payload_at(bad)
        retired = {id(c) for c in self.retired}
        holders = set()
        for k, (t, ty, p, _) in enumerate(m.entries):
            i = m.base_index + 1 + k
            view = log.payload_at(i)
            assert (log.term_at(i), log.type_at(i), len(view)) == (t, ty, len(p))
            assert view[:64] == p[:64] and view[-64:] == p[-64:]
            assert id(view.obj) not in retired, f"entry {i} lives in a retired chunk"
            if len(p):
                holders.add(id(view.obj))
        info = log._storage_info()
        chunks = info["chunks"]
        # the tail chunk may be empty, and so may the first one while it is a small one the log
        # started with (or kept at a reset) and the first payload did not fit: bounded waste
        if len(holders) < chunks - 1:
            assert len(holders) == chunks - 2 and info["chunk_sizes"][0] <= 64 * KIB, info
        assert len(holders) <= chunks
        for t in {e[0] for e in m.entries} | {m.base_term, m.last_term + 1}:
            held = ([(m.base_index, m.base_term)] if m.base_index > 0 else []) + [
                (m.base_index + 1 + k, e[0]) for k, e in enumerate(m.entries)]
            idx = [i for i, tt in held if tt == t]
            assert log.first_index_of_term(t) == (idx[0] if idx else 0)
            assert log.last_index_of_term(t) == (idx[-1] if idx else 0)

    @invariant()
    def held_views_still_read_their_entry(self):
        for view, i, uid, p in self.held:
            k = i - self.m.base_index - 1
            still = 0 <= k < len(self.m.entries) and self.m.entries[k][3] == uid
            data = bytes(view)                     # never a crash, whatever the content
            assert len(data) == len(p)
            if still:
                assert data == p, f"view of live entry {i} changed"


DiffMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
TestLogIndexDiff = DiffMachine.TestCase
