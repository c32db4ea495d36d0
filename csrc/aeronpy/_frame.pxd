# cdef contract of aeronpy._frame: the versioned frame layer (one or more whole frames per UDP datagram).
# Layout and rules: docs/transport.md and docs/internal/interfaces.md 1.3.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef enum:
    FRAME_HEADER_LENGTH = 24
    DATA_HEADER_LENGTH = 40
    CONTROL_FRAME_LENGTH = 40     # NAK and STATUS
    POSITION_FRAME_LENGTH = 32    # HEARTBEAT and SETUP
    MAC_LENGTH = 16
    FRAME_VERSION = 1
    FLAG_MAC = 0x01
    TYPE_DATA = 1
    TYPE_NAK = 2
    TYPE_STATUS = 3
    TYPE_HEARTBEAT = 4
    TYPE_SETUP = 5
    FRAGMENT_BEGIN = 1
    FRAGMENT_END = 2

cdef class FrameWriter:
    cdef readonly int32_t cluster_id
    cdef readonly int32_t sender_id
    cdef readonly int32_t stream_id
    cdef readonly int32_t epoch
    cdef readonly bytes secret
    cdef readonly object destination          # member id the MAC is bound to, or None
    cdef object _mac
    cdef void _header(self, unsigned char* p, uint32_t frame_length, int frame_type) noexcept
    cdef bytes _finish(self, bytearray frame)
    cdef bytes _control(self, int frame_type, int64_t position, int32_t value, int32_t stream_epoch,
                        Py_ssize_t total)
    cpdef bytes data(self, int64_t position, int fragment_flags, int32_t message_length, payload)
    cpdef bytes nak(self, int32_t stream_epoch, int64_t position, int32_t length)
    cpdef bytes status(self, int32_t stream_epoch, int64_t consumed_position, int32_t window_bytes)
    cpdef bytes heartbeat(self, int64_t position)
    cpdef bytes setup(self, int64_t start_position)

cdef class FrameReader:
    cdef readonly bytes secret
    cdef readonly object destination          # this member's id (MACs bound to it), or None
    cdef object _mac
    cdef readonly int frame_type
    cdef readonly int flags
    cdef readonly int32_t cluster_id
    cdef readonly int32_t sender_id
    cdef readonly int32_t stream_id
    cdef readonly int32_t epoch
    cdef readonly Py_ssize_t frame_length
    cdef readonly int64_t position
    cdef readonly int fragment_flags
    cdef readonly int32_t message_length
    cdef readonly int32_t length
    cdef readonly int32_t stream_epoch
    cdef readonly Py_ssize_t payload_offset
    cdef readonly Py_ssize_t payload_length
    cdef readonly Py_ssize_t frame_offset
    cdef readonly Py_ssize_t frame_end
    cpdef int read(self, buf) except -1
    cpdef int read_at(self, buf, Py_ssize_t offset, bint whole=*) except -1
    cpdef bint mac_ok(self, buf)
