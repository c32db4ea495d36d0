"""Round-trip properties of the message codecs for every message type and for entry batches."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aeronpy import _codec as codec
from aeronpy.cluster.protocol import EgressMessage, SessionMessage
from aeronpy.core.messages import AppendEntries

from codec_cases import (I64_MAX, I64_MIN, ALL_CLASSES, append_entries_parts, blobs, entry_lists, i32s, i64s, kinds_of, message_strategy,
                         reference_encode, reference_pack)


def test_every_message_class_has_a_layout_matching_the_documented_kinds():
    assert set(codec.message_classes().values()) == set(ALL_CLASSES)
    for cls in ALL_CLASSES:
        rows = codec.layout(cls)
        assert tuple(name for name, _, _ in rows) == cls.FIELDS
        assert [kind for _, kind, _ in rows] == kinds_of(cls)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip(cls, data):
    msg = data.draw(message_strategy(cls))
    wire = codec.encode(msg)
    assert wire == reference_encode(msg)                  # independent struct encoder agrees
    assert codec.message_size(msg) == len(wire)
    assert codec.message_type(wire) == cls.TYPE_ID
    for form in (wire, bytearray(wire), memoryview(wire)):
        back = codec.decode(form)
        assert type(back) is cls and back == msg
    assert codec._decode_generic(wire) == msg             # views and layout table agree


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=20, deadline=None)
@given(data=st.data(), offset=st.integers(0, 9), slack=st.integers(0, 5))
def test_encode_into_writes_exactly_the_encoding_at_the_offset(cls, data, offset, slack):
    msg = data.draw(message_strategy(cls))
    wire = codec.encode(msg)
    buf = bytearray(b"\xaa" * (offset + len(wire) + slack))
    assert codec.encode_into(msg, buf, offset) == len(wire)
    assert buf[offset:offset + len(wire)] == wire
    assert buf[:offset] == b"\xaa" * offset and buf[offset + len(wire):] == b"\xaa" * slack


@settings(max_examples=50, deadline=None)
@given(parts=append_entries_parts(), prev=i64s, commit=i64s)
def test_append_entries_batch_round_trip(parts, prev, commit):
    entries, term, prev_term = parts
    blob, count = codec.pack_entries(entries, max_bytes=1 << 30)
    assert (blob, count) == (reference_pack(entries), len(entries))
    msg = AppendEntries(term, prev, prev_term, commit, blob, count)
    back = codec.decode(codec.encode(msg))
    assert back == msg
    assert codec.validate_packed(back.entries, back.count) == len(entries)
    assert [(t, ty, bytes(p)) for t, ty, p in codec.iter_packed(back.entries)] == entries
    one_call, n = codec.encode_append_entries(term, prev, prev_term, commit, entries, max_bytes=1 << 30)
    assert (one_call, n) == (codec.encode(msg), len(entries))


@settings(max_examples=50, deadline=None)
@given(entries=entry_lists, term=i64s, commit=i64s, offset=st.integers(0, 7))
def test_header_into_plus_entries_in_place_equals_encode(entries, term, commit, offset):
    blob = reference_pack(entries)
    buf = bytearray(offset + 44 + len(blob))
    buf[offset + 44:] = blob
    assert codec.encode_append_entries_header_into(buf, offset, term, 5, 4, commit, len(entries), len(blob)) == 44
    assert bytes(buf[offset:]) == codec.encode(AppendEntries(term, 5, 4, commit, blob, len(entries)))
    with pytest.raises(ValueError, match="does not fit"):
        codec.encode_append_entries_header_into(buf, offset + 1, term, 5, 4, commit, len(entries), len(blob))


@settings(max_examples=80, deadline=None)
@given(entries=entry_lists, budget=st.integers(0, 1500), start=st.integers(0, 45))
def test_batch_packs_the_longest_prefix_that_fits_but_at_least_one(entries, budget, start):
    terms = sorted(t for t, _, _ in entries)        # decode wants them as a leader's log has them
    entries = [(term, ty, p) for term, (_, ty, p) in zip(terms, entries)]
    sizes = [16 + len(p) for _, _, p in entries[start:]]
    expected, used = 0, 0
    for size in sizes:
        if expected and used + size > budget:
            break
        expected, used = expected + 1, used + size
    blob, count = codec.pack_entries(entries, budget, start=start)
    assert count == expected and blob == reference_pack(entries[start:start + count])
    message, count2 = codec.encode_append_entries(I64_MAX, 6, I64_MIN, 8, entries, max_bytes=budget + 44,
                                                  start=start)
    assert count2 == expected
    assert codec.decode(message) == AppendEntries(I64_MAX, 6, I64_MIN, 8, blob, count)


@settings(max_examples=100, deadline=None)
@given(session_id=i64s, seq=i64s, correlation_id=i64s, service_id=i32s, payload=blobs)
def test_one_call_session_message_encoder_matches_encode(session_id, seq, correlation_id, service_id, payload):
    msg = SessionMessage(session_id, seq, correlation_id, service_id, payload)
    assert codec.encode_session_message(session_id, seq, correlation_id, service_id, payload) == codec.encode(msg)
    assert codec.encode_session_message(session_id, seq, correlation_id, service_id,
                                        memoryview(payload)) == codec.encode(msg)


@settings(max_examples=100, deadline=None)
@given(session_id=i64s, correlation_id=i64s, ack_seq=i64s, payload=blobs)
def test_one_call_egress_message_encoder_matches_encode(session_id, correlation_id, ack_seq, payload):
    msg = EgressMessage(session_id, correlation_id, ack_seq, payload)
    assert codec.encode_egress_message(session_id, correlation_id, ack_seq, bytearray(payload)) == codec.encode(msg)


def test_bytes_like_fields_are_accepted_and_come_back_as_bytes():
    payload = bytearray(b"order:42")
    msg = SessionMessage(1, 2, 3, 0, memoryview(payload))
    back = codec.decode(codec.encode(msg))
    assert back.payload == b"order:42" and type(back.payload) is bytes


def test_iter_packed_payload_views_are_read_only_slices_of_the_blob():
    blob = bytearray(reference_pack([(3, 17, b"abc"), (4, 18, b"")]))
    (t1, ty1, p1), (t2, ty2, p2) = list(codec.iter_packed(blob))
    assert (t1, ty1, bytes(p1), t2, ty2, bytes(p2)) == (3, 17, b"abc", 4, 18, b"")
    assert p1.readonly
    with pytest.raises(TypeError):
        p1[0] = 0
