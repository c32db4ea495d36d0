"""CRC-32C (Castagnoli) for the archive's record checksums.

The archive checksums every record it writes and verifies them on recovery, so this sits on
the write path: it uses the CPU's CRC instruction when present (chosen at import time) and a
slice-by-8 table otherwise. The GIL is released for buffers above 4 KiB so a checksum of a
large segment does not stall other threads.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport uint32_t

cdef extern from "crc32c_impl.h" nogil:
    void aeronpy_crc32c_init()
    const char* aeronpy_crc32c_impl_name()
    uint32_t aeronpy_crc32c_update(uint32_t crc, const unsigned char* p, size_t n)
    uint32_t aeronpy_crc32c_update_portable(uint32_t crc, const unsigned char* p, size_t n)

aeronpy_crc32c_init()

# Which implementation this process uses: "sse4.2", "armv8-crc" or "portable".
IMPLEMENTATION: str = aeronpy_crc32c_impl_name().decode("ascii")

DEF _NOGIL_THRESHOLD = 4096


cdef uint32_t crc32c_update(uint32_t crc, const unsigned char* p, size_t n) noexcept nogil:
    return aeronpy_crc32c_update(crc, p, n)


cdef uint32_t _checksum(object data, uint32_t crc, bint portable) except? 0:
    cdef Py_buffer view
    cdef uint32_t result
    cdef const unsigned char* p
    cdef size_t n
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)  # TypeError for non-buffers
    try:
        p = <const unsigned char*>view.buf
        n = <size_t>view.len
        if n > _NOGIL_THRESHOLD:
            with nogil:
                if portable:
                    result = aeronpy_crc32c_update_portable(crc, p, n)
                else:
                    result = aeronpy_crc32c_update(crc, p, n)
        elif portable:
            result = aeronpy_crc32c_update_portable(crc, p, n)
        else:
            result = aeronpy_crc32c_update(crc, p, n)
    finally:
        PyBuffer_Release(&view)
    return result


def crc32c(data, uint32_t crc=0) -> int:
    """CRC-32C of any contiguous buffer; pass a previous result as ``crc`` to continue it.

    ``crc32c(b, crc32c(a)) == crc32c(a + b)``. Non-buffers raise TypeError, non-contiguous
    buffers BufferError, a ``crc`` outside 0..2**32-1 OverflowError.
    """
    return _checksum(data, crc, False)


def _crc32c_portable(data, uint32_t crc=0) -> int:
    """The slice-by-8 table implementation only, so tests can check it against the hardware."""
    return _checksum(data, crc, True)
