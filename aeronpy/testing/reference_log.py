"""A plain-Python model of ``aeronpy._logindex.LogIndex`` (interfaces.md 1.2).

Slow and simple on purpose: tests run the core against both this and the compiled log and
expect identical behaviour, the way uvloop's tests run against asyncio.
"""
from __future__ import annotations

from struct import Struct

_HEADER = Struct("<IHHq")


class ReferenceLogIndex:
    def __init__(self, base_index: int = 0, base_term: int = 0):
        self.base_index = base_index
        self.base_term = base_term
        self._terms: list = []
        self._types: list = []
        self._payloads: list = []

    @property
    def first_index(self) -> int:
        return self.base_index + 1

    @property
    def last_index(self) -> int:
        return self.base_index + len(self._terms)

    @property
    def last_term(self) -> int:
        return self._terms[-1] if self._terms else self.base_term

    @property
    def count(self) -> int:
        return len(self._terms)

    @property
    def payload_bytes(self) -> int:
        return sum(len(p) for p in self._payloads)

    def append(self, term: int, type: int, payload) -> int:
        if self._terms and term < self._terms[-1] or term < self.base_term:
            raise ValueError("terms in a log never decrease")
        self._terms.append(term)
        self._types.append(type)
        self._payloads.append(bytes(payload))
        return self.last_index

    def append_packed(self, blob, count: int = -1) -> int:
        view = memoryview(blob)
        offset = 0
        appended = 0
        while offset < len(view) and (count < 0 or appended < count):
            length, type_, _flags, term = _HEADER.unpack_from(view, offset)
            offset += _HEADER.size
            if offset + length > len(view):
                raise ValueError("packed entry runs past the end of the blob")
            self.append(term, type_, view[offset:offset + length])
            offset += length
            appended += 1
        if count >= 0 and appended != count:
            raise ValueError(f"blob holds {appended} entries, expected {count}")
        return self.last_index

    def _slot(self, index: int) -> int:
        if not self.first_index <= index <= self.last_index:
            raise IndexError(f"index {index} outside [{self.first_index}, {self.last_index}]")
        return index - self.first_index

    def term_at(self, index: int) -> int:
        if index == self.base_index:
            return self.base_term
        return self._terms[self._slot(index)]

    def type_at(self, index: int) -> int:
        return self._types[self._slot(index)]

    def payload_at(self, index: int) -> memoryview:
        return memoryview(self._payloads[self._slot(index)])

    def pack(self, lo: int, hi: int, max_bytes: int):
        parts = []
        size = 0
        count = 0
        for index in range(lo, hi):
            slot = self._slot(index)
            payload = self._payloads[slot]
            entry_size = _HEADER.size + len(payload)
            if count and size + entry_size > max_bytes:
                break
            parts.append(_HEADER.pack(len(payload), self._types[slot], 0, self._terms[slot]))
            parts.append(payload)
            size += entry_size
            count += 1
        return b"".join(parts), count

    def size_between(self, lo: int, hi: int) -> int:
        return sum(_HEADER.size + len(self._payloads[self._slot(i)]) for i in range(lo, hi))

    def truncate_from(self, index: int) -> None:
        if index <= self.base_index:
            raise IndexError(f"cannot truncate at {index}: at or below the base {self.base_index}")
        keep = index - self.first_index
        del self._terms[keep:], self._types[keep:], self._payloads[keep:]

    def drop_prefix(self, index: int, term: int) -> None:
        if index <= self.base_index:
            return
        if index >= self.last_index:
            self._terms, self._types, self._payloads = [], [], []
        else:
            cut = index - self.base_index
            del self._terms[:cut], self._types[:cut], self._payloads[:cut]
        self.base_index, self.base_term = index, term

    def first_index_of_term(self, term: int) -> int:
        for slot, t in enumerate(self._terms):
            if t == term:
                return self.first_index + slot
            if t > term:
                break
        return 0

    def last_index_of_term(self, term: int) -> int:
        for slot in range(len(self._terms) - 1, -1, -1):
            t = self._terms[slot]
            if t == term:
                return self.first_index + slot
            if t < term:
                break
        return 0
