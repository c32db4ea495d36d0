"""A plain-Python model of LogIndex (a list of tuples + struct), shared by the model-based
tests and as the pure-Python baseline idea of the benchmarks."""
import struct

HEADER = struct.Struct("<IHHq")  # payload_length | type | flags | term


def pack_entries(entries) -> bytes:
    return b"".join(HEADER.pack(len(p), t, 0, term) + p for term, t, p in entries)


def unpack_entries(blob: bytes) -> list:
    out, pos = [], 0
    while pos < len(blob):
        plen, etype, flags, term = HEADER.unpack_from(blob, pos)
        assert flags == 0
        out.append((term, etype, bytes(blob[pos + 16:pos + 16 + plen])))
        pos += 16 + plen
    assert pos == len(blob)
    return out


class ListLog:
    def __init__(self, base_index=0, base_term=0):
        self.base_index, self.base_term, self.entries = base_index, base_term, []

    @property
    def last_index(self):
        return self.base_index + len(self.entries)

    @property
    def last_term(self):
        return self.entries[-1][0] if self.entries else self.base_term

    def term_at(self, index):
        if index == self.base_index:
            return self.base_term
        return self.entries[index - self.base_index - 1][0]

    def pack(self, lo, hi, max_bytes):
        chosen, total = [], 0
        for index in range(lo, hi):
            entry = self.entries[index - self.base_index - 1]
            size = 16 + len(entry[2])
            if chosen and total + size > max_bytes:
                break
            chosen.append(entry)
            total += size
        return pack_entries(chosen), len(chosen)

    def truncate_from(self, index):
        del self.entries[index - self.base_index - 1:]

    def drop_prefix(self, index, term):
        if index < self.base_index:
            return
        if index <= self.last_index and self.term_at(index) == term:
            del self.entries[:index - self.base_index]
        else:
            self.entries = []
        self.base_index, self.base_term = index, term

    def first_index_of_term(self, term):
        held = ([(self.base_index, self.base_term)] if self.base_index > 0 else []) + [
            (self.base_index + 1 + i, e[0]) for i, e in enumerate(self.entries)]
        return next((i for i, t in held if t == term), 0)

    def last_index_of_term(self, term):
        held = ([(self.base_index, self.base_term)] if self.base_index > 0 else []) + [
            (self.base_index + 1 + i, e[0]) for i, e in enumerate(self.entries)]
        return next((i for i, t in reversed(held) if t == term), 0)
