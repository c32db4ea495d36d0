# C-level contract of aeronpy._codec: message-layer constants, flyweight views and encoders for
# the hot messages, and the packed-entry walker shared with the log index and the archive.
#
# Other Cython modules: `from aeronpy._codec cimport append_entries_view, ...`. The entry points
# are inline, so using them needs nothing from aeronpy._codec at import time. They raise
# DecodeError on malformed input and ValueError when an encoding does not fit the space given.
#
# Message layout: u16 message_type | u16 version | fixed fields (little-endian, at fixed offsets,
# in class field order) | variable parts in class field order (bytes: u32 length + data,
# str: u16 length + UTF-8). Full tables: docs/wire-format.md.
from libc.stdint cimport UINT32_MAX, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.long cimport PyLong_Check
from cpython.number cimport PyNumber_Index

from aeronpy._cursor cimport (ReadCursor, ap_load_i32, ap_load_i64, ap_load_u16, ap_load_u32, ap_store_i32,
                      ap_store_i64, ap_store_u16, ap_store_u32, decode_fail, rc_expect_end, rc_init,
                      rc_take, rc_take_prefixed)

cdef enum:
    MESSAGE_VERSION = 1
    MESSAGE_HEADER_LENGTH = 4              # u16 type | u16 version
    PACKED_ENTRY_HEADER_LENGTH = 16        # u32 payload_length | u16 type | u16 flags | i64 term
    TYPE_APPEND_ENTRIES = 4
    TYPE_SESSION_MESSAGE = 34
    TYPE_EGRESS_MESSAGE = 38
    APPEND_ENTRIES_HEADER_LENGTH = 44      # header, 4 x i64, u32 count, u32 entries_length
    SESSION_MESSAGE_HEADER_LENGTH = 36     # header, 3 x i64, i32 service_id, u32 payload_length
    EGRESS_MESSAGE_HEADER_LENGTH = 32      # header, 3 x i64, u32 payload_length

cdef inline int64_t int_in_range(object value, int64_t lo, int64_t hi, str what) except? -1:
    """An int (or an object with __index__) as int64 within [lo, hi]: ValueError (never
    OverflowError) naming `what` and the value as checked (the __index__ result) when outside.
    The one range check of both _codec's field encoding and _codec_batch's arguments."""
    cdef int64_t v
    cdef bint inside = True
    if not PyLong_Check(value):
        value = PyNumber_Index(value)       # ints and __index__ only: no silent float truncation
    try:
        v = value
    except OverflowError:
        inside = False
    if inside and lo <= v <= hi:
        return v
    raise ValueError(f"{what} = {value!r} is outside [{lo}, {hi}]")


cdef enum PackedStatus:
    PACKED_OK = 0
    PACKED_SHORT_HEADER = 1     # fewer than 16 bytes left where an entry header should start
    PACKED_BAD_FLAGS = 2        # flags field not 0
    PACKED_SHORT_PAYLOAD = 3    # payload_length runs past the end of the blob
    PACKED_TRAILING = 4         # bytes left after the expected number of entries
    PACKED_TOO_FEW = 5          # blob ended before the expected number of entries


cdef struct PackedScan:
    PackedStatus status
    Py_ssize_t count            # well-formed entries walked
    Py_ssize_t offset           # where the walk stopped


cdef struct AppendEntriesView:
    int64_t term
    int64_t prev_index
    int64_t prev_term
    int64_t commit_index
    uint32_t count
    const uint8_t* entries      # points into the decoded buffer: valid while it is
    Py_ssize_t entries_length


cdef struct SessionMessageView:
    int64_t session_id
    int64_t seq
    int64_t correlation_id
    int32_t service_id
    const uint8_t* payload
    Py_ssize_t payload_length


cdef struct EgressMessageView:
    int64_t session_id
    int64_t correlation_id
    int64_t ack_seq
    const uint8_t* payload
    Py_ssize_t payload_length


# ---- packed entries -------------------------------------------------------------------------

cdef inline void packed_scan(const uint8_t* p, Py_ssize_t n, Py_ssize_t expected,
                             PackedScan* out) noexcept nogil:
    """Walk entries from p[0:n]: exactly `expected` of them, or as many as there are if < 0.

    Each step consumes at least a 16-byte header, so the walk is bounded by n / 16."""
    cdef Py_ssize_t pos = 0, count = 0
    cdef uint32_t payload_length
    out.status = PACKED_OK
    while pos < n and (expected < 0 or count < expected):
        if n - pos < PACKED_ENTRY_HEADER_LENGTH:
            out.status = PACKED_SHORT_HEADER
            break
        payload_length = ap_load_u32(p + pos)
        if ap_load_u16(p + pos + 6) != 0:
            out.status = PACKED_BAD_FLAGS
            break
        if payload_length > <uint64_t>(n - pos - PACKED_ENTRY_HEADER_LENGTH):
            out.status = PACKED_SHORT_PAYLOAD
            break
        pos += PACKED_ENTRY_HEADER_LENGTH + payload_length
        count += 1
    if out.status == PACKED_OK:
        if pos < n:
            out.status = PACKED_TRAILING
        elif expected >= 0 and count < expected:
            out.status = PACKED_TOO_FEW
    out.count = count
    out.offset = pos


cdef inline Py_ssize_t packed_validate(const uint8_t* p, Py_ssize_t n, Py_ssize_t expected) except -1:
    """Check p[0:n] holds exactly `expected` well-formed entries (any number if < 0); return
    the count or raise DecodeError naming the entry and offset where it went wrong."""
    cdef PackedScan scan
    packed_scan(p, n, expected, &scan)
    if scan.status == PACKED_OK:
        return scan.count
    reason = ("", "truncated entry header", "entry flags not 0", "payload runs past the end",
              "trailing bytes after the last entry", "fewer entries than count")[<int>scan.status]
    decode_fail(f"packed entries: {reason} (entry {scan.count}, offset {scan.offset}, "
                f"blob {n} bytes, expected {expected} entries)")
    return -1


cdef inline void packed_entry_header_store(uint8_t* p, int64_t term, uint16_t entry_type,
                                           uint32_t payload_length) noexcept nogil:
    """Write one 16-byte packed-entry header; the payload follows it."""
    ap_store_u32(p, payload_length)
    ap_store_u16(p + 4, entry_type)
    ap_store_u16(p + 6, 0)
    ap_store_i64(p + 8, term)


# ---- message header -------------------------------------------------------------------------

cdef inline const uint8_t* message_fixed_take(ReadCursor* c, uint16_t message_type,
                                              Py_ssize_t fixed_length, str what) except NULL:
    """Check type and version, then take the fixed-field block that follows them."""
    cdef const uint8_t* head = rc_take(c, MESSAGE_HEADER_LENGTH, what)
    if ap_load_u16(head) != message_type:
        decode_fail(f"{what}: message type {ap_load_u16(head)}, expected {message_type}")
        return NULL
    if ap_load_u16(head + 2) != MESSAGE_VERSION:
        decode_fail(f"{what}: unsupported version {ap_load_u16(head + 2)}")
        return NULL
    return rc_take(c, fixed_length, what)


cdef inline void message_header_store(uint8_t* p, uint16_t message_type) noexcept nogil:
    ap_store_u16(p, message_type)
    ap_store_u16(p + 2, MESSAGE_VERSION)


cdef inline int check_room(Py_ssize_t capacity, Py_ssize_t header_length,
                           Py_ssize_t body_length) except -1:
    if body_length < 0 or body_length > <Py_ssize_t>UINT32_MAX:
        raise ValueError(f"variable part of {body_length} bytes does not fit a u32 length")
    if capacity < header_length + body_length:
        raise ValueError(f"does not fit: {header_length + body_length} bytes needed, "
                         f"{capacity} available")
    return 0


# ---- AppendEntries --------------------------------------------------------------------------

cdef inline int append_entries_view(const uint8_t* p, Py_ssize_t n, AppendEntriesView* out) except -1:
    """Decode p[0:n] as an AppendEntries without copying; validates the packed entries."""
    cdef ReadCursor c
    rc_init(&c, p, n)
    cdef const uint8_t* f = message_fixed_take(&c, TYPE_APPEND_ENTRIES, 36, "AppendEntries")
    out.term = ap_load_i64(f)
    out.prev_index = ap_load_i64(f + 8)
    out.prev_term = ap_load_i64(f + 16)
    out.commit_index = ap_load_i64(f + 24)
    out.count = ap_load_u32(f + 32)
    out.entries = rc_take_prefixed(&c, 4, &out.entries_length, "AppendEntries.entries")
    rc_expect_end(&c, "AppendEntries")
    packed_validate(out.entries, out.entries_length, out.count)
    append_entries_terms_check(out)
    return 0


cdef inline int append_entries_terms_check(const AppendEntriesView* v) except -1:
    """The entries' terms as a leader's log gives them: not below ``prev_term``, never
    decreasing, none above the message's term. A frame that breaks this (a corrupt or buggy
    peer) is a DecodeError, dropped and counted, not an error from the log that stops the
    node. With this, appending the entries after a matching ``prev`` cannot fail."""
    cdef Py_ssize_t pos = 0, i
    cdef int64_t t, floor = v.prev_term
    for i in range(v.count):
        t = ap_load_i64(v.entries + pos + 8)
        if t < floor or t > v.term:
            decode_fail(f"AppendEntries: entry {i} has term {t}, outside [{floor}, {v.term}] "
                        f"(terms start at prev_term {v.prev_term}, never decrease and never "
                        f"exceed the message's term)")
            return -1
        floor = t
        pos += PACKED_ENTRY_HEADER_LENGTH + ap_load_u32(v.entries + pos)
    return 0


cdef inline Py_ssize_t append_entries_header_store(
        uint8_t* p, Py_ssize_t capacity, int64_t term, int64_t prev_index, int64_t prev_term,
        int64_t commit_index, uint32_t count, Py_ssize_t entries_length) except -1:
    """Write the 44-byte header of an AppendEntries whose packed entries (entries_length bytes)
    the caller writes right after it; checks the whole message fits `capacity`."""
    check_room(capacity, APPEND_ENTRIES_HEADER_LENGTH, entries_length)
    message_header_store(p, TYPE_APPEND_ENTRIES)
    ap_store_i64(p + 4, term)
    ap_store_i64(p + 12, prev_index)
    ap_store_i64(p + 20, prev_term)
    ap_store_i64(p + 28, commit_index)
    ap_store_u32(p + 36, count)
    ap_store_u32(p + 40, <uint32_t>entries_length)
    return APPEND_ENTRIES_HEADER_LENGTH


# ---- SessionMessage (ingress) and EgressMessage ----------------------------------------------

cdef inline int session_message_view(const uint8_t* p, Py_ssize_t n, SessionMessageView* out) except -1:
    cdef ReadCursor c
    rc_init(&c, p, n)
    cdef const uint8_t* f = message_fixed_take(&c, TYPE_SESSION_MESSAGE, 28, "SessionMessage")
    out.session_id = ap_load_i64(f)
    out.seq = ap_load_i64(f + 8)
    out.correlation_id = ap_load_i64(f + 16)
    out.service_id = ap_load_i32(f + 24)
    out.payload = rc_take_prefixed(&c, 4, &out.payload_length, "SessionMessage.payload")
    rc_expect_end(&c, "SessionMessage")
    return 0


cdef inline Py_ssize_t session_message_header_store(
        uint8_t* p, Py_ssize_t capacity, int64_t session_id, int64_t seq, int64_t correlation_id,
        int32_t service_id, Py_ssize_t payload_length) except -1:
    """Write the 36-byte SessionMessage header; the caller copies the payload right after it."""
    check_room(capacity, SESSION_MESSAGE_HEADER_LENGTH, payload_length)
    message_header_store(p, TYPE_SESSION_MESSAGE)
    ap_store_i64(p + 4, session_id)
    ap_store_i64(p + 12, seq)
    ap_store_i64(p + 20, correlation_id)
    ap_store_i32(p + 28, service_id)
    ap_store_u32(p + 32, <uint32_t>payload_length)
    return SESSION_MESSAGE_HEADER_LENGTH


cdef inline int egress_message_view(const uint8_t* p, Py_ssize_t n, EgressMessageView* out) except -1:
    cdef ReadCursor c
    rc_init(&c, p, n)
    cdef const uint8_t* f = message_fixed_take(&c, TYPE_EGRESS_MESSAGE, 24, "EgressMessage")
    out.session_id = ap_load_i64(f)
    out.correlation_id = ap_load_i64(f + 8)
    out.ack_seq = ap_load_i64(f + 16)
    out.payload = rc_take_prefixed(&c, 4, &out.payload_length, "EgressMessage.payload")
    rc_expect_end(&c, "EgressMessage")
    return 0


cdef inline Py_ssize_t egress_message_header_store(
        uint8_t* p, Py_ssize_t capacity, int64_t session_id, int64_t correlation_id,
        int64_t ack_seq, Py_ssize_t payload_length) except -1:
    """Write the 32-byte EgressMessage header; the caller copies the payload right after it."""
    check_room(capacity, EGRESS_MESSAGE_HEADER_LENGTH, payload_length)
    message_header_store(p, TYPE_EGRESS_MESSAGE)
    ap_store_i64(p + 4, session_id)
    ap_store_i64(p + 12, correlation_id)
    ap_store_i64(p + 20, ack_seq)
    ap_store_u32(p + 28, <uint32_t>payload_length)
    return EGRESS_MESSAGE_HEADER_LENGTH


cdef inline bytes egress_message_bytes(int64_t session_id, int64_t correlation_id, int64_t ack_seq,
                                       const uint8_t* payload, Py_ssize_t payload_length):
    """A whole EgressMessage as new bytes (the codec's encoder and the apply path's replies)."""
    cdef Py_ssize_t n = EGRESS_MESSAGE_HEADER_LENGTH + payload_length
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(out)
    egress_message_header_store(p, n, session_id, correlation_id, ack_seq, payload_length)
    memcpy(p + EGRESS_MESSAGE_HEADER_LENGTH, payload, <size_t>payload_length)
    return out
