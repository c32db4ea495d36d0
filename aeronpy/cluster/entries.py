"""Payload encodings of the cluster layer's log entries (entry types 16 and up).

Every entry starts with the leader's clock when it was proposed (``timestamp_ns``): that is
*cluster time*, the only time services ever see. All encodings are little-endian fixed
layouts built from precompiled ``struct.Struct`` objects, and all of them live in this one
module so they can move to Cython without touching the rest of the layer.

Layouts (after the common ``i64 timestamp_ns``):

=================  =========================================================================
SESSION_OPEN       i64 correlation_id | i64 client_nonce | u16 len | response_endpoint utf-8
SESSION_CLOSE      i64 session_id | i32 reason (aeronpy.CloseReason)
SESSION_MESSAGE    i64 session_id | i64 seq | i64 correlation_id | i32 service_id | payload...
TIMER_FIRE         i32 service_id | i64 correlation_id | i64 timer_seq
SERVICE_MESSAGE    i32 service_id | i64 pending_id | payload...
CLUSTER_ACTION     i32 action | i64 argument [| u32 checksum: ACTION_STATE_DIGEST only]
=================  =========================================================================

A session id is the log index of its SESSION_OPEN entry: unique forever, and known to every
member without any counter to agree on.

A SESSION_MESSAGE whose service_id is ``REJECTED_MESSAGE_SERVICE_ID`` (empty payload) stands
for a message the leader refused (too large): it consumes the message's seq, so the client's
later messages are not stuck behind it, and reaches no service.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

# Entry types 0..15 belong to the consensus core.
SESSION_OPEN = 16
SESSION_CLOSE = 17
SESSION_MESSAGE = 18
TIMER_FIRE = 19
SERVICE_MESSAGE = 20
CLUSTER_ACTION = 21
FIRST_CLUSTER_ENTRY_TYPE = 16

REJECTED_MESSAGE_SERVICE_ID = -1     # SESSION_MESSAGE placeholder for a refused message

ENTRY_TYPE_NAMES = {
    SESSION_OPEN: "SESSION_OPEN", SESSION_CLOSE: "SESSION_CLOSE",
    SESSION_MESSAGE: "SESSION_MESSAGE", TIMER_FIRE: "TIMER_FIRE",
    SERVICE_MESSAGE: "SERVICE_MESSAGE", CLUSTER_ACTION: "CLUSTER_ACTION",
}

# CLUSTER_ACTION.action (used by the snapshot / admin issues)
ACTION_SNAPSHOT = 1
ACTION_SUSPEND = 2
ACTION_RESUME = 3
ACTION_SHUTDOWN = 4
ACTION_ABORT = 5
CLUSTER_ACTIONS = (ACTION_SNAPSHOT, ACTION_SUSPEND, ACTION_RESUME, ACTION_SHUTDOWN, ACTION_ABORT)
# ACTION_SNAPSHOT's argument: 0 an admin request, SNAPSHOT_AUTOMATIC the leader's
# snapshot_log_bytes (older members read every snapshot action alike)
SNAPSHOT_AUTOMATIC = 1
# The leader's checksum of its snapshot at log index ``argument`` (state_digests.py); only a
# leader proposes it, never an admin request. Older members ignore an action they do not know.
ACTION_STATE_DIGEST = 6

_SESSION_OPEN = struct.Struct("<qqqH")
_SESSION_CLOSE = struct.Struct("<qqi")
_SESSION_MESSAGE = struct.Struct("<qqqqi")
_TIMER_FIRE = struct.Struct("<qiqq")
_SERVICE_MESSAGE = struct.Struct("<qiq")
_CLUSTER_ACTION = struct.Struct("<qiq")
_TIMESTAMP = struct.Struct("<q")
_U32 = struct.Struct("<I")

SESSION_MESSAGE_HEADER_BYTES = _SESSION_MESSAGE.size
SESSION_MESSAGE_STRUCT = _SESSION_MESSAGE     # the module's apply fast path unpacks in place
SERVICE_MESSAGE_HEADER_BYTES = _SERVICE_MESSAGE.size


class EntryDecodeError(ValueError):
    """A cluster log entry is malformed. Entries come from the replicated log, so this means
    corruption or a version mismatch: the node must stop rather than guess."""


class SessionOpen(NamedTuple):
    timestamp_ns: int
    correlation_id: int
    client_nonce: int
    response_endpoint: str


class SessionClose(NamedTuple):
    timestamp_ns: int
    session_id: int
    reason: int


class SessionMessage(NamedTuple):
    timestamp_ns: int
    session_id: int
    seq: int
    correlation_id: int
    service_id: int
    payload: memoryview


class TimerFire(NamedTuple):
    timestamp_ns: int
    service_id: int
    correlation_id: int
    timer_seq: int


class ServiceMessage(NamedTuple):
    timestamp_ns: int
    service_id: int
    pending_id: int
    payload: memoryview


class ClusterAction(NamedTuple):
    timestamp_ns: int
    action: int
    argument: int
    checksum: int = 0             # ACTION_STATE_DIGEST: the snapshot's checksum


# ---- encoders ---------------------------------------------------------------------------

def encode_session_open(timestamp_ns: int, correlation_id: int, client_nonce: int,
                        response_endpoint: str) -> bytes:
    endpoint = response_endpoint.encode("utf-8")
    if len(endpoint) > 0xFFFF:
        raise ValueError("response_endpoint longer than 65535 bytes")
    return _SESSION_OPEN.pack(timestamp_ns, correlation_id, client_nonce, len(endpoint)) + endpoint


def encode_session_close(timestamp_ns: int, session_id: int, reason: int) -> bytes:
    return _SESSION_CLOSE.pack(timestamp_ns, session_id, int(reason))


def encode_session_message(timestamp_ns: int, session_id: int, seq: int, correlation_id: int,
                           service_id: int, payload) -> bytes:
    return _SESSION_MESSAGE.pack(timestamp_ns, session_id, seq, correlation_id, service_id) + bytes(payload)


def encode_timer_fire(timestamp_ns: int, service_id: int, correlation_id: int, timer_seq: int) -> bytes:
    return _TIMER_FIRE.pack(timestamp_ns, service_id, correlation_id, timer_seq)


def encode_service_message(timestamp_ns: int, service_id: int, pending_id: int, payload) -> bytes:
    return _SERVICE_MESSAGE.pack(timestamp_ns, service_id, pending_id) + bytes(payload)


def encode_cluster_action(timestamp_ns: int, action: int, argument: int = 0) -> bytes:
    return _CLUSTER_ACTION.pack(timestamp_ns, action, argument)


def encode_state_digest(timestamp_ns: int, snapshot_index: int, checksum: int) -> bytes:
    return _CLUSTER_ACTION.pack(timestamp_ns, ACTION_STATE_DIGEST, snapshot_index) + _U32.pack(checksum)


# ---- decoders ---------------------------------------------------------------------------

def _need(payload, size: int, what: str) -> None:
    if len(payload) < size:
        raise EntryDecodeError(f"{what} entry of {len(payload)} bytes, need at least {size}")


def decode_session_open(payload) -> SessionOpen:
    _need(payload, _SESSION_OPEN.size, "SESSION_OPEN")
    ts, cid, nonce, n = _SESSION_OPEN.unpack_from(payload, 0)
    end = _SESSION_OPEN.size + n
    if len(payload) != end:
        raise EntryDecodeError(f"SESSION_OPEN endpoint length {n} does not match entry size {len(payload)}")
    try:
        endpoint = bytes(payload[_SESSION_OPEN.size:end]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EntryDecodeError(f"SESSION_OPEN endpoint is not UTF-8: {exc}") from None
    return SessionOpen(ts, cid, nonce, endpoint)


def decode_session_close(payload) -> SessionClose:
    _need(payload, _SESSION_CLOSE.size, "SESSION_CLOSE")
    entry = SessionClose(*_SESSION_CLOSE.unpack_from(payload, 0))
    if not 0 <= entry.reason <= 2:      # CloseReason's values: anything else is damage
        raise EntryDecodeError(f"SESSION_CLOSE with reason {entry.reason}, not a CloseReason")
    return entry


def decode_session_message(payload) -> SessionMessage:
    _need(payload, _SESSION_MESSAGE.size, "SESSION_MESSAGE")
    ts, sid, seq, cid, service_id = _SESSION_MESSAGE.unpack_from(payload, 0)
    return SessionMessage(ts, sid, seq, cid, service_id, memoryview(payload)[_SESSION_MESSAGE.size:])


def decode_timer_fire(payload) -> TimerFire:
    _need(payload, _TIMER_FIRE.size, "TIMER_FIRE")
    return TimerFire(*_TIMER_FIRE.unpack_from(payload, 0))


def decode_service_message(payload) -> ServiceMessage:
    _need(payload, _SERVICE_MESSAGE.size, "SERVICE_MESSAGE")
    ts, service_id, pending_id = _SERVICE_MESSAGE.unpack_from(payload, 0)
    return ServiceMessage(ts, service_id, pending_id, memoryview(payload)[_SERVICE_MESSAGE.size:])


def decode_cluster_action(payload) -> ClusterAction:
    _need(payload, _CLUSTER_ACTION.size, "CLUSTER_ACTION")
    timestamp_ns, action, argument = _CLUSTER_ACTION.unpack_from(payload, 0)
    if action == ACTION_STATE_DIGEST:
        _need(payload, _CLUSTER_ACTION.size + _U32.size, "CLUSTER_ACTION state digest")
        return ClusterAction(timestamp_ns, action, argument,
                             _U32.unpack_from(payload, _CLUSTER_ACTION.size)[0])
    return ClusterAction(timestamp_ns, action, argument)


def entry_timestamp_ns(payload) -> int:
    """The cluster time stamped in any cluster entry (every layout starts with it)."""
    _need(payload, _TIMESTAMP.size, "cluster")
    return _TIMESTAMP.unpack_from(payload, 0)[0]


DECODERS = {
    SESSION_OPEN: decode_session_open,
    SESSION_CLOSE: decode_session_close,
    SESSION_MESSAGE: decode_session_message,
    TIMER_FIRE: decode_timer_fire,
    SERVICE_MESSAGE: decode_service_message,
    CLUSTER_ACTION: decode_cluster_action,
}


def decode_entry(entry_type: int, payload):
    """Decode a cluster entry into its named tuple; unknown types raise EntryDecodeError."""
    decoder = DECODERS.get(entry_type)
    if decoder is None:
        raise EntryDecodeError(f"unknown cluster entry type {entry_type}")
    return decoder(payload)
