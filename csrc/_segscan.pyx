"""Segment record codec: encode packed log entries into checksummed archive records, and scan
records back (verifying each one) into packed entries for `LogIndex.append_packed`.

Both directions run once per byte of the log (the append path and recovery), so they are here
rather than in Python: recovery of a million small entries must take well under a second.

Record layout (little-endian, 32-byte header, no padding; docs/archive-format.md):

    0  u32 frame_length   header + payload; 0 means "no record here" (preallocated zeroes)
    4  u16 type
    6  u16 flags          0
    8  i64 term
    16 i64 index
    24 u32 reserved       0
    28 u32 crc32c         CRC-32C of bytes [0, 28) followed by the payload

Packed entry layout (docs/internal/interfaces.md 1.2): ``u32 payload_length | u16 type |
u16 flags | i64 term | payload``. Bytes 4..16 of a record equal bytes 4..16 of its packed entry.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize, PyByteArray_Resize
from libc.stdint cimport int64_t, uint16_t, uint32_t
from libc.string cimport memcpy, memset

from aeronpy._crc cimport crc32c_update

RECORD_HEADER_BYTES = RECORD_HEADER
PACKED_HEADER_BYTES = PACKED_HEADER

# scan_records status codes (why the scan stopped)
SCAN_END = ST_END              # reached `end`, or a zero frame_length (no record written here)
SCAN_SHORT = ST_SHORT          # frame runs past `end` (torn, or a wild length)
SCAN_BAD_LENGTH = ST_BAD_LENGTH  # frame_length below the header size
SCAN_BAD_CRC = ST_BAD_CRC
SCAN_BAD_INDEX = ST_BAD_INDEX  # index is not the next one expected
SCAN_BAD_TERM = ST_BAD_TERM    # term lower than the one before
SCAN_BAD_FIELD = ST_BAD_FIELD  # flags or reserved not zero
SCAN_LIMIT = ST_LIMIT          # stopped after max_count records


cdef inline uint32_t _ld32(const unsigned char* p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline int64_t _ld64(const unsigned char* p) noexcept nogil:
    cdef int64_t v
    memcpy(&v, p, 8)
    return v


cdef uint32_t record_crc(const unsigned char* rec, size_t frame_length) noexcept nogil:
    cdef uint32_t crc = crc32c_update(0, rec, 28)
    return crc32c_update(crc, rec + RECORD_HEADER, frame_length - RECORD_HEADER)


def encode_records(packed, Py_ssize_t count, int64_t first_index):
    """Turn ``count`` packed entries (indexes ``first_index``...) into archive records.

    Returns ``(records: bytearray, ends: bytes, last_term)`` where ``ends`` holds, as native
    int64, the end offset of each record inside ``records`` (so a batch can be split at a
    segment boundary). Raises ValueError on a malformed packed blob.
    """
    cdef Py_buffer src
    cdef const unsigned char* p
    cdef unsigned char* out
    cdef int64_t* ends
    cdef Py_ssize_t n, pos = 0, opos = 0, done = 0
    cdef uint32_t plen, flen, crc
    cdef int64_t term = 0, index
    if count < 0:
        raise ValueError("count must be >= 0")
    PyObject_GetBuffer(packed, &src, PyBUF_SIMPLE)
    try:
        p = <const unsigned char*>src.buf
        n = src.len
        if count > n // PACKED_HEADER:    # (not count * PACKED_HEADER: it can wrap around)
            raise ValueError(f"packed blob of {n} bytes cannot hold {count} entries")
        # each record is exactly (RECORD_HEADER - PACKED_HEADER) longer than its packed entry
        records = PyByteArray_FromStringAndSize(NULL, n + count * (RECORD_HEADER - PACKED_HEADER))
        ends_obj = PyByteArray_FromStringAndSize(NULL, count * 8)
        out = <unsigned char*>PyByteArray_AS_STRING(records)
        ends = <int64_t*>PyByteArray_AS_STRING(ends_obj)
        with nogil:
            while done < count:
                if n - pos < PACKED_HEADER:
                    break
                plen = _ld32(p + pos)
                if <Py_ssize_t>plen > n - pos - PACKED_HEADER:
                    break
                if plen > 0xFFFFFFFFU - RECORD_HEADER:   # its frame_length would not fit a u32
                    break
                term = _ld64(p + pos + 8)
                index = first_index + done
                flen = plen + RECORD_HEADER
                memcpy(out + opos, &flen, 4)
                memcpy(out + opos + 4, p + pos + 4, 12)
                memcpy(out + opos + 16, &index, 8)
                memset(out + opos + 24, 0, 4)
                memcpy(out + opos + RECORD_HEADER, p + pos + PACKED_HEADER, plen)
                crc = record_crc(out + opos, flen)
                memcpy(out + opos + 28, &crc, 4)
                pos += PACKED_HEADER + plen
                opos += flen
                ends[done] = opos
                done += 1
        if done != count or pos != n:
            raise ValueError(f"malformed packed blob: {count} entries expected in {n} bytes, "
                             f"{done} entries parsed ending at byte {pos}")
    finally:
        PyBuffer_Release(&src)
    return records, bytes(ends_obj), term


def scan_records(buf, Py_ssize_t start, Py_ssize_t end, int64_t expected_index,
                 int64_t min_term, Py_ssize_t max_count=-1):
    """Verify records in ``buf[start:end]`` from ``expected_index`` on, stopping at the first
    record that is absent, torn or wrong.

    Returns ``(status, stop_offset, count, last_term, packed, ends)``: ``count`` valid records
    end at ``stop_offset``; ``packed`` holds them in packed-entry format (ready for
    ``LogIndex.append_packed``); ``ends`` their end offsets in ``buf`` as native int64;
    ``status`` one of the SCAN_* codes saying why the scan stopped at ``stop_offset``.
    """
    cdef Py_buffer src
    cdef const unsigned char* p
    cdef unsigned char* out
    cdef int64_t* ends
    cdef Py_ssize_t pos, opos = 0, count = 0, cap_records
    cdef uint32_t flen, plen, crc
    cdef uint16_t flags
    cdef int64_t term, last_term = min_term, index = expected_index
    cdef int status = ST_END
    PyObject_GetBuffer(buf, &src, PyBUF_SIMPLE)
    try:
        p = <const unsigned char*>src.buf
        if start < 0 or end > src.len or start > end:
            raise ValueError(f"bad scan range [{start}, {end}) of a {src.len}-byte buffer")
        pos = start
        # packed entries are smaller than records, so the records' size bounds the output
        packed = PyByteArray_FromStringAndSize(NULL, end - start)
        cap_records = (end - start) // RECORD_HEADER
        ends_obj = PyByteArray_FromStringAndSize(NULL, cap_records * 8)
        out = <unsigned char*>PyByteArray_AS_STRING(packed)
        ends = <int64_t*>PyByteArray_AS_STRING(ends_obj)
        with nogil:
            while True:
                if max_count >= 0 and count >= max_count:
                    status = ST_LIMIT
                    break
                if end - pos < 4:
                    status = ST_END if (end - pos == 0 or _tail_zero(p + pos, end - pos)) else ST_SHORT
                    break
                flen = _ld32(p + pos)
                if flen == 0:
                    status = ST_END
                    break
                if flen < RECORD_HEADER:
                    status = ST_BAD_LENGTH
                    break
                if <Py_ssize_t>flen > end - pos:
                    status = ST_SHORT
                    break
                if _ld32(p + pos + 28) != record_crc(p + pos, flen):
                    status = ST_BAD_CRC
                    break
                if _ld64(p + pos + 16) != index:
                    status = ST_BAD_INDEX
                    break
                term = _ld64(p + pos + 8)
                if term < last_term:
                    status = ST_BAD_TERM
                    break
                memcpy(&flags, p + pos + 6, 2)
                if flags != 0 or _ld32(p + pos + 24) != 0:
                    status = ST_BAD_FIELD
                    break
                plen = flen - RECORD_HEADER
                memcpy(out + opos, &plen, 4)
                memcpy(out + opos + 4, p + pos + 4, 12)
                memcpy(out + opos + PACKED_HEADER, p + pos + RECORD_HEADER, flen - RECORD_HEADER)
                opos += PACKED_HEADER + flen - RECORD_HEADER
                pos += flen
                ends[count] = pos
                count += 1
                index += 1
                last_term = term
        PyByteArray_Resize(packed, opos)
    finally:
        PyBuffer_Release(&src)
    return status, pos, count, last_term, packed, bytes(ends_obj[:count * 8])


cdef inline bint _tail_zero(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] != 0:
            return False
    return True


def last_nonzero(buf, Py_ssize_t start) -> int:
    """Offset just past the last non-zero byte of ``buf`` at or after ``start`` (``start`` if
    none): how far a torn tail's debris reaches, so recovery can scrub exactly that much."""
    cdef Py_buffer src
    cdef const unsigned char* p
    cdef Py_ssize_t i
    if start < 0:
        raise ValueError(f"last_nonzero: start {start} < 0")
    PyObject_GetBuffer(buf, &src, PyBUF_SIMPLE)
    try:
        p = <const unsigned char*>src.buf
        i = src.len
        with nogil:
            while i > start and p[i - 1] == 0:
                i -= 1
    finally:
        PyBuffer_Release(&src)
    return max(i, start)


def record_crc32c(rec) -> int:
    """The CRC a record (header + payload) should carry; for tests and tools."""
    cdef Py_buffer src
    cdef uint32_t crc
    PyObject_GetBuffer(rec, &src, PyBUF_SIMPLE)
    try:
        if src.len < RECORD_HEADER:
            raise ValueError("a record is at least 32 bytes")
        crc = record_crc(<const unsigned char*>src.buf, src.len)
    finally:
        PyBuffer_Release(&src)
    return crc


def rebase_ends(ends, Py_ssize_t lo, Py_ssize_t hi, int64_t delta) -> bytes:
    """``ends[lo:hi] + delta`` (native int64 in, native int64 out): record end offsets of a
    batch moved to where the batch lands in its segment file."""
    cdef Py_buffer src
    cdef const int64_t* p
    cdef int64_t* q
    cdef Py_ssize_t i
    PyObject_GetBuffer(ends, &src, PyBUF_SIMPLE)
    try:
        if lo < 0 or hi < lo or hi > src.len // 8:
            raise ValueError(f"bad range [{lo}, {hi}) of {src.len // 8} ends")
        out = PyByteArray_FromStringAndSize(NULL, (hi - lo) * 8)
        p = <const int64_t*>src.buf
        q = <int64_t*>PyByteArray_AS_STRING(out)
        for i in range(hi - lo):
            q[i] = p[lo + i] + delta
    finally:
        PyBuffer_Release(&src)
    return bytes(out)
