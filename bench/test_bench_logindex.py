"""LogIndex and CRC-32C per-call costs from Python, each next to a pure-Python baseline
measured in the same run (a list-of-tuples log with struct packing; zlib.crc32 for CRC).

Each benchmark round runs OPS calls in a plain Python loop, so per-op figures include the
loop's own cost (see test_empty_loop). Run:
    python -m pytest bench/test_bench_logindex.py --benchmark-only --benchmark-json=/tmp/native.json
"""
import struct
import zlib

import pytest

from aeronpy._crc import _crc32c_portable, crc32c
from aeronpy._logindex import LogIndex

OPS = 1000
PAYLOAD = b"x" * 32
BUDGET = 1408
HEADER = struct.Struct("<IHHq")


class PyListLog:
    """The obvious pure-Python log: a list of (term, type, payload) tuples."""

    def __init__(self, base_index=0, base_term=0):
        self.base_index, self.base_term, self.entries = base_index, base_term, []

    def append(self, term, entry_type, payload):
        if self.entries and term < self.entries[-1][0]:
            raise ValueError("term decreased")
        self.entries.append((term, entry_type, bytes(payload)))
        return self.base_index + len(self.entries)

    def term_at(self, index):
        if index == self.base_index:
            return self.base_term
        if not self.base_index < index <= self.base_index + len(self.entries):
            raise IndexError(index)
        return self.entries[index - self.base_index - 1][0]

    def pack(self, lo, hi, max_bytes):
        parts, total, pack = [], 0, HEADER.pack
        for term, entry_type, payload in self.entries[lo - self.base_index - 1:hi - self.base_index - 1]:
            size = 16 + len(payload)
            if parts and total + size > max_bytes:
                break
            parts.append(pack(len(payload), entry_type, 0, term))
            parts.append(payload)
            total += size
        return b"".join(parts), len(parts) // 2

    def truncate_from(self, index):
        del self.entries[index - self.base_index - 1:]

    def append_packed(self, blob):
        pos, end, unpack_from, entries = 0, len(blob), HEADER.unpack_from, self.entries
        while pos < end:
            plen, entry_type, flags, term = unpack_from(blob, pos)
            if flags or pos + 16 + plen > end:
                raise ValueError("malformed")
            entries.append((term, entry_type, blob[pos + 16:pos + 16 + plen]))
            pos += 16 + plen
        return self.base_index + len(entries)


def filled(cls, n=OPS):
    log = cls()
    for i in range(n):
        log.append(1 + i // 100, 16, PAYLOAD)
    return log


def per_op(benchmark, fn, setup=None, ops=OPS, rounds=300):
    benchmark.extra_info["ops_per_round"] = ops
    if setup is None:
        benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=5)
    else:
        benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=1, warmup_rounds=5)


IMPLS = {"cython": LogIndex, "pylist": PyListLog}


def empty_log(cls, warm, grow):
    """A fresh log, or ("warm") one that already held `grow` and was truncated: the steady
    state of a long-running member, whose storage has reached its working size."""
    log = cls()
    if warm:
        grow(log)
        log.truncate_from(1)
    return log


def test_empty_loop(benchmark):
    benchmark.group = "loop"

    def run():
        for _ in range(OPS):
            pass
    per_op(benchmark, run)


@pytest.mark.parametrize("impl", IMPLS)
def test_term_at(benchmark, impl):
    benchmark.group = "term_at"
    log = filled(IMPLS[impl])
    term_at = log.term_at
    indexes = list(range(1, OPS + 1))

    def run():
        for i in indexes:
            term_at(i)
    per_op(benchmark, run)


@pytest.mark.parametrize("warm", [False, True], ids=["fresh", "warm"])
@pytest.mark.parametrize("impl", IMPLS)
def test_append_32b(benchmark, impl, warm):
    benchmark.group = "append 32B " + ("warm" if warm else "fresh")
    cls = IMPLS[impl]

    def run(log):
        append = log.append
        for _ in range(OPS):
            append(1, 16, PAYLOAD)
    per_op(benchmark, run, setup=lambda: ((empty_log(cls, warm, run),), {}))


@pytest.mark.parametrize("impl", IMPLS)
def test_pack_1408(benchmark, impl):
    benchmark.group = "pack 1408B of 32B entries"
    log = filled(IMPLS[impl])
    pack = log.pack
    blob, count = pack(1, OPS + 1, BUDGET)
    assert count == BUDGET // 48 and len(blob) == count * 48
    benchmark.extra_info["entries_per_call"] = count

    def run():
        for lo in range(1, 101):
            pack(lo, OPS + 1, BUDGET)
    per_op(benchmark, run, ops=100)


@pytest.mark.parametrize("warm", [False, True], ids=["fresh", "warm"])
@pytest.mark.parametrize("impl", IMPLS)
def test_append_packed_1408(benchmark, impl, warm):
    benchmark.group = "append_packed 1408B of 32B entries " + ("warm" if warm else "fresh")
    cls = IMPLS[impl]
    blob, count = filled(LogIndex).pack(1, OPS + 1, BUDGET)
    benchmark.extra_info["entries_per_call"] = count

    def run(log):
        append_packed = log.append_packed
        for _ in range(100):
            append_packed(blob)
    per_op(benchmark, run, setup=lambda: ((empty_log(cls, warm, run),), {}), ops=100)


CRC_IMPLS = {"crc32c": crc32c, "crc32c_portable": _crc32c_portable, "zlib.crc32": zlib.crc32}


@pytest.mark.parametrize("size", [4096, 1 << 20], ids=["4KiB", "1MiB"])
@pytest.mark.parametrize("impl", CRC_IMPLS)
def test_crc_throughput(benchmark, impl, size):
    benchmark.group = f"crc {size} bytes"
    fn = CRC_IMPLS[impl]
    data = bytes(range(256)) * (size // 256)
    calls = 100 if size == 4096 else 2
    benchmark.extra_info["bytes_per_round"] = size * calls

    def run():
        for _ in range(calls):
            fn(data)
    per_op(benchmark, run, ops=calls, rounds=100)
