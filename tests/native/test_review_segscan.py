"""Review: _segscan argument checks that guard raw C loops (each probe runs in a subprocess, so
a heap overflow or out-of-bounds read shows up as a failed test rather than a dead pytest)."""
import os
import struct
import subprocess
import sys
import textwrap

import pytest

from aeronpy import _segscan

from .logmodel import pack_entries

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_probe(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_encode_records_rejects_a_count_whose_size_overflows():
    # count * 16 and count * 8 wrap around: the output buffers were sized for 1 entry and the
    # loop wrote 50 records (heap overflow: "double free or corruption" / SIGSEGV).
    r = run_probe("""
        from aeronpy import _segscan
        from tests.native.logmodel import pack_entries
        blob = pack_entries([(1, 0, b"x" * 100)] * 50)
        try:
            _segscan.encode_records(blob, 2**61 + 1, 1)
        except ValueError:
            print("refused")
    """)
    assert r.returncode == 0 and r.stdout.strip() == "refused", (r.returncode, r.stdout, r.stderr[-500:])


def test_rebase_ends_rejects_a_range_whose_size_overflows():
    r = run_probe("""
        from aeronpy import _segscan
        try:
            _segscan.rebase_ends(b"\\0" * 8, 0, 2**61, 5)
        except ValueError:
            print("refused")
    """)
    assert r.returncode == 0 and r.stdout.strip() == "refused", (r.returncode, r.stdout, r.stderr[-500:])


def test_last_nonzero_never_reads_before_the_buffer():
    # a negative start walked p[-1], p[-2], ... (out of bounds) and returned a negative offset
    buf = bytearray(64)
    buf[0] = 1
    view = memoryview(buf)[32:]
    with pytest.raises(ValueError):
        _segscan.last_nonzero(view, -40)
    assert _segscan.last_nonzero(bytes(4), 0) == 0
    assert _segscan.last_nonzero(b"\0\1\0", 0) == 2
    assert _segscan.last_nonzero(b"\0\1\0", 5) == 5   # past the end: start (unchanged)


# ---------------------------------------------------------------- corrupt segments
def _records(entries, first):
    records, ends, _ = _segscan.encode_records(pack_entries(entries), len(entries), first)
    return bytearray(records), struct.unpack(f"={len(entries)}q", ends)


def _fix_crc(buf, at, flen):
    struct.pack_into("<I", buf, at + 28, _segscan.record_crc32c(bytes(buf[at:at + flen])))


ENTRIES = [(1, 3, b"a" * 10), (1, 4, b""), (2, 5, b"c" * 40), (3, 6, b"d" * 7)]


def test_corrupt_segments_are_refused_at_the_damaged_record():
    good, ends = _records(ENTRIES, 10)
    st = _segscan.scan_records(good, 0, len(good), 10, 0)
    assert st[:4] == (_segscan.SCAN_END, len(good), 4, 3)
    second = ends[0]
    # a length that lies (longer, still inside the buffer): the CRC no longer matches
    for delta in (1, 4, 16):
        buf = bytearray(good)
        struct.pack_into("<I", buf, second, 32 + delta)
        st = _segscan.scan_records(buf, 0, len(buf), 10, 0)
        assert st[:3] == (_segscan.SCAN_BAD_CRC, second, 1)
    # the CRC of a different record
    buf = bytearray(good)
    buf[second + 28:second + 32] = good[28:32]
    assert _segscan.scan_records(buf, 0, len(buf), 10, 0)[:3] == (_segscan.SCAN_BAD_CRC, second, 1)
    # an index gap (with a valid CRC)
    buf = bytearray(good)
    struct.pack_into("<q", buf, second + 16, 12)
    _fix_crc(buf, second, 32)
    assert _segscan.scan_records(buf, 0, len(buf), 10, 0)[:3] == (_segscan.SCAN_BAD_INDEX, second, 1)
    # a term that decreases (valid CRC), and one below min_term
    buf = bytearray(good)
    struct.pack_into("<q", buf, ends[1] + 8, 0)
    _fix_crc(buf, ends[1], ends[2] - ends[1])
    assert _segscan.scan_records(buf, 0, len(buf), 10, 0)[:3] == (_segscan.SCAN_BAD_TERM, ends[1], 2)
    assert _segscan.scan_records(good, 0, len(good), 10, 2)[:3] == (_segscan.SCAN_BAD_TERM, 0, 0)
    # a record straddling the file end (every cut inside the last record)
    for cut in range(ends[2] + 1, ends[3]):
        st = _segscan.scan_records(good[:cut], 0, cut, 10, 0)
        assert st[0] == _segscan.SCAN_SHORT and st[1:3] == (ends[2], 3), cut
    # a record straddling the scan's end inside a longer buffer
    st = _segscan.scan_records(good, 0, ends[3] - 1, 10, 0)
    assert st[:3] == (_segscan.SCAN_SHORT, ends[2], 3)
    # a wild length (up to 4 GiB) and lengths below the header
    for wild in (0xFFFFFFFF, 0x80000000, len(good) + 1):
        buf = bytearray(good)
        struct.pack_into("<I", buf, second, wild)
        assert _segscan.scan_records(buf, 0, len(buf), 10, 0)[:3] == (_segscan.SCAN_SHORT, second, 1)
    for small in range(1, 32):
        buf = bytearray(good)
        struct.pack_into("<I", buf, second, small)
        assert _segscan.scan_records(buf, 0, len(buf), 10, 0)[:3] == (_segscan.SCAN_BAD_LENGTH, second, 1)
    # the packed output of what was accepted round-trips
    st = _segscan.scan_records(good, 0, ends[2], 10, 0)
    from .logmodel import unpack_entries
    assert unpack_entries(bytes(st[4])) == ENTRIES[:3]


def test_encode_records_refuses_a_payload_whose_frame_length_overflows_u32():
    # A packed entry may carry up to 0xFFFFFFFF payload bytes (LogIndex allows it) but a record
    # frame (32-byte header + payload) must fit a u32: frame_length wrapped to a tiny value and
    # the CRC then ran over (size_t)(flen - 32) bytes, far out of bounds. The blob is an
    # anonymous mapping (zero pages, nothing resident); once fixed nothing big is touched.
    r = run_probe("""
        import mmap, struct
        from aeronpy import _segscan
        plen = 0xFFFFFFFF - 8
        blob = mmap.mmap(-1, 16 + plen)
        blob[:16] = struct.pack("<IHHq", plen, 1, 0, 1)
        try:
            _segscan.encode_records(blob, 1, 1)
        except ValueError:
            print("refused")
    """)
    assert r.returncode == 0 and r.stdout.strip() == "refused", (r.returncode, r.stdout, r.stderr[-500:])
