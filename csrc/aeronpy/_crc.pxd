# C-level contract of aeronpy._crc (docs/internal/interfaces.md 1.1).
from libc.stdint cimport uint32_t

# CRC-32C of p[0:n] continuing from a previous *finished* CRC (0 to start). Safe without the
# GIL; uses the hardware instruction when the CPU has it.
cdef uint32_t crc32c_update(uint32_t crc, const unsigned char* p, size_t n) noexcept nogil
