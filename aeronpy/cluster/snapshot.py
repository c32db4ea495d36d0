"""Encoding of the consensus module's replicated state for snapshots.

Layout (little-endian), version 2 (version 1 lacks the trailing flags byte and still loads)::

    b"APCM" u16 version
    i64 cluster_time_ns | i64 applied_index | i64 next_service_message_id | i64 next_timer_seq
    u32 sessions, each:  i64 id | i64 nonce | i64 connect_correlation_id | i64 opened_ns |
                         i64 last_applied_seq | i64 offers | u16 len endpoint |
                         u32 cached, each: i64 seq | u32 replies, each: i64 correlation_id | u32 len bytes
    u32 timers, each:    i32 service_id | i64 correlation_id | i64 deadline_ns | i64 timer_seq
    u32 pending service messages, each: i64 pending_id | i32 service_id | u32 len bytes
    u8 flags (bit 0: suspended -- a snapshot taken while suspended restores suspended)

Decoding is bounds-checked and raises SnapshotFormatError on anything malformed.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from aeronpy._applypath import encode_reply_cache
from aeronpy.cluster.sessions import SessionState

if TYPE_CHECKING:  # pragma: no cover
    from aeronpy.cluster.module import ConsensusModule

MAGIC = b"APCM"
VERSION = 2
_READABLE_VERSIONS = (1, 2)
_FLAG_SUSPENDED = 1

_HEADER = struct.Struct("<4sHqqqq")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_SESSION = struct.Struct("<qqqqqq")
_REPLY = struct.Struct("<qI")
_SEQ_COUNT = struct.Struct("<qI")
_TIMER = struct.Struct("<iqqq")
_PENDING = struct.Struct("<qiI")


class SnapshotFormatError(ValueError):
    """The consensus-module snapshot is malformed or of an unknown version."""


def encode_module_state(module: "ConsensusModule") -> bytes:
    out = [_HEADER.pack(MAGIC, VERSION, module.cluster_time_ns, module.applied_index,
                        module.next_service_message_id, module.timers.next_timer_seq)]
    sessions = list(module.sessions)
    out.append(_U32.pack(len(sessions)))
    for s in sessions:
        endpoint = s.response_endpoint.encode("utf-8")
        out.append(_SESSION.pack(s.session_id, s.client_nonce, s.connect_correlation_id,
                                 s.opened_ns, s.last_applied_seq, s.offers))
        out.append(_U16.pack(len(endpoint)) + endpoint)
        # compiled; its Python reference: tests/cluster/test_reply_cache_encoder.py
        out.append(encode_reply_cache(s.replies))
    timers = module.timers.items()
    out.append(_U32.pack(len(timers)))
    for service_id, correlation_id, deadline_ns, timer_seq in timers:
        out.append(_TIMER.pack(service_id, correlation_id, deadline_ns, timer_seq))
    out.append(_U32.pack(len(module.pending_service_messages)))
    for pending_id, (service_id, payload) in module.pending_service_messages.items():
        out.append(_PENDING.pack(pending_id, service_id, len(payload)))
        out.append(payload)
    out.append(bytes((_FLAG_SUSPENDED if getattr(module, "suspended", False) else 0,)))
    return b"".join(out)


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, data: bytes):
        self.buf = memoryview(data)
        self.pos = 0

    def unpack(self, st: struct.Struct) -> tuple:
        if self.pos + st.size > len(self.buf):
            raise SnapshotFormatError(f"truncated at byte {self.pos}")
        values = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return values

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise SnapshotFormatError(f"truncated at byte {self.pos} (need {n})")
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data


def decode_module_state(module: "ConsensusModule", data: bytes) -> None:
    r = _Reader(data)
    magic, version, cluster_time_ns, applied_index, next_msg_id, next_timer_seq = r.unpack(_HEADER)
    if magic != MAGIC or version not in _READABLE_VERSIONS:
        raise SnapshotFormatError(f"not a version-{VERSION} consensus module snapshot")
    sessions = []
    for _ in range(r.unpack(_U32)[0]):
        sid, nonce, connect_cid, opened_ns, last_seq, offers = r.unpack(_SESSION)
        try:
            endpoint = r.take(r.unpack(_U16)[0]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SnapshotFormatError(f"session {sid} endpoint is not UTF-8") from exc
        s = SessionState(sid, endpoint, nonce, connect_cid, opened_ns)
        s.last_applied_seq, s.offers = last_seq, offers
        for _ in range(r.unpack(_U32)[0]):
            seq, count = r.unpack(_SEQ_COUNT)
            replies = s.replies[seq] = []
            for _ in range(count):
                correlation_id, n = r.unpack(_REPLY)
                replies.append((correlation_id, r.take(n)))
        sessions.append(s)
    timers = [r.unpack(_TIMER) for _ in range(r.unpack(_U32)[0])]
    pending = {}
    for _ in range(r.unpack(_U32)[0]):
        pending_id, service_id, n = r.unpack(_PENDING)
        pending[pending_id] = (service_id, r.take(n))
    flags = r.take(1)[0] if version >= 2 else 0
    if flags & ~_FLAG_SUSPENDED:
        raise SnapshotFormatError(f"unknown flags {flags:#x}")
    if r.pos != len(r.buf):
        raise SnapshotFormatError(f"{len(r.buf) - r.pos} trailing bytes")
    # all parsed: now replace the module's state in one go
    module.sessions.clear()
    for s in sessions:
        module.sessions.open(s)
    module.timers.restore(timers, next_timer_seq)
    module.pending_service_messages.clear()
    module.pending_service_messages.update(sorted(pending.items()))
    module.next_service_message_id = next_msg_id
    module.cluster_time_ns = cluster_time_ns
    module.applied_index = applied_index
    module.suspended = bool(flags & _FLAG_SUSPENDED)
