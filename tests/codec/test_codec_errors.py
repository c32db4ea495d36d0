"""Each kind of malformed input gets DecodeError with a message naming the problem; each kind of
bad value on encode gets ValueError or TypeError and writes nothing."""
import struct

import pytest

from aeronpy import _codec as codec
from aeronpy._codec import DecodeError
from aeronpy.cluster.protocol import NewLeaderEvent, SessionConnect, SessionEvent, SessionMessage
from aeronpy.core.messages import AppendEntries, AppendResponse, InstallSnapshot, TimeoutNow, Vote

from codec_cases import reference_pack

ENTRIES = reference_pack([(1, 16, b"abc"), (1, 17, b"")])
GOOD_APPEND = codec.encode(AppendEntries(2, 10, 1, 9, ENTRIES, 2))
GOOD_CONNECT = codec.encode(SessionConnect(7, 8, "127.0.0.1:9000", b"secret", 1))


def test_decode_error_is_a_value_error_exported_by_the_codec():
    assert issubclass(DecodeError, ValueError)
    assert codec.DecodeError is DecodeError


@pytest.mark.parametrize("wire, needle", [
    (b"", "shorter than its 4-byte header"),
    (b"\x08\x00", "shorter than its 4-byte header"),
    (struct.pack("<HHq", 0, 1, 5), "unknown message type 0"),
    (struct.pack("<HHq", 11, 1, 5), "unknown message type 11"),
    (struct.pack("<HHq", 0xFFFF, 1, 5), "unknown message type 65535"),
    (struct.pack("<HHq", 8, 2, 5), "unsupported version 2"),
    (struct.pack("<HHq", 8, 0, 5), "unsupported version 0"),
    (struct.pack("<HH", 8, 1) + b"\x00" * 7, "needs 8 bytes"),
    (struct.pack("<HHqq", 8, 1, 5, 0), "8 trailing bytes"),
    (struct.pack("<HHqBB", 3, 1, 5, 2, 0), "Vote.granted = 2 is not a bool"),
    (struct.pack("<HHqBB", 3, 1, 5, 1, 255), "Vote.pre = 255 is not a bool"),
    (GOOD_CONNECT[:-1], "SessionConnect.credentials: length field says 6 bytes"),
    (GOOD_CONNECT + b"\x00", "1 trailing bytes"),
    (GOOD_APPEND[:40] + struct.pack("<I", 0xFFFFFFFF) + GOOD_APPEND[44:], "length field says 4294967295"),
    (GOOD_APPEND[:36] + struct.pack("<I", 3) + GOOD_APPEND[40:], "fewer entries than count"),
    (GOOD_APPEND[:36] + struct.pack("<I", 1) + GOOD_APPEND[40:], "trailing bytes after the last entry"),
    # entry terms as no leader's log has them: a corrupt or buggy peer, dropped and counted
    # (appending them would fail inside the log and stop the node)
    (codec.encode(AppendEntries(2, 10, 1, 9, reference_pack([(2, 16, b"a"), (1, 16, b"b")]), 2)),
     "entry 1 has term 1, outside [2, 2]"),
    (codec.encode(AppendEntries(2, 10, 2, 9, ENTRIES, 2)), "entry 0 has term 1, outside [2, 2]"),
    (codec.encode(AppendEntries(2, 10, 1, 9, reference_pack([(1, 16, b"a"), (3, 16, b"b")]), 2)),
     "entry 1 has term 3, outside [1, 2]"),
    (GOOD_APPEND[:44 + 6] + b"\x01" + GOOD_APPEND[44 + 7:], "entry flags not 0"),
    (GOOD_APPEND[:44] + struct.pack("<I", 99) + GOOD_APPEND[48:], "payload runs past the end"),
])
def test_malformed_input_raises_decode_error(wire, needle):
    with pytest.raises(DecodeError) as info:
        codec.decode(wire)
    assert needle in str(info.value)
    with pytest.raises(DecodeError):
        codec._decode_generic(wire)


@pytest.mark.parametrize("bad_utf8", [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"a\x80b"])
def test_invalid_utf8_raises_decode_error(bad_utf8):
    wire = struct.pack("<HHqqiiqH", 33, 1, 1, 2, 0, 1, 3, len(bad_utf8)) + bad_utf8
    with pytest.raises(DecodeError, match="SessionEvent.detail: invalid UTF-8"):
        codec.decode(wire)


def test_validate_packed_rejects_each_defect_and_counts_good_blobs():
    assert codec.validate_packed(ENTRIES, 2) == 2 and codec.validate_packed(ENTRIES) == 2
    assert codec.validate_packed(b"", 0) == 0
    for blob, count in [(ENTRIES, 1), (ENTRIES, 3), (ENTRIES[:-1], 2), (ENTRIES[:15], -1),
                        (ENTRIES + b"\x00", -1), (b"\x00" * 15, 1)]:
        with pytest.raises(DecodeError):
            codec.validate_packed(blob, count)
    with pytest.raises(DecodeError):
        codec.iter_packed(ENTRIES + b"\x00" * 3)


def test_huge_count_with_tiny_blob_fails_fast():
    wire = GOOD_APPEND[:36] + struct.pack("<I", 0xFFFFFFFF) + GOOD_APPEND[40:]
    with pytest.raises(DecodeError, match="fewer entries than count"):
        codec.decode(wire)


@pytest.mark.parametrize("msg, error, needle", [
    (TimeoutNow(2 ** 63), ValueError, "TimeoutNow.term"),
    (TimeoutNow(-(2 ** 63) - 1), ValueError, "TimeoutNow.term"),
    (TimeoutNow(1.5), TypeError, ""),
    (TimeoutNow("1"), TypeError, ""),
    (SessionEvent(1, 2, 2 ** 31, 0, 0), ValueError, "SessionEvent.code"),
    (Vote(1, 2), ValueError, "Vote.granted = 2 is not a bool"),
    (Vote(1, None), TypeError, "Vote.granted must be a bool"),
    (AppendResponse(1, "yes", 0), TypeError, "AppendResponse.success"),
    (AppendEntries(1, 0, 0, 0, ENTRIES, 3), ValueError, "does not match count"),
    (AppendEntries(1, 0, 0, 0, ENTRIES, -1), ValueError, "AppendEntries.count"),
    (AppendEntries(1, 0, 0, 0, b"\x00" * 5, 0), ValueError, "does not match count"),
    (InstallSnapshot(1, 2, 3, 4, 5, True, "text"), TypeError, "InstallSnapshot.data must be bytes-like"),
    (SessionConnect(1, 2, b"host:1"), TypeError, "SessionConnect.response_endpoint must be str"),
    (NewLeaderEvent(1, 2, 0, "x" * 65536), ValueError, "exceed the u16 length"),
    (NewLeaderEvent(1, 2, 0, "\ud800"), UnicodeEncodeError, ""),
    (SessionMessage(1, 2, 3, 0, 12), TypeError, ""),
])
def test_bad_field_values_are_rejected_on_encode(msg, error, needle):
    for operation in (codec.encode, codec.message_size, lambda m: codec.encode_into(m, bytearray(200_000))):
        with pytest.raises(error) as info:
            operation(msg)
        assert needle in str(info.value)


def test_unset_slot_and_non_messages_are_rejected():
    msg = TimeoutNow(1)
    del msg.term
    with pytest.raises(AttributeError, match="TimeoutNow.term is not set"):
        codec.encode(msg)
    for thing in (object(), 5, TimeoutNow, None):
        with pytest.raises(TypeError, match="not an aeronpy message"):
            codec.encode(thing)

    class Impostor:
        TYPE_ID = 8
        term = 1
    with pytest.raises(TypeError, match="not an aeronpy message"):
        codec.encode(Impostor())


def test_encode_into_too_small_or_bad_offset_writes_nothing():
    msg = SessionMessage(1, 2, 3, 0, b"payload")
    size = codec.message_size(msg)
    for length, offset in [(size - 1, 0), (size, 1), (size, -1), (size, size + 1)]:
        buf = bytearray(b"\xee" * length)
        with pytest.raises(ValueError, match="does not fit"):
            codec.encode_into(msg, buf, offset)
        assert buf == b"\xee" * length
    with pytest.raises(BufferError):
        codec.encode_into(msg, b"\x00" * 100, 0)     # read-only buffer


def test_batch_helpers_reject_bad_entries():
    with pytest.raises(ValueError, match="entry type"):
        codec.pack_entries([(1, 70000, b"")], 100)
    with pytest.raises(ValueError, match="entry term"):
        codec.pack_entries([(2 ** 63, 1, b"")], 100)
    with pytest.raises(TypeError, match="bytes-like"):
        codec.pack_entries([(1, 1, "text")], 100)
    with pytest.raises(ValueError):
        codec.pack_entries([(1, 1)], 100)
    with pytest.raises(ValueError, match="negative"):
        codec.encode_append_entries(1, 0, 0, 0, [], 1408, start=-1)
    assert codec.pack_entries([], 100) == (b"", 0)
    assert codec.pack_entries([(1, 1, b"")], 100, start=5) == (b"", 0)
    # one entry larger than the budget still goes (the frame layer fragments it)
    blob, count = codec.pack_entries([(1, 1, b"x" * 5000), (1, 1, b"y")], 1408)
    assert count == 1 and len(blob) == 5016


def test_a_sequence_mutated_by_a_term_conversion_is_packed_safely():
    """Python code run while packing (a term's __index__) may change the list; packing sees
    each entry as it is when reached and never reads a freed one."""
    entries = []

    class SneakyTerm:
        def __index__(self):
            entries.clear()
            return 1
    entries[:] = [(SneakyTerm(), 1, b"a"), (1, 1, b"b"), (1, 1, b"c")]
    assert codec.pack_entries(entries, 1000) == (reference_pack([(1, 1, b"a")]), 1)


def test_packing_is_reentrant():
    """A pack started from inside another one (through __index__) gets its own buffer."""
    inner = []

    class NestingTerm:
        def __index__(self):
            inner.append(codec.pack_entries([(9, 9, b"inner" * 100)], 10_000))
            return 2
    blob, count = codec.pack_entries([(1, 1, b"x" * 50), (NestingTerm(), 1, b"y" * 70)], 10_000)
    assert (blob, count) == (reference_pack([(1, 1, b"x" * 50), (2, 1, b"y" * 70)]), 2)
    assert inner == [(reference_pack([(9, 9, b"inner" * 100)]), 1)]
