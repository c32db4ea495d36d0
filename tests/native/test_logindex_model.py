"""LogIndex against a plain Python list model (hypothesis stateful)."""
import struct

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from aeronpy._logindex import LogIndex

from .logmodel import ListLog, pack_entries, unpack_entries

# mostly small, sometimes past a 4 KiB chunk's room: entries cross payload chunks often. A big
# payload repeats a few drawn bytes, so it costs Hypothesis little of its data budget (drawing
# 5,000 random bytes made runs overrun it and the negative controls below miss now and then).
payloads = st.one_of(st.binary(max_size=48),
                     st.builds(lambda unit, times: unit * times,
                               st.binary(min_size=1, max_size=8), st.integers(150, 1250)))
entry_types = st.integers(0, 0xFFFF)


class LogIndexMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.log = LogIndex()
        self.model = ListLog()

    # ------------------------------------------------------------------ mutations
    @rule(term_step=st.integers(0, 2), etype=entry_types, payload=payloads,
          kind=st.sampled_from(["bytes", "bytearray", "memoryview"]))
    def append(self, term_step, etype, payload, kind):
        term = self.model.last_term + term_step
        buf = {"bytes": bytes, "bytearray": bytearray, "memoryview": memoryview}[kind](payload)
        assert self.log.append(term, etype, buf) == self.model.last_index + 1
        self.model.entries.append((term, etype, payload))

    @rule(entries=st.lists(st.tuples(st.integers(0, 1), entry_types, payloads), max_size=8),
          use_count=st.booleans(), trailing=st.binary(max_size=20))
    def append_packed(self, entries, use_count, trailing):
        term, built = self.model.last_term, []
        for step, etype, payload in entries:
            term += step
            built.append((term, etype, payload))
        blob = pack_entries(built)
        if use_count:  # explicit count: bytes after the counted entries are ignored
            last = self.log.append_packed(blob + trailing, len(built))
        else:
            last = self.log.append_packed(bytearray(blob))
        self.model.entries.extend(built)
        assert last == self.model.last_index

    @rule(data=st.data())
    def append_packed_malformed(self, data):
        term = self.model.last_term + 1
        built = [(term, 1, data.draw(payloads)) for _ in range(data.draw(st.integers(1, 4)))]
        blob = bytearray(pack_entries(built))
        bounds, pos = set(), 0
        for _, _, p in built:
            pos += 16 + len(p)
            bounds.add(pos)
        how = data.draw(st.sampled_from(["cut", "flags", "length", "term"]))
        if how == "cut":  # a cut inside an entry (a cut on a boundary is just fewer entries)
            cut = data.draw(st.integers(1, len(blob) - 1).filter(lambda c: c not in bounds))
            blob = blob[:cut]
        elif how == "flags":
            struct.pack_into("<H", blob, 6, data.draw(st.integers(1, 0xFFFF)))
        elif how == "length":
            struct.pack_into("<I", blob, 0, len(blob) + data.draw(st.integers(-15, 2**32 - 1 - len(blob))))
        elif self.model.last_term > 0:  # first entry below the log's last term
            struct.pack_into("<q", blob, 8, self.model.last_term - 1)
        elif len(built) > 1:  # second entry below the first
            struct.pack_into("<q", blob, 16 + len(built[0][2]) + 8, term - 1)
        else:
            return
        if how == "length" and struct.unpack_from("<I", blob, 0)[0] + 16 in bounds:
            return  # the mutated length happened to land on a boundary: still well formed
        before = self.log.mutation_count
        with pytest.raises(ValueError):
            self.log.append_packed(bytes(blob))
        assert self.log.mutation_count == before

    @precondition(lambda self: self.model.entries)
    @rule(data=st.data())
    def truncate_from(self, data):
        index = data.draw(st.integers(self.model.base_index + 1, self.model.last_index + 3))
        self.log.truncate_from(index)
        if index <= self.model.last_index:
            self.model.truncate_from(index)

    @rule(data=st.data())
    def drop_prefix(self, data):
        index = data.draw(st.integers(max(0, self.model.base_index - 2), self.model.last_index + 4))
        if self.model.base_index <= index <= self.model.last_index and data.draw(st.booleans()):
            term = self.model.term_at(index)  # the usual case: snapshot of our own log
        else:
            term = data.draw(st.integers(max(self.model.last_term - 1, 0), self.model.last_term + 2))
        self.log.drop_prefix(index, term)
        self.model.drop_prefix(index, term)

    # ------------------------------------------------------------------ queries
    @rule(data=st.data(), max_bytes=st.integers(0, 300))
    def pack(self, data, max_bytes):
        lo = data.draw(st.integers(self.model.base_index + 1, self.model.last_index + 1))
        hi = data.draw(st.integers(lo, self.model.last_index + 1))
        blob, n = self.log.pack(lo, hi, max_bytes)
        assert (blob, n) == self.model.pack(lo, hi, max_bytes)
        if lo < hi:
            assert n >= 1
            assert n == 1 or len(blob) <= max_bytes
        assert self.log.size_between(lo, lo + n) == len(blob)
        assert unpack_entries(blob) == self.model.entries[lo - self.model.base_index - 1:][:n]
        room = data.draw(st.integers(0, 400))
        out = bytearray(room + 3)
        size, m = self.log.pack_into(out, 3, lo, hi, max_bytes)
        if lo < hi and len(self.model.entries[lo - self.model.base_index - 1][2]) + 16 > room:
            assert (size, m) == (0, 0)
        else:
            assert (bytes(out[3:3 + size]), m) == self.model.pack(lo, hi, min(max_bytes, room))

    @rule(term=st.integers(0, 12))
    def term_searches(self, term):
        assert self.log.first_index_of_term(term) == self.model.first_index_of_term(term)
        assert self.log.last_index_of_term(term) == self.model.last_index_of_term(term)

    @rule(offset=st.integers(1, 3))
    def out_of_range_raises(self, offset):
        m = self.model
        with pytest.raises(IndexError):
            self.log.term_at(m.base_index - offset)
        with pytest.raises(IndexError):
            self.log.term_at(m.last_index + offset)
        for bad in (m.base_index + 1 - offset, m.last_index + offset):
            with pytest.raises(IndexError):
                self.log.type_at(bad)
            with pytest.raises(IndexError):
                self.log.payload_at(bad)
        with pytest.raises(IndexError):
            self.log.pack(m.base_index + 1 - offset, m.last_index + 1, 1000)
        with pytest.raises(IndexError):
            self.log.pack(m.base_index + 1, m.last_index + 1 + offset, 1000)
        with pytest.raises(IndexError):
            self.log.truncate_from(m.base_index + 1 - offset)
        if m.last_term > 0:
            with pytest.raises(ValueError):
                self.log.append(m.last_term - 1, 0, b"")

    # ------------------------------------------------------------------ invariants
    @invariant()
    def matches_model(self):
        m = self.model
        assert (self.log.base_index, self.log.base_term) == (m.base_index, m.base_term)
        assert (self.log.last_index, self.log.last_term) == (m.last_index, m.last_term)
        assert self.log.first_index == m.base_index + 1
        assert self.log.count == len(m.entries)
        assert self.log.payload_bytes == sum(len(p) for _, _, p in m.entries)
        assert self.log.term_at(m.base_index) == m.base_term
        got = [(self.log.term_at(i), self.log.type_at(i), bytes(self.log.payload_at(i)))
               for i in range(m.base_index + 1, m.last_index + 1)]
        assert got == m.entries
        listed = [(t, ty, bytes(p)) for _, t, ty, p in self.log.entries(m.base_index + 1, m.last_index + 1)]
        assert listed == m.entries
        assert self.log.size_between(m.base_index + 1, m.last_index + 1) == 16 * len(m.entries) + self.log.payload_bytes


LogIndexMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestLogIndexModel = LogIndexMachine.TestCase
