# cython: language_level=3
"""Hot-path helpers that work without message objects: the packed-entry blob of AppendEntries
(validate, iterate, pack a batch that fits a frame) and one-call encoders for the three hot
messages. Re-exported by aeronpy._codec; the C-level versions are inline in _codec.pxd.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from libc.stdint cimport INT64_MAX, INT64_MIN, UINT16_MAX, UINT32_MAX, int32_t, int64_t, uint8_t, uint16_t, uint32_t
from libc.string cimport memcpy

from aeronpy._codec cimport (APPEND_ENTRIES_HEADER_LENGTH,
                     PACKED_ENTRY_HEADER_LENGTH, SESSION_MESSAGE_HEADER_LENGTH,
                     append_entries_header_store, egress_message_bytes, int_in_range,
                     packed_entry_header_store, packed_validate, session_message_header_store)
cdef extern from "_codec_batch.h":
    bint ap_entry_fast(PyObject* item, int64_t* term, uint16_t* entry_type, const uint8_t** data,
                       Py_ssize_t* length) noexcept
    Py_ssize_t ap_entry_fast_length(PyObject* item) noexcept

cdef extern from "Python.h":
    PyObject* PyBytes_FromStringAndSize_raw "PyBytes_FromStringAndSize" (const char* s, Py_ssize_t n) except NULL
    int _PyBytes_Resize(PyObject** string, Py_ssize_t newsize) except -1

from aeronpy._cursor cimport ap_load_i64, ap_load_u16, ap_load_u32, decode_fail



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


cdef inline int64_t _int_arg(object value, int64_t lo, int64_t hi, str what) except? -1:
    cdef int overflow
    cdef long long v
    if PyLong_CheckExact(value):
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow == 0 and lo <= v <= hi:
            return v
    return int_in_range(value, lo, hi, what)


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


# ---- packing a batch -------------------------------------------------------------------------

cdef enum:
    INITIAL_CAPACITY_MAX = 1 << 16   # bytes allocated up front at most; grows beyond on demand


cdef struct PackBuffer:
    PyObject* out               # bytes object being filled (owned), trimmed when done
    Py_ssize_t capacity
    Py_ssize_t length


cdef int _buffer_init(PackBuffer* b, Py_ssize_t capacity) except -1:
    b.out = PyBytes_FromStringAndSize_raw(NULL, capacity)
    if b.out == NULL:
        return -1
    b.capacity = capacity
    b.length = 0
    return 0


cdef inline uint8_t* _buffer_extend(PackBuffer* b, Py_ssize_t n) except NULL:
    """Room for n more bytes at the end; returns where they go."""
    cdef uint8_t* start
    if n > b.capacity - b.length:
        _buffer_grow(b, b.length + n)
    start = <uint8_t*>PyBytes_AS_STRING(<object>b.out) + b.length
    b.length += n
    return start


cdef int _buffer_grow(PackBuffer* b, Py_ssize_t wanted) except -1:
    wanted = max(wanted, 2 * b.capacity)
    _PyBytes_Resize(&b.out, wanted)      # on failure it frees and clears b.out
    b.capacity = wanted
    return 0


cdef object _buffer_finish(PackBuffer* b):
    """Trim to the bytes written and hand the object over."""
    if b.length != b.capacity:
        _PyBytes_Resize(&b.out, b.length)
    result = <object>b.out
    Py_XDECREF(b.out)
    b.out = NULL
    return result


cdef Py_ssize_t _pack_batch(object seq, Py_ssize_t start, Py_ssize_t budget, PackBuffer* b) except -1:
    """Append the packed entries of seq[start:] to b, as many as fit in budget bytes (at least
    one when any are left), in one pass; return how many.

    Entries of exact types take a path that runs no Python code and uses borrowed references.
    Others are held while converted and copied, and the sequence is re-measured on every step,
    so Python code run by a conversion (__index__) cannot make this read freed memory."""
    cdef Py_ssize_t count = 0, used = 0, size, length
    cdef Py_ssize_t i = start
    cdef Pinned pin
    cdef int64_t term
    cdef uint16_t entry_type
    cdef const uint8_t* data
    cdef uint8_t* out
    while i < PySequence_Fast_GET_SIZE(seq):
        if ap_entry_fast(PySequence_Fast_GET_ITEM(seq, i), &term, &entry_type, &data, &length):
            size = PACKED_ENTRY_HEADER_LENGTH + length
            if count > 0 and size > budget - used:
                break
            if length > UINT32_MAX:
                raise ValueError(f"entry payload of {length} bytes exceeds the u32 length")
            out = _buffer_extend(b, size)
            packed_entry_header_store(out, term, entry_type, <uint32_t>length)
            memcpy(out + PACKED_ENTRY_HEADER_LENGTH, data, length)
        else:
            item = <object>PySequence_Fast_GET_ITEM(seq, i)
            term_obj, type_obj, payload = item
            _pin(&pin, payload)
            try:
                size = PACKED_ENTRY_HEADER_LENGTH + pin.length
                if count > 0 and size > budget - used:
                    break
                if pin.length > UINT32_MAX:
                    raise ValueError(f"entry payload of {pin.length} bytes exceeds the u32 length")
                term = _int_arg(term_obj, INT64_MIN, INT64_MAX, "entry term")
                entry_type = <uint16_t>_int_arg(type_obj, 0, UINT16_MAX, "entry type")
                out = _buffer_extend(b, size)
                packed_entry_header_store(out, term, entry_type, <uint32_t>pin.length)
                memcpy(out + PACKED_ENTRY_HEADER_LENGTH, pin.data, pin.length)
            finally:
                _unpin(&pin)
        used += size
        count += 1
        i += 1
    return count


cdef Py_ssize_t _initial_capacity(object seq, Py_ssize_t start, Py_ssize_t budget) noexcept:
    """Exact packed size of the entries _pack_batch will take, when they all have the exact
    shape (the usual case: then the output is allocated once and never resized); otherwise
    a guess that the buffer grows from."""
    cdef Py_ssize_t i, length, used = 0, count = 0
    for i in range(start, PySequence_Fast_GET_SIZE(seq)):
        length = ap_entry_fast_length(PySequence_Fast_GET_ITEM(seq, i))
        if length < 0:
            return min(max(budget, used), INITIAL_CAPACITY_MAX)
        if count > 0 and PACKED_ENTRY_HEADER_LENGTH + length > budget - used:
            break
        used += PACKED_ENTRY_HEADER_LENGTH + length
        count += 1
    return used


def pack_entries(entries, Py_ssize_t max_bytes, Py_ssize_t start=0) -> tuple:
    """Pack entries[start:] ((term, type, payload) tuples) into a packed-entry blob, as many as
    fit in max_bytes but always at least one when any are left. Returns (blob, count)."""
    cdef PackBuffer b
    cdef Py_ssize_t count
    seq = PySequence_Fast(entries, "entries must be a sequence of (term, type, payload)")
    if start < 0:
        raise ValueError(f"start = {start} is negative")
    _buffer_init(&b, _initial_capacity(seq, start, max_bytes))
    try:
        count = _pack_batch(seq, start, max_bytes, &b)
        blob = _buffer_finish(&b)
    finally:
        Py_XDECREF(b.out)
    return blob, count


def encode_append_entries(term, prev_index, prev_term, commit_index, entries,
                          Py_ssize_t max_bytes, Py_ssize_t start=0) -> tuple:
    """Encode an AppendEntries carrying entries[start:] ((term, type, payload) tuples), as many as
    fit a message of max_bytes (always at least one when any are left), in one call, one pass
    and one allocation. Returns (message bytes, count); the entries follow prev_index."""
    cdef PackBuffer b
    cdef Py_ssize_t count
    cdef int64_t c_term = _int_arg(term, INT64_MIN, INT64_MAX, "term")
    cdef int64_t c_prev_index = _int_arg(prev_index, INT64_MIN, INT64_MAX, "prev_index")
    cdef int64_t c_prev_term = _int_arg(prev_term, INT64_MIN, INT64_MAX, "prev_term")
    cdef int64_t c_commit_index = _int_arg(commit_index, INT64_MIN, INT64_MAX, "commit_index")
    seq = PySequence_Fast(entries, "entries must be a sequence of (term, type, payload)")
    if start < 0:
        raise ValueError(f"start = {start} is negative")
    _buffer_init(&b, APPEND_ENTRIES_HEADER_LENGTH
                 + _initial_capacity(seq, start, max_bytes - APPEND_ENTRIES_HEADER_LENGTH))
    try:
        _buffer_extend(&b, APPEND_ENTRIES_HEADER_LENGTH)
        count = _pack_batch(seq, start, max_bytes - APPEND_ENTRIES_HEADER_LENGTH, &b)
        if count > UINT32_MAX:
            raise ValueError(f"{count} entries exceed the u32 count")
        append_entries_header_store(<uint8_t*>PyBytes_AS_STRING(<object>b.out), b.length, c_term,
                                    c_prev_index, c_prev_term, c_commit_index, <uint32_t>count,
                                    b.length - APPEND_ENTRIES_HEADER_LENGTH)
        message = _buffer_finish(&b)
    finally:
        Py_XDECREF(b.out)
    return message, count


def encode_append_entries_header_into(buf, Py_ssize_t offset, term, prev_index, prev_term, commit_index,
                                      count, Py_ssize_t entries_length) -> int:
    """Write the 44-byte AppendEntries header into the writable buffer buf at offset, for packed
    entries (entries_length bytes) already in place right after it, e.g. from
    LogIndex.pack_into(buf, offset + 44, ...). Returns 44. The whole message must fit buf; the
    entries are not checked here (they come from the log, which validated them on the way in)."""
    cdef Py_buffer view
    cdef int64_t c_term = _int_arg(term, INT64_MIN, INT64_MAX, "term")
    cdef int64_t c_prev_index = _int_arg(prev_index, INT64_MIN, INT64_MAX, "prev_index")
    cdef int64_t c_prev_term = _int_arg(prev_term, INT64_MIN, INT64_MAX, "prev_term")
    cdef int64_t c_commit_index = _int_arg(commit_index, INT64_MIN, INT64_MAX, "commit_index")
    cdef uint32_t c_count = <uint32_t>_int_arg(count, 0, UINT32_MAX, "count")
    PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
    try:
        if offset < 0 or offset > view.len:
            raise ValueError(f"offset {offset} outside the {view.len}-byte buffer")
        return append_entries_header_store(<uint8_t*>view.buf + offset, view.len - offset, c_term,
                                           c_prev_index, c_prev_term, c_commit_index, c_count,
                                           entries_length)
    finally:
        PyBuffer_Release(&view)


# ---- one-call encoders for the client hot path -----------------------------------------------

def encode_session_message(session_id, seq, correlation_id, service_id, payload) -> bytes:
    """encode(SessionMessage(...)) without building the message object."""
    cdef int64_t c_session_id = _int_arg(session_id, INT64_MIN, INT64_MAX, "session_id")
    cdef int64_t c_seq = _int_arg(seq, INT64_MIN, INT64_MAX, "seq")
    cdef int64_t c_correlation_id = _int_arg(correlation_id, INT64_MIN, INT64_MAX, "correlation_id")
    cdef int32_t c_service_id = <int32_t>_int_arg(service_id, -0x80000000, 0x7FFFFFFF, "service_id")
    cdef Pinned pin
    cdef uint8_t* out
    _pin(&pin, payload)
    try:
        if pin.length > UINT32_MAX:
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
    cdef int64_t c_session_id = _int_arg(session_id, INT64_MIN, INT64_MAX, "session_id")
    cdef int64_t c_correlation_id = _int_arg(correlation_id, INT64_MIN, INT64_MAX, "correlation_id")
    cdef int64_t c_ack_seq = _int_arg(ack_seq, INT64_MIN, INT64_MAX, "ack_seq")
    cdef Pinned pin
    _pin(&pin, payload)
    try:
        if pin.length > UINT32_MAX:
            raise ValueError(f"payload of {pin.length} bytes exceeds the u32 length")
        return egress_message_bytes(c_session_id, c_correlation_id, c_ack_seq, pin.data, pin.length)
    finally:
        _unpin(&pin)
