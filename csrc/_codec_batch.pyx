# cython: language_level=3
"""Hot-path helpers that work without message objects: the packed-entry blob of AppendEntries
(validate, iterate, pack a batch that fits a frame) and one-call encoders for the three hot
messages. Re-exported by aeronpy._codec; the C-level versions are inline in _codec.pxd.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_Check
from cpython.number cimport PyNumber_Index
from cpython.object cimport PyObject
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from libc.stdint cimport INT64_MAX, INT64_MIN, int32_t, int64_t, uint8_t, uint16_t, uint32_t
from libc.string cimport memcpy

from _codec cimport (APPEND_ENTRIES_HEADER_LENGTH, EGRESS_MESSAGE_HEADER_LENGTH,
                     PACKED_ENTRY_HEADER_LENGTH, SESSION_MESSAGE_HEADER_LENGTH,
                     append_entries_header_store, egress_message_header_store,
                     packed_entry_header_store, packed_validate, session_message_header_store)
from _cursor cimport ap_load_i64, ap_load_u16, ap_load_u32, decode_fail

cdef int64_t I64_MIN = INT64_MIN
cdef int64_t I64_MAX = INT64_MAX


cdef struct Pinned:
    const uint8_t* data
    Py_ssize_t length
    bint has_view
    Py_buffer view


cdef inline int _pin(Pinned* pin, object value) except -1:
    """Point at the bytes of a bytes-like object (bytes without the buffer protocol's cost)."""
    pin.has_view = False
    if PyBytes_CheckExact(value):
        pin.data = <const uint8_t*>PyBytes_AS_STRING(value)
        pin.length = PyBytes_GET_SIZE(value)
        return 0
    if isinstance(value, str):
        raise TypeError("payload must be bytes-like, got str")
    PyObject_GetBuffer(value, &pin.view, PyBUF_SIMPLE)
    pin.has_view = True
    pin.data = <const uint8_t*>pin.view.buf
    pin.length = pin.view.len
    return 0


cdef inline void _unpin(Pinned* pin) noexcept:
    if pin.has_view:
        PyBuffer_Release(&pin.view)
        pin.has_view = False


cdef int64_t _int_arg(object value, int64_t lo, int64_t hi, str what) except? -1:
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


# ---- packed entries --------------------------------------------------------------------------

def validate_packed(blob, Py_ssize_t count=-1) -> int:
    """Check that blob holds exactly `count` well-formed packed entries (any number if count < 0)
    and return how many it holds; DecodeError otherwise. No Python object per entry."""
    cdef Pinned pin
    _pin(&pin, blob)
    try:
        return packed_validate(pin.data, pin.length, count)
    finally:
        _unpin(&pin)


cdef class PackedEntryIterator:
    """Iterates a packed-entry blob as (term, type, payload memoryview) tuples.

    The whole blob is validated up front, so a malformed blob raises DecodeError before the
    first entry; each step re-checks its bounds in case a writable blob changed meanwhile."""
    cdef object _blob_view      # read-only byte memoryview; payload views are slices of it
    cdef Py_buffer _pinned
    cdef bint _has_pin
    cdef Py_ssize_t _pos

    def __cinit__(self, blob):
        view = memoryview(blob)
        if view.ndim != 1 or view.itemsize != 1 or not view.c_contiguous:
            view = view.cast("B")
        self._blob_view = view.toreadonly()
        PyObject_GetBuffer(self._blob_view, &self._pinned, PyBUF_SIMPLE)
        self._has_pin = True
        self._pos = 0
        packed_validate(<const uint8_t*>self._pinned.buf, self._pinned.len, -1)

    def __dealloc__(self):
        if self._has_pin:
            PyBuffer_Release(&self._pinned)

    def __iter__(self):
        return self

    def __next__(self):
        cdef const uint8_t* p = <const uint8_t*>self._pinned.buf
        cdef Py_ssize_t n = self._pinned.len
        cdef Py_ssize_t pos = self._pos
        cdef Py_ssize_t end
        if pos >= n:
            raise StopIteration
        if n - pos < PACKED_ENTRY_HEADER_LENGTH or ap_load_u16(p + pos + 6) != 0:
            decode_fail(f"packed entries: entry header at offset {pos} changed while iterating")
        end = pos + PACKED_ENTRY_HEADER_LENGTH + <Py_ssize_t>ap_load_u32(p + pos)
        if end > n:
            decode_fail(f"packed entries: payload at offset {pos} changed while iterating")
        self._pos = end
        return (ap_load_i64(p + pos + 8), ap_load_u16(p + pos + 4),
                self._blob_view[pos + PACKED_ENTRY_HEADER_LENGTH:end])


def iter_packed(blob) -> PackedEntryIterator:
    """(term, type, payload memoryview) for each entry of a packed-entry blob."""
    return PackedEntryIterator(blob)


cdef Py_ssize_t _measure_batch(object seq, Py_ssize_t start, Py_ssize_t budget,
                               Py_ssize_t* out_bytes) except -1:
    """How many entries of seq[start:] fit in budget bytes once packed (at least one)."""
    cdef Py_ssize_t count = 0, total = 0, size
    cdef Pinned pin
    cdef Py_ssize_t i = start
    while i < PySequence_Fast_GET_SIZE(seq):
        item = <object>PySequence_Fast_GET_ITEM(seq, i)
        _, _, payload = item
        _pin(&pin, payload)
        size = PACKED_ENTRY_HEADER_LENGTH + pin.length
        _unpin(&pin)
        if count > 0 and total + size > budget:
            break
        total += size
        count += 1
        i += 1
    out_bytes[0] = total
    return count


cdef int _write_batch(object seq, Py_ssize_t start, Py_ssize_t count, uint8_t* out,
                      Py_ssize_t capacity) except -1:
    """Pack seq[start:start+count] into out; checks every write against capacity because
    converting a term may run Python code that changes the sequence."""
    cdef Py_ssize_t pos = 0
    cdef Pinned pin
    cdef int64_t term
    cdef uint16_t entry_type
    for i in range(start, start + count):
        if i >= PySequence_Fast_GET_SIZE(seq):
            raise ValueError("entries changed while being packed")
        item = <object>PySequence_Fast_GET_ITEM(seq, i)
        term_obj, type_obj, payload = item
        term = _int_arg(term_obj, I64_MIN, I64_MAX, "entry term")
        entry_type = <uint16_t>_int_arg(type_obj, 0, 0xFFFF, "entry type")
        _pin(&pin, payload)
        try:
            if pin.length > 0xFFFFFFFF or PACKED_ENTRY_HEADER_LENGTH + pin.length > capacity - pos:
                raise ValueError("entries changed while being packed")
            packed_entry_header_store(out + pos, term, entry_type, <uint32_t>pin.length)
            memcpy(out + pos + PACKED_ENTRY_HEADER_LENGTH, pin.data, pin.length)
            pos += PACKED_ENTRY_HEADER_LENGTH + pin.length
        finally:
            _unpin(&pin)
    if pos != capacity:
        raise ValueError("entries changed while being packed")
    return 0


def pack_entries(entries, Py_ssize_t max_bytes, Py_ssize_t start=0) -> tuple:
    """Pack entries[start:] ((term, type, payload) tuples) into a packed-entry blob, as many as
    fit in max_bytes but always at least one when any are left. Returns (blob, count)."""
    cdef Py_ssize_t total, count
    seq = PySequence_Fast(entries, "entries must be a sequence of (term, type, payload)")
    if start < 0:
        raise ValueError(f"start = {start} is negative")
    count = _measure_batch(seq, start, max_bytes, &total)
    blob = PyBytes_FromStringAndSize(NULL, total)
    _write_batch(seq, start, count, <uint8_t*>PyBytes_AS_STRING(blob), total)
    return blob, count


def encode_append_entries(term, prev_index, prev_term, commit_index, entries,
                          Py_ssize_t max_bytes, Py_ssize_t start=0) -> tuple:
    """Encode an AppendEntries carrying entries[start:] ((term, type, payload) tuples), as many as
    fit a message of max_bytes (always at least one when any are left), in one call and one
    allocation. Returns (message bytes, count); the entries follow prev_index consecutively."""
    cdef Py_ssize_t total, count
    cdef int64_t c_term = _int_arg(term, I64_MIN, I64_MAX, "term")
    cdef int64_t c_prev_index = _int_arg(prev_index, I64_MIN, I64_MAX, "prev_index")
    cdef int64_t c_prev_term = _int_arg(prev_term, I64_MIN, I64_MAX, "prev_term")
    cdef int64_t c_commit_index = _int_arg(commit_index, I64_MIN, I64_MAX, "commit_index")
    seq = PySequence_Fast(entries, "entries must be a sequence of (term, type, payload)")
    if start < 0:
        raise ValueError(f"start = {start} is negative")
    count = _measure_batch(seq, start, max_bytes - APPEND_ENTRIES_HEADER_LENGTH, &total)
    if count > 0xFFFFFFFF:
        raise ValueError(f"{count} entries exceed the u32 count")
    message = PyBytes_FromStringAndSize(NULL, APPEND_ENTRIES_HEADER_LENGTH + total)
    cdef uint8_t* out = <uint8_t*>PyBytes_AS_STRING(message)
    append_entries_header_store(out, APPEND_ENTRIES_HEADER_LENGTH + total, c_term, c_prev_index,
                                c_prev_term, c_commit_index, <uint32_t>count, total)
    _write_batch(seq, start, count, out + APPEND_ENTRIES_HEADER_LENGTH, total)
    return message, count


# ---- one-call encoders for the client hot path -----------------------------------------------

def encode_session_message(session_id, seq, correlation_id, service_id, payload) -> bytes:
    """encode(SessionMessage(...)) without building the message object."""
    cdef int64_t c_session_id = _int_arg(session_id, I64_MIN, I64_MAX, "session_id")
    cdef int64_t c_seq = _int_arg(seq, I64_MIN, I64_MAX, "seq")
    cdef int64_t c_correlation_id = _int_arg(correlation_id, I64_MIN, I64_MAX, "correlation_id")
    cdef int32_t c_service_id = <int32_t>_int_arg(service_id, -0x80000000, 0x7FFFFFFF, "service_id")
    cdef Pinned pin
    cdef uint8_t* out
    _pin(&pin, payload)
    try:
        if pin.length > 0xFFFFFFFF:
            raise ValueError(f"payload of {pin.length} bytes exceeds the u32 length")
        message = PyBytes_FromStringAndSize(NULL, SESSION_MESSAGE_HEADER_LENGTH + pin.length)
        out = <uint8_t*>PyBytes_AS_STRING(message)
        session_message_header_store(out, SESSION_MESSAGE_HEADER_LENGTH + pin.length, c_session_id,
                                     c_seq, c_correlation_id, c_service_id, pin.length)
        memcpy(out + SESSION_MESSAGE_HEADER_LENGTH, pin.data, pin.length)
    finally:
        _unpin(&pin)
    return message


def encode_egress_message(session_id, correlation_id, ack_seq, payload) -> bytes:
    """encode(EgressMessage(...)) without building the message object."""
    cdef int64_t c_session_id = _int_arg(session_id, I64_MIN, I64_MAX, "session_id")
    cdef int64_t c_correlation_id = _int_arg(correlation_id, I64_MIN, I64_MAX, "correlation_id")
    cdef int64_t c_ack_seq = _int_arg(ack_seq, I64_MIN, I64_MAX, "ack_seq")
    cdef Pinned pin
    cdef uint8_t* out
    _pin(&pin, payload)
    try:
        if pin.length > 0xFFFFFFFF:
            raise ValueError(f"payload of {pin.length} bytes exceeds the u32 length")
        message = PyBytes_FromStringAndSize(NULL, EGRESS_MESSAGE_HEADER_LENGTH + pin.length)
        out = <uint8_t*>PyBytes_AS_STRING(message)
        egress_message_header_store(out, EGRESS_MESSAGE_HEADER_LENGTH + pin.length, c_session_id,
                                    c_correlation_id, c_ack_seq, pin.length)
        memcpy(out + EGRESS_MESSAGE_HEADER_LENGTH, pin.data, pin.length)
    finally:
        _unpin(&pin)
    return message
