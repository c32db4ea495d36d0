"""Frame layer: the 24-byte versioned header and the DATA/NAK/STATUS/HEARTBEAT/SETUP bodies.

Flyweights over buffers: ``FrameWriter`` holds the header fields a sender stamps on every
frame and encodes whole frames in one allocation; ``FrameReader`` parses a datagram in place
into reusable fields (no object per frame). Every length is checked against the buffer before
anything is read, and ``FrameError`` (a ``ValueError``) is the only exception malformed input
can raise. With a ``secret`` a frame ends in a 16-byte keyed BLAKE2b MAC over header and body,
checked in constant time. A frame between members is also bound to the member it is for (the
MAC's personalisation names the destination), so one captured on its way to one member fails
at any other. Wire layout: docs/transport.md.
"""
import hashlib
import hmac

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.string cimport memcpy

HEADER_LENGTH = FRAME_HEADER_LENGTH
DATA_HEADER = DATA_HEADER_LENGTH
MAC_BYTES = MAC_LENGTH
VERSION = FRAME_VERSION
MAC_FLAG = FLAG_MAC
DATA = TYPE_DATA
NAK = TYPE_NAK
STATUS = TYPE_STATUS
HEARTBEAT = TYPE_HEARTBEAT
SETUP = TYPE_SETUP
BEGIN = FRAGMENT_BEGIN
END = FRAGMENT_END
UNFRAGMENTED = FRAGMENT_BEGIN | FRAGMENT_END
TYPE_NAMES = {TYPE_DATA: "DATA", TYPE_NAK: "NAK", TYPE_STATUS: "STATUS",
              TYPE_HEARTBEAT: "HEARTBEAT", TYPE_SETUP: "SETUP"}


class FrameError(ValueError):
    """A datagram is not a well-formed frame; ``reason`` names the broken rule."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        super().__init__(f"malformed frame ({reason}){': ' + detail if detail else ''}")


cdef inline void _put_u16(unsigned char* p, uint16_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF

cdef inline void _put_u32(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF

cdef inline void _put_i64(unsigned char* p, int64_t v) noexcept nogil:
    cdef uint64_t u = <uint64_t>v
    cdef int i
    for i in range(8):
        p[i] = (u >> (8 * i)) & 0xFF

cdef inline uint16_t _get_u16(const unsigned char* p) noexcept nogil:
    return <uint16_t>p[0] | (<uint16_t>p[1] << 8)

cdef inline uint32_t _get_u32(const unsigned char* p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)

cdef inline int64_t _get_i64(const unsigned char* p) noexcept nogil:
    cdef uint64_t u = 0
    cdef int i
    for i in range(8):
        u |= (<uint64_t>p[i]) << (8 * i)
    return <int64_t>u


def mac_person(destination) -> bytes:
    """BLAKE2b personalisation (16 bytes) binding a MAC to the member a frame is for; b"" for
    frames with no single member destination (none are sent with a secret today)."""
    if destination is None:
        return b""
    if not 0 <= destination < 2**31:
        raise ValueError(f"destination must be a member id (0 .. 2**31-1), got {destination}")
    return b"aeronpy-to:" + (<int>destination).to_bytes(4, "little") + b"\0"


def _mac_factory(bytes secret, destination=None):
    if secret is None:
        return None
    if not 1 <= len(secret) <= 64:
        raise ValueError("secret must be 1..64 bytes (a BLAKE2b key)")
    return hashlib.blake2b(key=secret, digest_size=MAC_LENGTH, person=mac_person(destination))


cdef class FrameWriter:
    """Encodes frames stamped with this sender's header fields (and MAC, with a secret).

    ``destination``: the member id the frames are for; with a secret the MAC is bound to it
    (a reader with another ``destination`` refuses them)."""

    def __init__(self, int32_t cluster_id, int32_t sender_id, int32_t stream_id, int32_t epoch,
                 secret=None, destination=None):
        self.cluster_id = cluster_id
        self.sender_id = sender_id
        self.stream_id = stream_id
        self.epoch = epoch
        self.secret = None if secret is None else bytes(secret)
        self.destination = destination
        self._mac = _mac_factory(self.secret, destination)

    cdef void _header(self, unsigned char* p, uint32_t frame_length, int frame_type) noexcept:
        _put_u32(p, frame_length)
        p[4] = FRAME_VERSION
        p[5] = FLAG_MAC if self._mac is not None else 0
        _put_u16(p + 6, <uint16_t>frame_type)
        _put_u32(p + 8, <uint32_t>self.cluster_id)
        _put_u32(p + 12, <uint32_t>self.sender_id)
        _put_u32(p + 16, <uint32_t>self.stream_id)
        _put_u32(p + 20, <uint32_t>self.epoch)

    cdef bytes _finish(self, bytearray frame):
        if self._mac is None:
            return bytes(frame)
        mac = self._mac.copy()
        mac.update(frame)
        return bytes(frame) + mac.digest()

    cpdef bytes data(self, int64_t position, int fragment_flags, int32_t message_length, payload):
        """DATA frame carrying ``payload`` at stream ``position``."""
        cdef Py_buffer pb
        cdef bytes out
        cdef unsigned char* p
        cdef Py_ssize_t total
        if position < 0 or fragment_flags & ~(FRAGMENT_BEGIN | FRAGMENT_END):
            raise ValueError("bad DATA frame arguments")
        PyObject_GetBuffer(payload, &pb, PyBUF_SIMPLE)
        try:
            if pb.len < 1 or pb.len > message_length:
                raise ValueError("DATA payload must be 1..message_length bytes")
            total = DATA_HEADER_LENGTH + pb.len
            out = PyBytes_FromStringAndSize(NULL, total + (MAC_LENGTH if self._mac is not None else 0))
            p = <unsigned char*><char*>out
            self._header(p, <uint32_t>total, TYPE_DATA)
            _put_i64(p + 24, position)
            p[32] = <unsigned char>fragment_flags
            p[33] = 0
            _put_u16(p + 34, 0)
            _put_u32(p + 36, <uint32_t>message_length)
            memcpy(p + DATA_HEADER_LENGTH, pb.buf, pb.len)
        finally:
            PyBuffer_Release(&pb)
        cdef bytes digest
        if self._mac is not None:
            mac = self._mac.copy()
            mac.update(memoryview(out)[:total])
            digest = mac.digest()
            memcpy(p + total, <const char*>digest, MAC_LENGTH)
        return out

    cdef bytes _control(self, int frame_type, int64_t position, int32_t value, int32_t stream_epoch,
                        Py_ssize_t total):
        cdef bytearray frame = bytearray(total)
        cdef unsigned char* p = <unsigned char*><char*>frame
        self._header(p, <uint32_t>total, frame_type)
        _put_i64(p + 24, position)
        if total == CONTROL_FRAME_LENGTH:
            _put_u32(p + 32, <uint32_t>value)
            _put_u32(p + 36, <uint32_t>stream_epoch)
        return self._finish(frame)

    cpdef bytes nak(self, int32_t stream_epoch, int64_t position, int32_t length):
        """NAK: ask the sender of stream ``stream_epoch`` to resend ``[position, position+length)``."""
        if position < 0 or length < 1:
            raise ValueError("bad NAK arguments")
        return self._control(TYPE_NAK, position, length, stream_epoch, CONTROL_FRAME_LENGTH)

    cpdef bytes status(self, int32_t stream_epoch, int64_t consumed_position, int32_t window_bytes):
        """STATUS: consumed position and receive window for the stream of ``stream_epoch``."""
        if consumed_position < 0 or window_bytes < 0:
            raise ValueError("bad STATUS arguments")
        return self._control(TYPE_STATUS, consumed_position, window_bytes, stream_epoch,
                             CONTROL_FRAME_LENGTH)

    cpdef bytes heartbeat(self, int64_t position):
        """HEARTBEAT: liveness, and the sender's tail position for tail-loss detection."""
        if position < 0:
            raise ValueError("bad HEARTBEAT position")
        return self._control(TYPE_HEARTBEAT, position, 0, 0, POSITION_FRAME_LENGTH)

    cpdef bytes setup(self, int64_t start_position):
        """SETUP: the lowest position the sender still holds; a receiver behind it jumps there."""
        if start_position < 0:
            raise ValueError("bad SETUP position")
        return self._control(TYPE_SETUP, start_position, 0, 0, POSITION_FRAME_LENGTH)


cdef class FrameReader:
    """Parses frames in place; the fields describe the last frame ``read()`` / ``read_at()``."""

    def __init__(self, secret=None, destination=None):
        """``destination``: this member's id; with a secret, only frames MACed for it pass
        ``mac_ok`` (FrameWriter's ``destination``)."""
        self.secret = None if secret is None else bytes(secret)
        self.destination = destination
        self._mac = _mac_factory(self.secret, destination)

    cpdef int read(self, buf) except -1:
        """Parse ``buf`` (a datagram holding exactly one frame); returns the frame type or
        raises ``FrameError``. The MAC is not checked here: ``mac_ok()`` does that, after
        cheaper admission checks."""
        return self.read_at(buf, 0, True)

    cpdef int read_at(self, buf, Py_ssize_t offset, bint whole=False) except -1:
        """Parse the frame starting at ``offset`` of a datagram that may pack several frames
        back to back; ``frame_end`` is then where the next one starts. With ``whole`` the frame
        must end exactly at the end of ``buf``. Returns the frame type or raises ``FrameError``."""
        cdef Py_buffer b
        cdef const unsigned char* p
        cdef Py_ssize_t n, flen, total
        cdef int ftype, flags
        PyObject_GetBuffer(buf, &b, PyBUF_SIMPLE)
        try:
            if offset < 0 or offset > b.len:
                raise FrameError("short", f"offset {offset} outside a {b.len}-byte datagram")
            n = b.len - offset
            p = <const unsigned char*>b.buf + offset
            if n < FRAME_HEADER_LENGTH:
                raise FrameError("short", f"{n} bytes")
            flen = _get_u32(p)
            if p[4] != FRAME_VERSION:
                raise FrameError("version", f"version {p[4]}")
            flags = p[5]
            if flags & ~FLAG_MAC:
                raise FrameError("flags", f"unknown flags 0x{flags:02x}")
            total = flen + (MAC_LENGTH if flags & FLAG_MAC else 0)
            if flen < FRAME_HEADER_LENGTH or total > n or (whole and total != n):
                raise FrameError("length", f"frame_length {flen} for a {n}-byte datagram")
            ftype = _get_u16(p + 6)
            self.frame_type = ftype
            self.flags = flags
            self.frame_length = flen
            self.frame_offset = offset
            self.frame_end = offset + total
            self.cluster_id = <int32_t>_get_u32(p + 8)
            self.sender_id = <int32_t>_get_u32(p + 12)
            self.stream_id = <int32_t>_get_u32(p + 16)
            self.epoch = <int32_t>_get_u32(p + 20)
            self.payload_offset = 0
            self.payload_length = 0
            if ftype == TYPE_DATA:
                if flen <= DATA_HEADER_LENGTH:
                    raise FrameError("body", "DATA without payload")
                self.position = _get_i64(p + 24)
                self.fragment_flags = p[32]
                self.message_length = <int32_t>_get_u32(p + 36)
                self.payload_offset = offset + DATA_HEADER_LENGTH
                self.payload_length = flen - DATA_HEADER_LENGTH
                if self.fragment_flags & ~(FRAGMENT_BEGIN | FRAGMENT_END) or p[33] or _get_u16(p + 34):
                    raise FrameError("body", "DATA reserved bits set")
                if self.message_length < self.payload_length:
                    raise FrameError("body", "DATA payload longer than its message")
                if self.fragment_flags == (FRAGMENT_BEGIN | FRAGMENT_END) and \
                        self.message_length != self.payload_length:
                    raise FrameError("body", "unfragmented DATA length mismatch")
            elif ftype == TYPE_NAK or ftype == TYPE_STATUS:
                if flen != CONTROL_FRAME_LENGTH:
                    raise FrameError("body", f"{TYPE_NAMES[ftype]} of {flen} bytes")
                self.position = _get_i64(p + 24)
                self.length = <int32_t>_get_u32(p + 32)
                self.stream_epoch = <int32_t>_get_u32(p + 36)
                if ftype == TYPE_NAK and self.length < 1:
                    raise FrameError("body", "NAK length < 1")
                if self.length < 0:
                    raise FrameError("body", "negative window")
            elif ftype == TYPE_HEARTBEAT or ftype == TYPE_SETUP:
                if flen != POSITION_FRAME_LENGTH:
                    raise FrameError("body", f"{TYPE_NAMES[ftype]} of {flen} bytes")
                self.position = _get_i64(p + 24)
            else:
                raise FrameError("type", f"frame type {ftype}")
            if self.position < 0:
                raise FrameError("body", "negative position")
            return ftype
        finally:
            PyBuffer_Release(&b)

    cpdef bint mac_ok(self, buf):
        """True when the last frame ``read()`` from ``buf`` carries a valid MAC, or when no
        secret is configured. A frame without a MAC fails when a secret is configured."""
        if self._mac is None:
            return True
        if not (self.flags & FLAG_MAC):
            return False
        view = memoryview(buf)
        start = self.frame_offset
        end = start + self.frame_length
        mac = self._mac.copy()
        mac.update(view[start:end])
        return hmac.compare_digest(mac.digest(), view[end:end + MAC_LENGTH])

    def payload(self, buf) -> memoryview:
        """The payload of the last DATA frame read from ``buf`` (a view, no copy)."""
        return memoryview(buf)[self.payload_offset:self.payload_offset + self.payload_length]


def decode(buf) -> dict:
    """Every field of one frame, for tests and debugging (the hot path uses ``FrameReader``)."""
    cdef FrameReader r = FrameReader()
    ftype = r.read(buf)
    out = {"frame_type": ftype, "flags": r.flags, "cluster_id": r.cluster_id,
           "sender_id": r.sender_id, "stream_id": r.stream_id, "epoch": r.epoch,
           "frame_length": r.frame_length, "position": r.position}
    if ftype == TYPE_DATA:
        out.update(fragment_flags=r.fragment_flags, message_length=r.message_length,
                   payload=bytes(r.payload(buf)))
    elif ftype == TYPE_NAK:
        out.update(length=r.length, stream_epoch=r.stream_epoch)
    elif ftype == TYPE_STATUS:
        out.update(window_bytes=r.length, stream_epoch=r.stream_epoch)
    return out
