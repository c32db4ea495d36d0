# Bounds-checked read and write cursors over raw buffers (in the manner of asyncpg's frb).
#
# Everything here is inline or extern C, so a module that cimports this file needs nothing from
# aeronpy._cursor at import time: setup.py builds modules as aeronpy.<name> while Cython would
# look a cimported module up as plain <name>. DecodeError is imported lazily on the error path.
#
# Pattern: check a whole fixed-size block once with rc_take(), then load fields at fixed offsets
# from the returned pointer with the ap_load_* functions; variable parts go through
# rc_take_prefixed(), which checks the length field against what is left.
from cpython.object cimport PyObject
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "_cursor.h":
    uint8_t ap_load_u8(const uint8_t* p) noexcept nogil
    uint16_t ap_load_u16(const uint8_t* p) noexcept nogil
    uint32_t ap_load_u32(const uint8_t* p) noexcept nogil
    uint64_t ap_load_u64(const uint8_t* p) noexcept nogil
    int32_t ap_load_i32(const uint8_t* p) noexcept nogil
    int64_t ap_load_i64(const uint8_t* p) noexcept nogil
    void ap_store_u8(uint8_t* p, uint8_t v) noexcept nogil
    void ap_store_u16(uint8_t* p, uint16_t v) noexcept nogil
    void ap_store_u32(uint8_t* p, uint32_t v) noexcept nogil
    void ap_store_u64(uint8_t* p, uint64_t v) noexcept nogil
    void ap_store_i32(uint8_t* p, int32_t v) noexcept nogil
    void ap_store_i64(uint8_t* p, int64_t v) noexcept nogil
    PyObject* ap_decode_error_type()  # borrowed; NULL with an exception set on import failure


cdef struct ReadCursor:
    const uint8_t* buf
    Py_ssize_t length
    Py_ssize_t pos


cdef struct WriteCursor:
    uint8_t* buf
    Py_ssize_t capacity
    Py_ssize_t pos


cdef inline int decode_fail(str message) except -1:
    """Raise aeronpy._cursor.DecodeError(message): the one error type for malformed input."""
    cdef PyObject* error_type = ap_decode_error_type()
    if error_type == NULL:
        return -1
    raise (<object>error_type)(message)


cdef inline void rc_init(ReadCursor* c, const uint8_t* buf, Py_ssize_t length) noexcept nogil:
    # Some buffer exporters hand out NULL for an empty buffer; keep pointer arithmetic defined.
    c.buf = buf if buf != NULL else <const uint8_t*>b""
    c.length = length
    c.pos = 0


cdef inline Py_ssize_t rc_remaining(const ReadCursor* c) noexcept nogil:
    return c.length - c.pos


cdef inline const uint8_t* rc_take(ReadCursor* c, Py_ssize_t n, str what) except NULL:
    """Consume n bytes and return a pointer to them, or raise DecodeError if fewer are left."""
    cdef const uint8_t* start
    if n < 0 or n > c.length - c.pos:
        decode_fail(f"{what}: needs {n} bytes at offset {c.pos}, {c.length - c.pos} left")
        return NULL
    start = c.buf + c.pos
    c.pos += n
    return start


cdef inline const uint8_t* rc_take_prefixed(ReadCursor* c, int prefix_bytes, Py_ssize_t* out_length,
                                            str what) except NULL:
    """Consume a u16 (prefix_bytes=2) or u32 (4) length field and that many bytes after it."""
    cdef const uint8_t* field = rc_take(c, prefix_bytes, what)
    cdef Py_ssize_t n = ap_load_u16(field) if prefix_bytes == 2 else <Py_ssize_t>ap_load_u32(field)
    if n > c.length - c.pos:
        decode_fail(f"{what}: length field says {n} bytes at offset {c.pos}, {c.length - c.pos} left")
        return NULL
    out_length[0] = n
    cdef const uint8_t* start = c.buf + c.pos
    c.pos += n
    return start


cdef inline int rc_expect_end(const ReadCursor* c, str what) except -1:
    """Reject trailing bytes: a message must fill its buffer exactly."""
    if c.pos != c.length:
        decode_fail(f"{what}: {c.length - c.pos} trailing bytes after offset {c.pos}")
        return -1
    return 0


cdef inline void wc_init(WriteCursor* c, uint8_t* buf, Py_ssize_t capacity) noexcept nogil:
    c.buf = buf
    c.capacity = capacity
    c.pos = 0


cdef inline uint8_t* wc_take(WriteCursor* c, Py_ssize_t n) except NULL:
    """Reserve n bytes and return a pointer to them, or raise ValueError if they do not fit."""
    cdef uint8_t* start
    if n < 0 or n > c.capacity - c.pos:
        raise ValueError(f"does not fit: {n} bytes needed at offset {c.pos}, "
                         f"{c.capacity - c.pos} available")
    start = c.buf + c.pos
    c.pos += n
    return start
