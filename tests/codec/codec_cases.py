"""Shared test material for the codec tests: hypothesis strategies for every message type, and
an independent struct-based reference encoder written from docs/wire-format.md."""
from __future__ import annotations

import struct

from hypothesis import strategies as st

from aeronpy.cluster import protocol
from aeronpy.core import messages

ALL_CLASSES = messages.CONSENSUS_MESSAGES + protocol.CLIENT_MESSAGES

I64_MIN, I64_MAX = -(2 ** 63), 2 ** 63 - 1
I32_MIN, I32_MAX = -(2 ** 31), 2 ** 31 - 1

# The wire kinds of every field, written out here independently of the codec's own table.
FIELD_KINDS = {
    "CanvassPosition": "i64 i64 i64 i64 i64",
    "RequestVote": "i64 i64 i64 bool i64",
    "Vote": "i64 bool bool",
    "AppendEntries": "i64 i64 i64 i64 entries u32",
    "AppendResponse": "i64 bool i64 i64 i64",
    "Heartbeat": "i64 i64",
    "HeartbeatResponse": "i64 i64",
    "TimeoutNow": "i64",
    "InstallSnapshot": "i64 i64 i64 i64 i64 bool bytes",
    "InstallSnapshotResponse": "i64 i64 i64 bool",
    "SessionConnect": "i64 i64 str bytes i32",
    "SessionEvent": "i64 i64 i32 i32 i64 str",
    "SessionMessage": "i64 i64 i64 i32 bytes",
    "SessionKeepAlive": "i64 i64",
    "SessionClose": "i64 i64",
    "NewLeaderEvent": "i64 i64 i32 str",
    "EgressMessage": "i64 i64 i64 bytes",
    "SessionAck": "i64 i64 i64",
    "SessionWindow": "i64 i64 i64",
    "AdminRequest": "i64 i32 bytes",
    "AdminResponse": "i64 i32 i32 bytes",
}
FIXED_FORMATS = {"i64": "q", "i32": "i", "u32": "I", "bool": "B"}


def kinds_of(cls) -> list[str]:
    return FIELD_KINDS[cls.__name__].split()


def reference_encode(msg) -> bytes:
    """Encode with struct, following the documented layout rule: header, fixed fields in field
    order, then variable parts in field order."""
    kinds = kinds_of(type(msg))
    values = msg.astuple()
    fixed_fmt = "<HH" + "".join(FIXED_FORMATS[k] for k in kinds if k in FIXED_FORMATS)
    fixed = [int(v) for v, k in zip(values, kinds) if k in FIXED_FORMATS]
    out = bytearray(struct.pack(fixed_fmt, type(msg).TYPE_ID, 1, *fixed))
    for value, kind in zip(values, kinds):
        if kind == "str":
            data = value.encode("utf-8")
            out += struct.pack("<H", len(data)) + data
        elif kind in ("bytes", "entries"):
            out += struct.pack("<I", len(value)) + bytes(value)
    return bytes(out)


def reference_pack(entries) -> bytes:
    """Packed-entry blob, one entry at a time with struct (interfaces.md 1.2)."""
    return b"".join(struct.pack("<IHHq", len(p), t, 0, term) + bytes(p) for term, t, p in entries)


# ---- hypothesis strategies ------------------------------------------------------------------

i64s = st.one_of(st.sampled_from([I64_MIN, I64_MIN + 1, -1, 0, 1, I64_MAX - 1, I64_MAX]),
                 st.integers(I64_MIN, I64_MAX))
i32s = st.one_of(st.sampled_from([I32_MIN, -1, 0, 1, I32_MAX]), st.integers(I32_MIN, I32_MAX))
bools = st.booleans()
# Strings: any Unicode scalar values (hypothesis leaves out lone surrogates), including astral.
texts = st.one_of(st.text(max_size=40), st.just(""), st.text(alphabet="é€😀", min_size=1, max_size=8),
                  st.integers(16000, 16383).map(lambda n: "😀" * n))   # close to the u16 limit
# Bytes: empty, small, and large (built, not drawn byte by byte, to keep hypothesis fast).
blobs = st.one_of(st.binary(max_size=80), st.just(b""),
                  st.integers(65536, 200_000).map(lambda n: bytes(range(256)) * (n // 256)))
entry_lists = st.lists(st.tuples(i64s, st.integers(0, 0xFFFF), st.binary(max_size=64)), max_size=40)

_FIELD_STRATEGIES = {"i64": i64s, "i32": i32s, "bool": bools, "str": texts, "bytes": blobs}


@st.composite
def append_entries_parts(draw):
    """(entries, term, prev_term) as a leader's log gives them, which decode insists on: the
    entries' terms never decrease, none below prev_term, none above the message's term."""
    drawn = draw(entry_lists)
    terms = sorted(t for t, _, _ in drawn)
    entries = [(term, ty, p) for term, (_, ty, p) in zip(terms, drawn)]
    if not entries:
        return entries, draw(i64s), draw(i64s)
    edge = st.sampled_from
    prev_term = draw(st.one_of(edge([I64_MIN, terms[0]]), st.integers(I64_MIN, terms[0])))
    term = draw(st.one_of(edge([terms[-1], I64_MAX]), st.integers(terms[-1], I64_MAX)))
    return entries, term, prev_term


@st.composite
def append_entries(draw):
    entries, term, prev_term = draw(append_entries_parts())
    return messages.AppendEntries(term, draw(i64s), prev_term, draw(i64s),
                                  reference_pack(entries), len(entries))


def message_strategy(cls):
    if cls is messages.AppendEntries:
        return append_entries()
    return st.builds(cls, *[_FIELD_STRATEGIES[k] for k in kinds_of(cls)])


any_message = st.one_of([message_strategy(cls) for cls in ALL_CLASSES])
