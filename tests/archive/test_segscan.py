"""The compiled record codec against a plain-Python statement of the record layout."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aeronpy import _segscan
from aeronpy._crc import crc32c

HDR = struct.Struct("<IHHqqII")


def ref_record(index: int, term: int, etype: int, payload: bytes) -> bytes:
    """docs/archive-format.md, written out by hand."""
    head = struct.pack("<IHHqq", 32 + len(payload), etype, 0, term, index)
    crc = crc32c(payload, crc32c(b"\0\0\0\0", crc32c(head)))  # bytes [0, 28), then the payload
    return head + b"\0\0\0\0" + struct.pack("<I", crc) + payload


def packed(entries) -> bytes:
    return b"".join(struct.pack("<IHHq", len(p), t, 0, term) + p for term, t, p in entries)


entries_st = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 300), st.binary(max_size=200)), max_size=30
).map(lambda es: [(term, t, p) for term, t, p in sorted(es, key=lambda e: e[0])])


@settings(max_examples=200, deadline=None)
@given(entries_st, st.integers(1, 1 << 40))
def test_encode_matches_reference_and_scan_round_trips(entries, first):
    blob = packed(entries)
    records, ends, last_term = _segscan.encode_records(blob, len(entries), first)
    expect = b"".join(ref_record(first + i, term, t, p) for i, (term, t, p) in enumerate(entries))
    assert bytes(records) == expect
    offs = struct.unpack(f"{len(entries)}q", ends)
    assert list(offs) == [sum(32 + len(p) for _, _, p in entries[:i + 1]) for i in range(len(entries))]
    assert last_term == (entries[-1][0] if entries else 0)
    status, pos, count, term, back, scan_ends = _segscan.scan_records(records, 0, len(records), first, 0)
    assert (status, pos, count) == (_segscan.SCAN_END, len(records), len(entries))
    assert bytes(back) == blob and scan_ends == ends


def test_scan_stops_at_each_kind_of_damage():
    recs = bytearray(b"".join(ref_record(5 + i, 1, 16, bytes([i]) * 10) for i in range(4)))
    size = 42
    ok = _segscan.scan_records(recs, 0, len(recs), 5, 0)
    assert ok[:3] == (_segscan.SCAN_END, 4 * size, 4)

    def scan(buf, expected=5, min_term=0):
        return _segscan.scan_records(buf, 0, len(buf), expected, min_term)[:3]

    flipped = bytearray(recs)
    flipped[2 * size + 35] ^= 0x01              # payload bit of the third record
    assert scan(flipped) == (_segscan.SCAN_BAD_CRC, 2 * size, 2)
    assert scan(recs[:3 * size + 20]) == (_segscan.SCAN_SHORT, 3 * size, 3)   # torn last record
    assert scan(recs[:3 * size + 2]) == (_segscan.SCAN_SHORT, 3 * size, 3)
    assert scan(recs + bytes(64)) == (_segscan.SCAN_END, 4 * size, 4)          # zero fill
    assert scan(recs, expected=6) == (_segscan.SCAN_BAD_INDEX, 0, 0)
    assert scan(recs, min_term=2) == (_segscan.SCAN_BAD_TERM, 0, 0)
    bad_len = bytearray(recs)
    bad_len[size:size + 4] = struct.pack("<I", 7)
    assert scan(bad_len) == (_segscan.SCAN_BAD_LENGTH, size, 1)
    reserved = bytearray(ref_record(5, 1, 16, b"x"))
    reserved[24] = 1
    reserved[28:32] = struct.pack("<I", _segscan.record_crc32c(reserved))
    assert scan(reserved) == (_segscan.SCAN_BAD_FIELD, 0, 0)
    assert _segscan.scan_records(recs, 0, len(recs), 5, 0, 2)[:3] == (_segscan.SCAN_LIMIT, 2 * size, 2)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="malformed packed blob"):
        _segscan.encode_records(b"\x05\0\0\0" + bytes(12) + b"ab", 1, 1)
    with pytest.raises(ValueError, match="malformed packed blob"):
        _segscan.encode_records(packed([(1, 1, b"ab")]) + b"extra", 1, 1)
    with pytest.raises(ValueError):
        _segscan.encode_records(b"", -1, 1)
    with pytest.raises(ValueError, match="bad scan range"):
        _segscan.scan_records(b"abc", 0, 10, 1, 0)
    with pytest.raises(ValueError):
        _segscan.record_crc32c(b"short")


def test_last_nonzero_and_rebase_ends():
    assert _segscan.last_nonzero(b"\0ab\0\0", 0) == 3
    assert _segscan.last_nonzero(bytes(10), 4) == 4
    ends = struct.pack("3q", 10, 20, 30)
    assert struct.unpack("2q", _segscan.rebase_ends(ends, 1, 3, 100)) == (120, 130)
    with pytest.raises(ValueError):
        _segscan.rebase_ends(ends, 2, 4, 0)
