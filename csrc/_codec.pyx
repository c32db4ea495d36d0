# cython: language_level=3
"""Message-layer codecs: the consensus and client messages inside a frame's payload.

Layout of every message: ``u16 message_type | u16 version | fixed fields | variable parts``.
Fixed fields (i64, i32, u32, bool as u8) sit little-endian at fixed offsets in class field order;
variable parts follow in class field order (bytes: u32 length + data, str: u16 length + UTF-8).
The layouts below are data; one generic walker encodes and decodes them, dispatched through a
C table indexed by message type. AppendEntries, SessionMessage and EgressMessage decode through
the flyweight views of _codec.pxd, which other Cython modules use directly.

Decoders raise DecodeError, and only DecodeError, on malformed input. Encoders raise ValueError
for values out of range or a buffer too small, TypeError for a wrong field type.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.stdint cimport INT64_MAX, INT64_MIN, UINT16_MAX, UINT32_MAX, int32_t, int64_t, uint8_t, uint16_t, uint32_t
from libc.string cimport memcpy

from aeronpy._cursor cimport (ReadCursor, ap_load_i32, ap_load_i64, ap_load_u16, ap_load_u32, ap_load_u8,
                      ap_store_i32, ap_store_i64, ap_store_u16, ap_store_u32, ap_store_u8,
                      decode_fail, rc_expect_end, rc_init, rc_take_prefixed)

from aeronpy._cursor import DecodeError

cdef extern from "_codec.h":
    Py_ssize_t ap_slot_offset(PyObject* descr)
    PyObject* ap_slot_get(PyObject* obj, Py_ssize_t offset)
    void ap_slot_set(PyObject* obj, Py_ssize_t offset, PyObject* value)

cdef extern from "Python.h":
    object PyType_GenericAlloc(PyTypeObject* cls, Py_ssize_t nitems)
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL

__all__ = ["DecodeError", "encode", "encode_into", "decode", "message_size", "message_type",
           "layout", "validate_packed", "iter_packed", "pack_entries", "encode_append_entries",
           "encode_append_entries_header_into",
           "encode_session_message", "encode_egress_message"]

VERSION = MESSAGE_VERSION
HEADER_LENGTH = MESSAGE_HEADER_LENGTH
PACKED_HEADER_LENGTH = PACKED_ENTRY_HEADER_LENGTH
APPEND_ENTRIES_HEADER = APPEND_ENTRIES_HEADER_LENGTH
SESSION_MESSAGE_HEADER = SESSION_MESSAGE_HEADER_LENGTH
EGRESS_MESSAGE_HEADER = EGRESS_MESSAGE_HEADER_LENGTH

# Field kinds: (wire bytes of the fixed part; 0 for variable parts).
_KINDS = {"i64": 8, "i32": 4, "u32": 4, "bool": 1, "str": 0, "bytes": 0, "entries": 0}

# The wire layout of every message, in class field order. `entries` is a packed-entry blob sent
# like bytes and checked against the `count` field on both encode and decode.
_LAYOUTS = (
    ("aeronpy.core.messages", "CanvassPosition",
     "term:i64 proposed_term:i64 last_log_term:i64 last_log_index:i64 ballot_tag:i64"),
    ("aeronpy.core.messages", "RequestVote",
     "term:i64 last_log_term:i64 last_log_index:i64 transfer:bool ballot_tag:i64"),
    ("aeronpy.core.messages", "Vote", "term:i64 granted:bool pre:bool"),
    ("aeronpy.core.messages", "AppendEntries",
     "term:i64 prev_index:i64 prev_term:i64 commit_index:i64 entries:entries count:u32"),
    ("aeronpy.core.messages", "AppendResponse",
     "term:i64 success:bool match_index:i64 conflict_index:i64 conflict_term:i64"),
    ("aeronpy.core.messages", "Heartbeat", "term:i64 commit_index:i64"),
    ("aeronpy.core.messages", "HeartbeatResponse", "term:i64 last_index:i64"),
    ("aeronpy.core.messages", "TimeoutNow", "term:i64"),
    ("aeronpy.core.messages", "InstallSnapshot",
     "term:i64 snapshot_index:i64 snapshot_term:i64 offset:i64 total_bytes:i64 done:bool data:bytes"),
    ("aeronpy.core.messages", "InstallSnapshotResponse",
     "term:i64 snapshot_index:i64 offset:i64 success:bool"),
    ("aeronpy.cluster.protocol", "SessionConnect",
     "correlation_id:i64 client_nonce:i64 response_endpoint:str credentials:bytes protocol_version:i32"),
    ("aeronpy.cluster.protocol", "SessionEvent",
     "correlation_id:i64 session_id:i64 code:i32 leader_member_id:i32 leadership_term:i64 detail:str"),
    ("aeronpy.cluster.protocol", "SessionMessage",
     "session_id:i64 seq:i64 correlation_id:i64 service_id:i32 payload:bytes"),
    ("aeronpy.cluster.protocol", "SessionKeepAlive", "session_id:i64 leadership_term:i64"),
    ("aeronpy.cluster.protocol", "SessionClose", "session_id:i64 leadership_term:i64"),
    ("aeronpy.cluster.protocol", "SessionWindow",
     "session_id:i64 leadership_term:i64 window_base:i64"),
    ("aeronpy.cluster.protocol", "NewLeaderEvent",
     "session_id:i64 leadership_term:i64 leader_member_id:i32 ingress_endpoints:str"),
    ("aeronpy.cluster.protocol", "EgressMessage", "session_id:i64 correlation_id:i64 ack_seq:i64 payload:bytes"),
    ("aeronpy.cluster.protocol", "SessionAck", "session_id:i64 leadership_term:i64 ack_seq:i64"),
    ("aeronpy.cluster.protocol", "AdminRequest", "correlation_id:i64 request_type:i32 payload:bytes"),
    ("aeronpy.cluster.protocol", "AdminResponse", "correlation_id:i64 request_type:i32 code:i32 payload:bytes"),
)

cdef enum:
    MAX_FIELDS = 8
    SPEC_TABLE_SIZE = 64

cdef enum FieldKind:
    K_I64 = 1
    K_I32 = 2
    K_U32 = 3
    K_BOOL = 4
    K_STR = 5
    K_BYTES = 6
    K_ENTRIES = 7

cdef struct FieldSpec:
    int kind
    Py_ssize_t wire_offset     # fixed fields: offset from the message start; -1 for variable parts
    Py_ssize_t slot_offset     # instance slot for direct access; -1 when not direct
    PyObject* name             # attribute name (kept alive by _KEEP_ALIVE)
    PyObject* qualname         # "Class.field", for error messages

cdef struct MessageSpec

ctypedef object (*read_fn)(const MessageSpec* spec, const uint8_t* p, Py_ssize_t n)

cdef struct MessageSpec:
    int type_id
    PyObject* cls              # NULL: no message with this type id
    PyObject* name             # class name, for error messages
    int nfields
    Py_ssize_t fixed_length    # bytes of fixed fields after the 4-byte header
    bint direct                # slots read and written directly (see _codec.h)
    int entries_field          # index of the packed-entries field, -1 if none
    int count_field            # index of the u32 count it is checked against
    read_fn read
    FieldSpec fields[MAX_FIELDS]

cdef MessageSpec _SPECS[SPEC_TABLE_SIZE]
cdef bint _ready = False
_KEEP_ALIVE = []     # classes and names the C table points to


# ---- table set-up ----------------------------------------------------------------------------

cdef int _ensure_table() except -1:
    """Build the dispatch table on first use, so importing this module imports no message module
    (the message packages may later import this one)."""
    global _ready
    if _ready:
        return 0
    import importlib
    cdef MessageSpec* spec
    cdef FieldSpec* field
    cdef Py_ssize_t offset
    for module_name, class_name, text in _LAYOUTS:
        cls = getattr(importlib.import_module(module_name), class_name)
        pairs = [item.split(":") for item in text.split()]
        if tuple(name for name, _ in pairs) != tuple(cls.FIELDS) or len(pairs) > MAX_FIELDS:
            raise RuntimeError(f"codec layout of {class_name} {pairs} does not match its FIELDS {cls.FIELDS}")
        type_id = cls.TYPE_ID
        if not 0 < type_id < SPEC_TABLE_SIZE:
            raise RuntimeError(f"{class_name}.TYPE_ID {type_id} outside 1..{SPEC_TABLE_SIZE - 1}")
        spec = &_SPECS[type_id]
        if spec.cls != NULL and <object>spec.cls is not cls:
            raise RuntimeError(f"{class_name}.TYPE_ID {type_id} is taken by {<object>spec.name}")
        _KEEP_ALIVE.append((cls, class_name))
        spec.type_id = type_id
        spec.name = <PyObject*>class_name
        spec.nfields = len(pairs)
        spec.entries_field = -1
        spec.count_field = -1
        spec.read = _read_generic
        spec.direct = True
        offset = MESSAGE_HEADER_LENGTH
        for i, (name, kind) in enumerate(pairs):
            name = str(name)
            _KEEP_ALIVE.append(name)
            field = &spec.fields[i]
            field.kind = ("i64", "i32", "u32", "bool", "str", "bytes", "entries").index(kind) + 1
            qualname = f"{class_name}.{name}"
            _KEEP_ALIVE.append(qualname)
            field.name = <PyObject*>name
            field.qualname = <PyObject*>qualname
            field.wire_offset = offset if _KINDS[kind] else -1
            offset += _KINDS[kind]
            descriptor = cls.__dict__.get(name)
            field.slot_offset = ap_slot_offset(<PyObject*>descriptor)
            if field.slot_offset < 0:
                spec.direct = False
            if kind == "entries":
                spec.entries_field = i
            elif kind == "u32" and name == "count":
                spec.count_field = i
        spec.fixed_length = offset - MESSAGE_HEADER_LENGTH
        if (spec.entries_field >= 0) != (spec.count_field >= 0):
            raise RuntimeError(f"{class_name}: an entries field needs a u32 count field")
        spec.cls = <PyObject*>cls
        if spec.direct and not _probe_direct(spec):
            spec.direct = False
    for type_id, header_length in ((TYPE_APPEND_ENTRIES, APPEND_ENTRIES_HEADER_LENGTH),
                                   (TYPE_SESSION_MESSAGE, SESSION_MESSAGE_HEADER_LENGTH),
                                   (TYPE_EGRESS_MESSAGE, EGRESS_MESSAGE_HEADER_LENGTH)):
        # The flyweight views in _codec.pxd hard-code these layouts: keep them in step.
        if MESSAGE_HEADER_LENGTH + _SPECS[type_id].fixed_length + 4 != header_length:
            raise RuntimeError(f"layout of message type {type_id} disagrees with its view")
    _SPECS[TYPE_APPEND_ENTRIES].read = _read_append_entries
    _SPECS[TYPE_SESSION_MESSAGE].read = _read_session_message
    _SPECS[TYPE_EGRESS_MESSAGE].read = _read_egress_message
    _ready = True
    return 0


cdef bint _probe_direct(MessageSpec* spec) except -1:
    """Write distinct objects through the slots and read them back through getattr."""
    probe = _new_message(spec)
    markers = [object() for _ in range(spec.nfields)]
    for i in range(spec.nfields):
        _set_field(spec, probe, i, markers[i])
    return all(getattr(probe, <object>spec.fields[i].name) is markers[i] for i in range(spec.nfields))


cdef inline MessageSpec* _spec_of(object msg) except NULL:
    _ensure_table()
    cls = type(msg)
    type_id = getattr(cls, "TYPE_ID", None)
    if type(type_id) is int and 0 < type_id < SPEC_TABLE_SIZE:
        if _SPECS[<Py_ssize_t>type_id].cls == <PyObject*>cls:
            return &_SPECS[<Py_ssize_t>type_id]
    raise TypeError(f"not an aeronpy message: {cls!r}")


# ---- field access ----------------------------------------------------------------------------

cdef inline object _new_message(const MessageSpec* spec):
    cls = <object>spec.cls
    if spec.direct:
        return PyType_GenericAlloc(<PyTypeObject*>spec.cls, 0)
    return cls.__new__(cls)


cdef inline object _get_field(const MessageSpec* spec, object msg, int i):
    cdef const FieldSpec* field = &spec.fields[i]
    cdef PyObject* value
    if spec.direct:
        value = ap_slot_get(<PyObject*>msg, field.slot_offset)
        if value == NULL:
            raise AttributeError(f"{<object>field.qualname} is not set")
        return <object>value
    return getattr(msg, <object>field.name)


cdef inline int _set_field(const MessageSpec* spec, object msg, int i, object value) except -1:
    if spec.direct:
        Py_INCREF(value)
        ap_slot_set(<PyObject*>msg, spec.fields[i].slot_offset, <PyObject*>value)
    else:
        setattr(msg, <object>spec.fields[i].name, value)
    return 0


cdef inline str _field_name(const MessageSpec* spec, int i):
    return <str>spec.fields[i].qualname


cdef int64_t _int_field(const MessageSpec* spec, object msg, int i, int64_t lo,
                       int64_t hi) except? -1:
    """Field i of msg as an int64 in [lo, hi]: _codec.pxd's int_in_range, naming the field."""
    return int_in_range(_get_field(spec, msg, i), lo, hi, _field_name(spec, i))


cdef inline int _as_flag(object value, const MessageSpec* spec, int i) except -1:
    if value is True or value is False or type(value) is int:
        if value == 0 or value == 1:
            return 1 if value else 0
        raise ValueError(f"{_field_name(spec, i)} = {value!r} is not a bool")
    raise TypeError(f"{_field_name(spec, i)} must be a bool, got {type(value).__name__}")


# ---- encode ----------------------------------------------------------------------------------

cdef struct VarPart:
    const uint8_t* data
    Py_ssize_t length
    PyObject* owner            # strong reference while the plan lives, or NULL
    bint has_view
    Py_buffer view


cdef struct EncodePlan:
    Py_ssize_t total
    int64_t ints[MAX_FIELDS]   # converted fixed fields
    VarPart parts[MAX_FIELDS]  # pinned variable parts


cdef int _var_part_pin(VarPart* part, object value, bint text, const MessageSpec* spec, int i) except -1:
    if text:
        if not isinstance(value, str):
            raise TypeError(f"{_field_name(spec, i)} must be str, got {type(value).__name__}")
        part.data = <const uint8_t*>PyUnicode_AsUTF8AndSize(value, &part.length)
        if part.length > UINT16_MAX:
            raise ValueError(f"{_field_name(spec, i)}: {part.length} bytes of UTF-8 exceed the u16 length")
    elif PyBytes_CheckExact(value):
        part.data = <const uint8_t*>PyBytes_AS_STRING(value)
        part.length = PyBytes_GET_SIZE(value)
    else:
        if isinstance(value, str):
            raise TypeError(f"{_field_name(spec, i)} must be bytes-like, got str")
        PyObject_GetBuffer(value, &part.view, PyBUF_SIMPLE)
        part.has_view = True
        part.data = <const uint8_t*>part.view.buf
        part.length = part.view.len
        if part.length > UINT32_MAX:
            raise ValueError(f"{_field_name(spec, i)}: {part.length} bytes exceed the u32 length")
    Py_INCREF(value)
    part.owner = <PyObject*>value
    return 0


cdef void _plan_release(const MessageSpec* spec, EncodePlan* plan) noexcept:
    cdef VarPart* part
    for i in range(spec.nfields):
        part = &plan.parts[i]
        if part.has_view:
            PyBuffer_Release(&part.view)
            part.has_view = False
        if part.owner != NULL:
            Py_XDECREF(part.owner)
            part.owner = NULL


cdef int _plan_prepare(const MessageSpec* spec, object msg, EncodePlan* plan) except -1:
    """Convert the fixed fields, pin the variable parts and measure the message. Fixed fields go
    first: converting them may run Python code (__index__), pinning may not be undone by it.
    On success the caller must _plan_release(); on error this releases what it pinned."""
    cdef int kind
    cdef Py_ssize_t total = MESSAGE_HEADER_LENGTH + spec.fixed_length
    for i in range(spec.nfields):
        plan.parts[i].has_view = False
        plan.parts[i].owner = NULL
    try:
        for i in range(spec.nfields):
            kind = spec.fields[i].kind
            if kind == K_I64:
                plan.ints[i] = _int_field(spec, msg, i, INT64_MIN, INT64_MAX)
            elif kind == K_I32:
                plan.ints[i] = _int_field(spec, msg, i, -0x80000000, 0x7FFFFFFF)
            elif kind == K_U32:
                plan.ints[i] = _int_field(spec, msg, i, 0, UINT32_MAX)
            elif kind == K_BOOL:
                plan.ints[i] = _as_flag(_get_field(spec, msg, i), spec, i)
        for i in range(spec.nfields):
            kind = spec.fields[i].kind
            if kind == K_STR:
                _var_part_pin(&plan.parts[i], _get_field(spec, msg, i), True, spec, i)
                total += 2 + plan.parts[i].length
            elif kind == K_BYTES or kind == K_ENTRIES:
                _var_part_pin(&plan.parts[i], _get_field(spec, msg, i), False, spec, i)
                total += 4 + plan.parts[i].length
        if spec.entries_field >= 0:
            _check_entries_for_encode(spec, plan)
    except BaseException:
        _plan_release(spec, plan)
        raise
    plan.total = total
    return 0


cdef int _check_entries_for_encode(const MessageSpec* spec, const EncodePlan* plan) except -1:
    cdef const VarPart* part = &plan.parts[spec.entries_field]
    try:
        packed_validate(part.data, part.length, plan.ints[spec.count_field])
    except DecodeError as exc:
        raise ValueError(f"{_field_name(spec, spec.entries_field)} does not match count: {exc}") from None
    return 0


cdef void _plan_write(const MessageSpec* spec, const EncodePlan* plan, uint8_t* out) noexcept nogil:
    """Write the planned message to out[0:plan.total]; no Python code runs here."""
    cdef const FieldSpec* field
    cdef const VarPart* part
    cdef Py_ssize_t pos = MESSAGE_HEADER_LENGTH + spec.fixed_length
    message_header_store(out, <uint16_t>spec.type_id)
    for i in range(spec.nfields):
        field = &spec.fields[i]
        part = &plan.parts[i]
        if field.kind == K_I64:
            ap_store_i64(out + field.wire_offset, plan.ints[i])
        elif field.kind == K_I32:
            ap_store_i32(out + field.wire_offset, <int32_t>plan.ints[i])
        elif field.kind == K_U32:
            ap_store_u32(out + field.wire_offset, <uint32_t>plan.ints[i])
        elif field.kind == K_BOOL:
            ap_store_u8(out + field.wire_offset, <uint8_t>plan.ints[i])
        elif field.kind == K_STR:
            ap_store_u16(out + pos, <uint16_t>part.length)
            memcpy(out + pos + 2, part.data, part.length)
            pos += 2 + part.length
        else:
            ap_store_u32(out + pos, <uint32_t>part.length)
            memcpy(out + pos + 4, part.data, part.length)
            pos += 4 + part.length


def encode(msg) -> bytes:
    """Encode a message of aeronpy.core.messages or aeronpy.cluster.protocol to new bytes."""
    cdef EncodePlan plan
    cdef const MessageSpec* spec = _spec_of(msg)
    _plan_prepare(spec, msg, &plan)
    try:
        out = PyBytes_FromStringAndSize(NULL, plan.total)
        _plan_write(spec, &plan, <uint8_t*>PyBytes_AS_STRING(out))
    finally:
        _plan_release(spec, &plan)
    return out


def encode_into(msg, buf, Py_ssize_t offset=0) -> int:
    """Encode msg into the writable buffer buf at offset; return the bytes written.
    Raises ValueError (writing nothing) if it does not fit."""
    cdef EncodePlan plan
    cdef Py_buffer view
    cdef const MessageSpec* spec = _spec_of(msg)
    _plan_prepare(spec, msg, &plan)
    try:
        PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
        try:
            if offset < 0 or offset > view.len or plan.total > view.len - offset:
                raise ValueError(f"{<object>spec.name} of {plan.total} bytes does not fit a buffer of "
                                 f"{view.len} bytes at offset {offset}")
            _plan_write(spec, &plan, <uint8_t*>view.buf + offset)
        finally:
            PyBuffer_Release(&view)
    finally:
        _plan_release(spec, &plan)
    return plan.total


def message_size(msg) -> int:
    """Bytes that encode(msg) produces."""
    cdef EncodePlan plan
    cdef const MessageSpec* spec = _spec_of(msg)
    _plan_prepare(spec, msg, &plan)
    _plan_release(spec, &plan)
    return plan.total


# ---- decode ----------------------------------------------------------------------------------

cdef object _utf8(const uint8_t* data, Py_ssize_t length, const FieldSpec* field):
    try:
        return PyUnicode_DecodeUTF8(<const char*>data, length, "strict")
    except UnicodeDecodeError as exc:
        decode_fail(f"{<object>field.qualname}: invalid UTF-8 ({exc.reason} at byte {exc.start})")


cdef object _read_generic(const MessageSpec* spec, const uint8_t* p, Py_ssize_t n):
    cdef ReadCursor c
    cdef const FieldSpec* field
    cdef const uint8_t* data
    cdef Py_ssize_t length
    cdef uint8_t flag
    entries = None
    rc_init(&c, p, n)
    message_fixed_take(&c, <uint16_t>spec.type_id, spec.fixed_length, <str>spec.name)
    msg = _new_message(spec)
    for i in range(spec.nfields):
        field = &spec.fields[i]
        if field.kind == K_I64:
            value = ap_load_i64(p + field.wire_offset)
        elif field.kind == K_I32:
            value = ap_load_i32(p + field.wire_offset)
        elif field.kind == K_U32:
            value = ap_load_u32(p + field.wire_offset)
        elif field.kind == K_BOOL:
            flag = ap_load_u8(p + field.wire_offset)
            if flag > 1:
                decode_fail(f"{<object>field.qualname} = {flag} is not a bool (0 or 1)")
            value = flag == 1
        elif field.kind == K_STR:
            data = rc_take_prefixed(&c, 2, &length, <str>field.qualname)
            value = _utf8(data, length, field)
        else:
            data = rc_take_prefixed(&c, 4, &length, <str>field.qualname)
            value = PyBytes_FromStringAndSize(<const char*>data, length)
            if field.kind == K_ENTRIES:
                entries = value
        _set_field(spec, msg, i, value)
    rc_expect_end(&c, <str>spec.name)
    if spec.entries_field >= 0:
        # Validate the copy, which nothing else can change.
        packed_validate(<const uint8_t*>PyBytes_AS_STRING(entries), PyBytes_GET_SIZE(entries),
                        ap_load_u32(p + spec.fields[spec.count_field].wire_offset))
        if spec.type_id == TYPE_APPEND_ENTRIES:
            _generic_terms_check(msg)
    return msg


cdef int _generic_terms_check(object msg) except -1:
    """append_entries_view's term check, over a message the table walker built."""
    cdef AppendEntriesView v
    entries = msg.entries
    v.term, v.prev_index, v.prev_term = msg.term, msg.prev_index, msg.prev_term
    v.commit_index, v.count = msg.commit_index, msg.count
    v.entries, v.entries_length = <const uint8_t*>PyBytes_AS_STRING(entries), PyBytes_GET_SIZE(entries)
    return append_entries_terms_check(&v)


cdef object _read_append_entries(const MessageSpec* spec, const uint8_t* p, Py_ssize_t n):
    cdef AppendEntriesView v
    append_entries_view(p, n, &v)
    # Copied right after validation, before anything can run Python code and touch the buffer.
    entries = PyBytes_FromStringAndSize(<const char*>v.entries, v.entries_length)
    msg = _new_message(spec)
    _set_field(spec, msg, 0, v.term)
    _set_field(spec, msg, 1, v.prev_index)
    _set_field(spec, msg, 2, v.prev_term)
    _set_field(spec, msg, 3, v.commit_index)
    _set_field(spec, msg, 4, entries)
    _set_field(spec, msg, 5, v.count)
    return msg


cdef object _read_session_message(const MessageSpec* spec, const uint8_t* p, Py_ssize_t n):
    cdef SessionMessageView v
    session_message_view(p, n, &v)
    payload = PyBytes_FromStringAndSize(<const char*>v.payload, v.payload_length)
    msg = _new_message(spec)
    _set_field(spec, msg, 0, v.session_id)
    _set_field(spec, msg, 1, v.seq)
    _set_field(spec, msg, 2, v.correlation_id)
    _set_field(spec, msg, 3, v.service_id)
    _set_field(spec, msg, 4, payload)
    return msg


cdef object _read_egress_message(const MessageSpec* spec, const uint8_t* p, Py_ssize_t n):
    cdef EgressMessageView v
    egress_message_view(p, n, &v)
    payload = PyBytes_FromStringAndSize(<const char*>v.payload, v.payload_length)
    msg = _new_message(spec)
    _set_field(spec, msg, 0, v.session_id)
    _set_field(spec, msg, 1, v.correlation_id)
    _set_field(spec, msg, 2, v.ack_seq)
    _set_field(spec, msg, 3, payload)
    return msg


cdef object _decode_ptr(const uint8_t* p, Py_ssize_t n, bint generic):
    cdef uint16_t type_id
    cdef const MessageSpec* spec
    _ensure_table()
    if n < MESSAGE_HEADER_LENGTH:
        decode_fail(f"message of {n} bytes is shorter than its {MESSAGE_HEADER_LENGTH}-byte header")
    type_id = ap_load_u16(p)
    if type_id >= SPEC_TABLE_SIZE or _SPECS[type_id].cls == NULL:
        decode_fail(f"unknown message type {type_id}")
    spec = &_SPECS[type_id]
    if generic:
        return _read_generic(spec, p, n)
    return spec.read(spec, p, n)


cdef object _decode_buffer(object buf, bint generic):
    cdef Py_buffer view
    if PyBytes_CheckExact(buf):
        return _decode_ptr(<const uint8_t*>PyBytes_AS_STRING(buf), PyBytes_GET_SIZE(buf), generic)
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        return _decode_ptr(<const uint8_t*>view.buf, view.len, generic)
    finally:
        PyBuffer_Release(&view)


def decode(buf):
    """Decode one whole message from bytes, bytearray or a contiguous memoryview.
    Variable parts come back as bytes (copied once), strings as str."""
    return _decode_buffer(buf, False)


def _decode_generic(buf):
    """decode() through the table walker only, skipping the flyweight views; tests compare the
    two so the hand-written views cannot drift from the layout table."""
    return _decode_buffer(buf, True)


def message_type(buf) -> int:
    """The message type id of an encoded message (DecodeError if shorter than the header)."""
    cdef Py_buffer view
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        if view.len < MESSAGE_HEADER_LENGTH:
            decode_fail(f"message of {view.len} bytes is shorter than its header")
        return ap_load_u16(<const uint8_t*>view.buf)
    finally:
        PyBuffer_Release(&view)


def layout(cls) -> tuple:
    """The wire layout of a message class: ((field, kind, offset or None for variable), ...)."""
    _ensure_table()
    type_id = getattr(cls, "TYPE_ID", None)
    if type(type_id) is not int or not 0 < type_id < SPEC_TABLE_SIZE or _SPECS[type_id].cls != <PyObject*>cls:
        raise TypeError(f"not an aeronpy message class: {cls!r}")
    cdef const MessageSpec* spec = &_SPECS[<Py_ssize_t>type_id]
    kinds = ("i64", "i32", "u32", "bool", "str", "bytes", "entries")
    rows = []
    for i in range(spec.nfields):
        offset = spec.fields[i].wire_offset
        rows.append((<object>spec.fields[i].name, kinds[spec.fields[i].kind - 1], offset if offset >= 0 else None))
    return tuple(rows)


def message_classes() -> dict:
    """{type id: message class} for every message this codec knows."""
    _ensure_table()
    return {i: <object>_SPECS[i].cls for i in range(SPEC_TABLE_SIZE) if _SPECS[i].cls != NULL}


from aeronpy._codec_batch import (PackedEntryIterator, encode_append_entries,  # noqa: E402
                                  encode_append_entries_header_into, encode_egress_message, encode_session_message, iter_packed,
                                  pack_entries, validate_packed)
