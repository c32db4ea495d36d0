# C-level contract of aeronpy._segscan (archive record codec; docs/archive-format.md).
from libc.stdint cimport uint32_t

cdef enum:
    RECORD_HEADER = 32   # bytes of an archive record header
    PACKED_HEADER = 16   # bytes of a packed-entry header (docs/internal/interfaces.md 1.2)

cdef enum:
    ST_END = 0
    ST_SHORT = 1
    ST_BAD_LENGTH = 2
    ST_BAD_CRC = 3
    ST_BAD_INDEX = 4
    ST_BAD_TERM = 5
    ST_BAD_FIELD = 6
    ST_LIMIT = 7

# CRC-32C a record must carry: bytes [0, 28) of its header, then its payload.
# `rec` points at the record, `frame_length` (>= RECORD_HEADER) is its full length.
cdef uint32_t record_crc(const unsigned char* rec, size_t frame_length) noexcept nogil
