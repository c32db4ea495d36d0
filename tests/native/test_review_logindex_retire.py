"""Review: a ``retire`` callback that raises must leave the LogIndex consistent (it used to be
called midway through truncate_from / drop_prefix: chunks already popped while entries still
pointed into them, so later reads indexed the chunk list out of bounds). Each scenario runs in
a subprocess so a segfault is a test failure."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PRELUDE = """
from aeronpy._logindex import LogIndex
def boom(chunk):
    raise RuntimeError("retire failed")
def build(sizes_kib):
    log = LogIndex()
    for i, k in enumerate(sizes_kib):
        log.append(1, i, bytes([97 + i]) * (k << 10))
    return log
def check(log, expected):  # expected: {index: (type, first byte, length)}
    assert log.last_index == max(expected, default=log.base_index), (log.last_index, expected)
    for i, (t, b, n) in expected.items():
        p = log.payload_at(i)
        assert log.type_at(i) == t and len(p) == n and (n == 0 or p[0] == b), (i, t, b, n)
"""


def run_probe(code: str):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), (r.returncode, r.stdout, r.stderr[-800:])


def test_truncate_from_with_a_raising_retire_leaves_a_consistent_log():
    run_probe("""
        log = build([600, 700, 100, 3000])          # chunks 4K | 1M: a | 2M: b c | 8M: d
        log.retire = boom
        before = log.mutation_count
        try:
            log.truncate_from(3)                     # releases the 8 MiB chunk: retire raises
        except RuntimeError:
            pass
        # the truncation happened (the error is only about handing the chunk over)
        assert log.mutation_count == before + 1
        check(log, {1: (0, 97, 600 << 10), 2: (1, 98, 700 << 10)})
        log.retire = None
        log.append(1, 9, b"z" * 10)
        check(log, {1: (0, 97, 600 << 10), 2: (1, 98, 700 << 10), 3: (9, 122, 10)})
        print("ok")
    """)


def test_drop_prefix_reset_with_a_raising_retire_does_not_lose_the_tail_chunk():
    run_probe("""
        log = build([600, 700, 3000])                # chunks 4K | 1M: a | 2M: b | 8M: c
        log.drop_prefix(1, 1)                        # chunks 2M | 8M
        def picky(chunk):
            if len(memoryview(chunk)) == 2097152:    # the last one released: chunk list empty
                raise RuntimeError("retire failed")
        log.retire = picky
        try:
            log.drop_prefix(100, 9)                  # past the end: the log is reset
        except RuntimeError:
            pass
        assert (log.base_index, log.base_term, log.last_index) == (100, 9, 100)
        log.retire = None
        log.append(9, 1, b"x")                       # segfaulted: no tail chunk left
        check(log, {101: (1, 120, 1)})
        print("ok")
    """)


def test_drop_prefix_compaction_with_a_raising_retire_counts_as_a_mutation():
    run_probe("""
        log = build([600, 700, 3000])
        log.retire = boom
        before = log.mutation_count
        it = log.entries(2, 4)
        try:
            log.drop_prefix(2, 1)                    # releases 4K and the 1 MiB chunk
        except RuntimeError:
            pass
        assert (log.base_index, log.last_index) == (2, 3)
        assert log.mutation_count == before + 1, (log.mutation_count, before)
        try:
            next(it)
            raise AssertionError("the iterator did not notice the drop")
        except RuntimeError:
            pass
        check(log, {3: (2, 99, 3000 << 10)})
        print("ok")
    """)


def test_truncate_then_bigger_append_cycles_do_not_pile_up_dead_chunks():
    # Each truncate_from left the chunk its first removed entry began, and the next, bigger
    # append opened another: dead chunks piled up (held until a later compaction).
    from aeronpy._logindex import LogIndex
    for keep in (0, 3):
        log = LogIndex()
        for i in range(keep):
            log.append(1, 0, b"k" * 10)
        size = 5000
        for _ in range(8):
            log.append(1, 1, b"x" * size)
            log.truncate_from(keep + 1)
            size = size * 2 + 1
        info = log._storage_info()
        assert info["chunks"] == 1, info
        assert info["chunk_bytes"] <= 2 * size, info
        for i in range(1, keep + 1):
            assert bytes(log.payload_at(i)) == b"k" * 10
        log.append(2, 1, b"y" * 3)
        assert bytes(log.payload_at(keep + 1)) == b"yyy"


def _available_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return 0


import pytest  # noqa: E402


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux" or _available_gib() < 12,
                    reason="needs ~5 GiB of memory for a > 4 GiB batch")
def test_append_packed_batch_over_4_gib_keeps_payload_locations_exact():
    # append_packed put the part of a batch that missed the tail chunk into ONE new chunk, and
    # a location keeps the offset in a chunk in 32 bits: past 4 GiB the offset carried into the
    # chunk serial and _tail_used kept only the low 32 bits, so the next append was written
    # over a live entry (recovery appends a whole segment's scan in one batch).
    run_probe("""
        import mmap, struct
        plen = 0x88000000                            # 2.125 GiB: two of them pass 4 GiB
        blob = mmap.mmap(-1, 2 * (16 + plen))        # zero pages: only the copy is resident
        blob[0:16] = struct.pack("<IHHq", plen, 1, 0, 1)
        blob[16 + plen:32 + plen] = struct.pack("<IHHq", plen, 2, 0, 1)
        log = LogIndex()
        assert log.append_packed(blob) == 2
        del blob
        log.append(1, 3, b"abc" * 1000)
        assert bytes(log.payload_at(3)[:3]) == b"abc"
        assert len(log.payload_at(1)) == len(log.payload_at(2)) == plen
        # where the low 32 bits of the batch's end offset point (0x10000000): still zeroes
        assert bytes(log.payload_at(1)[0x10000000:0x10000000 + 3000]) == bytes(3000)
        assert bytes(log.payload_at(2)[:16]) == bytes(16) and log.type_at(2) == 2
        print("ok")
    """)
