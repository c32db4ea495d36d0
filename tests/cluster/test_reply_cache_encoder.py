"""The compiled reply-cache encoder of module snapshots against its Python reference.

``aeronpy._applypath.encode_reply_cache`` writes a session's reply cache into the snapshot.
It must write exactly what ``reference`` below (the Python it replaced) writes, for every shape a cache
takes: ``Reply`` objects (one reply to a seq), lists of ``(correlation_id, payload)`` pairs
(several replies, or any entry after a snapshot restore), payloads as bytes, bytearray or
memoryview, empty payloads. A whole module state still round-trips through the decoder.
Negative controls: a cache whose payload's ``len()`` is not its size in bytes is refused
rather than written past the output, and the comparison catches a reference that differs by
one field.
"""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from aeronpy._applypath import SessionState, encode_reply_cache

_U32, _PAIR = struct.Struct("<I"), struct.Struct("<qI")   # snapshot.py's layout


def reference(replies: dict) -> bytes:
    """The Python encoder encode_reply_cache replaced: ``u32 cached``, per seq ``i64 seq | u32
    replies``, per reply ``i64 correlation_id | u32 length | bytes``."""
    out = [_U32.pack(len(replies))]
    for seq, cached in replies.items():
        out.append(_PAIR.pack(seq, len(cached)))
        for correlation_id, payload in cached:
            out.append(_PAIR.pack(correlation_id, len(payload)))
            out.append(payload)
    return b"".join(out)


_payloads = st.binary(max_size=300)
_replies = st.lists(st.tuples(st.integers(-2**63, 2**63 - 1), _payloads), min_size=1, max_size=4)


def _session(cache: dict) -> SessionState:
    """A session whose cache went through record_reply (Reply objects, lists for several)."""
    s = SessionState(7, "127.0.0.1:1", 1, 2, 3)
    for seq, replies in cache.items():
        for correlation_id, payload in replies:
            s.record_reply(seq, correlation_id, payload, 10_000, 100)
    return s


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(1, 2**62), _replies, max_size=30))
def test_recorded_caches_encode_as_the_reference_does(cache):
    s = _session(cache)
    assert encode_reply_cache(s.replies) == reference(s.replies)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(1, 2**62),
                       st.lists(st.tuples(st.integers(-2**63, 2**63 - 1), _payloads,
                                          st.sampled_from(["bytes", "bytearray", "memoryview"])),
                                max_size=4),
                       max_size=20))
def test_restored_caches_of_lists_and_any_buffer_encode_as_the_reference_does(cache):
    kinds = {"bytes": bytes, "bytearray": bytearray, "memoryview": memoryview}
    replies = {seq: [(cid, kinds[kind](payload)) for cid, payload, kind in items]
               for seq, items in cache.items()}
    assert encode_reply_cache(replies) == reference(replies)


def test_the_shapes_a_cache_takes_side_by_side():
    s = _session({5: [(50, b"one")], 6: [(60, b"a"), (61, b"")], 7: [(70, b"")]})
    assert type(s.replies[5]).__name__ == "Reply" and isinstance(s.replies[6], list)
    blob = encode_reply_cache(s.replies)
    assert blob == reference(s.replies)
    assert blob[:4] == struct.pack("<I", 3)
    assert encode_reply_cache({}) == struct.pack("<I", 0)


def test_a_module_state_round_trips_through_the_decoder():
    from aeronpy.testing.inproc import inproc_cluster
    with inproc_cluster() as (nodes, pump, client):
        got = []
        for i in range(40):
            assert client.offer(b"req-%d" % i) > 0
        for _ in range(2000):
            pump()
            client.poll_egress(lambda cid, payload: got.append(bytes(payload)))
            if len(got) == 40:
                break
        assert len(got) == 40
        leader = next(n for n in nodes if n.role.name == "LEADER")
        module = leader.module
        data = module.snapshot_state()
        before = {s.session_id: dict(s.replies) for s in module.sessions}
        assert any(before.values())                       # there is a cache to encode
        module.restore_state(data)
        after = {s.session_id: s.replies for s in module.sessions}
        assert {k: {seq: list(v) for seq, v in r.items()} for k, r in after.items()} == \
            {k: {seq: list(v) for seq, v in r.items()} for k, r in before.items()}
        assert module.snapshot_state() == data            # and encodes the same again


# ------------------------------------------------------------------ negative controls
def test_a_payload_whose_len_is_not_its_size_is_refused():
    wide = memoryview(bytearray(16)).cast("I")             # len() 4, 16 bytes
    with pytest.raises(RuntimeError, match="len"):
        encode_reply_cache({1: [(9, wide)]})


def test_negative_control_the_comparison_sees_one_field_changed():
    s = _session({5: [(50, b"one")], 6: [(60, b"a"), (61, b"b")]})

    def reference_with_u16_counts(replies):
        out = [struct.pack("<I", len(replies))]
        for seq, cached in replies.items():
            out.append(struct.pack("<qH", seq, len(cached)))
            for correlation_id, payload in cached:
                out.append(struct.pack("<qI", correlation_id, len(payload)) + bytes(payload))
        return b"".join(out)
    assert encode_reply_cache(s.replies) != reference_with_u16_counts(s.replies)
