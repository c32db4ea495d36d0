# cython: freethreading_compatible = False
"""UDP poll loop: non-blocking IPv4 or IPv6 datagrams in batches over preallocated arenas.

Why compiled: one ``poll()`` receives a whole batch with a single ``recvmmsg`` on Linux and
hands each datagram to the handler as a memoryview slice of a static arena (no bytes object
per datagram); one ``flush()`` sends every queued datagram with a single ``sendmmsg``. Other
platforms (and Linux with ``use_mmsg=False``) use a ``recvfrom``/``sendto`` loop with the same
behaviour. Network errors (EAGAIN, ECONNREFUSED, ENOBUFS, ...) are counted, never raised.

Peers are named by an *address key*, a plain int that is cheap to hash and compare, unlike a
``(host, port)`` tuple per datagram: ``(ipv4_host_order << 16) | port`` for IPv4 (below
2**48), and for IPv6 the big-endian number of the bytes ``01 | 16 address bytes | port``
(above 2**144). A socket has one family, fixed by its bind address, and takes only its own
family's keys.
"""
import socket as _socket

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.buffer cimport PyBUF_READ
from libc.stdint cimport uint64_t

from ipaddress import IPv6Address as _IPv6Address

from aeronpy.endpoints import resolve as _resolve

HAVE_MMSG = bool(UDP_HAVE_MMSG)
DEFAULT_BATCH = 64
DEFAULT_MAX_DATAGRAM_BYTES = 2048
_KEY4_LIMIT = 1 << 48
_KEY6_BYTES = UDP_KEY6_BYTES


def address_key(str host, int port) -> int:
    """Address key of ``host`` (an IPv4 or IPv6 address, or a name: its IPv4 address if it
    has one, else its IPv6 address) and ``port``."""
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port}")
    family, address = _resolve(host)
    if family == _socket.AF_INET6:
        packed = _IPv6Address(address).packed
        return int.from_bytes(b"\x01" + packed + port.to_bytes(2, "big"), "big")
    packed = _socket.inet_aton(address)
    return (int.from_bytes(packed, "big") << 16) | port


def address_family(key) -> int:
    """``socket.AF_INET`` or ``socket.AF_INET6``: the family of an address key."""
    return _socket.AF_INET if key < _KEY4_LIMIT else _socket.AF_INET6


def address_tuple(key) -> tuple:
    """``(host, port)`` of an address key (an IPv6 host as `ipaddress` writes it, not
    ``socket.inet_ntop``: a library may replace that one, as PySyncObj's win_inet_pton does on
    every platform, with one that fails off Windows)."""
    if key < _KEY4_LIMIT:
        host = _socket.inet_ntoa(int(key >> 16).to_bytes(4, "big"))
        return host, int(key & 0xFFFF)
    raw = int(key).to_bytes(_KEY6_BYTES, "big")
    if raw[0] != 1:
        raise ValueError(f"not an address key: {key!r}")
    return str(_IPv6Address(raw[1:17])), int.from_bytes(raw[17:19], "big")


cdef class UdpSocket:
    """A non-blocking UDP socket (IPv4, or IPv6 when ``bind_host`` is an IPv6 address or a
    name with only an IPv6 address) with a batched receive arena and a queued send batch.
    An IPv6 socket is IPv6-only (``IPV6_V6ONLY``): it neither sends to nor hears IPv4 peers.

    ``poll(handler, limit)`` calls ``handler(address_key, datagram)`` where ``datagram`` is a
    read-only memoryview valid only during the call (the arena is reused). Datagrams longer
    than ``max_datagram_bytes`` are dropped and counted as ``truncated``.
    """

    def __cinit__(self):
        self.closed = True

    def __init__(self, str bind_host="127.0.0.1", int bind_port=0, *, int batch=DEFAULT_BATCH,
                 int max_datagram_bytes=DEFAULT_MAX_DATAGRAM_BYTES, int rcvbuf_bytes=0,
                 int sndbuf_bytes=0, bint use_mmsg=True):
        if batch < 1 or batch > 1024:
            raise ValueError(f"batch must be in 1..1024, got {batch}")
        if max_datagram_bytes < 64 or max_datagram_bytes > 65507:
            raise ValueError(f"max_datagram_bytes must be in 64..65507, got {max_datagram_bytes}")
        self.use_mmsg = use_mmsg and UDP_HAVE_MMSG
        self.max_datagram_bytes = max_datagram_bytes
        family, address = _resolve(bind_host)
        sock = _socket.socket(family, _socket.SOCK_DGRAM)
        try:
            if family == _socket.AF_INET6:
                sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
            if rcvbuf_bytes > 0:
                sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, rcvbuf_bytes)
            if sndbuf_bytes > 0:
                sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, sndbuf_bytes)
            sock.bind((address, bind_port))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        # One spare byte per slot: a datagram that fills the whole slot was truncated.
        if udp_batch_init(&self._rx, batch, max_datagram_bytes + 1, family) != 0 or \
                udp_batch_init(&self._tx, batch, max_datagram_bytes + 1, family) != 0:
            udp_batch_free(&self._rx)
            udp_batch_free(&self._tx)
            sock.close()
            raise MemoryError("cannot allocate UDP batch arenas")
        self._sock = sock
        self.family = family
        self._v6 = family == _socket.AF_INET6
        self._fd = <udp_sock_t>sock.fileno()
        self._rx_view = PyMemoryView_FromMemory(<char*>self._rx.arena,
                                                <Py_ssize_t>batch * (max_datagram_bytes + 1),
                                                PyBUF_READ)
        self.closed = False

    def __dealloc__(self):
        udp_batch_free(&self._rx)
        udp_batch_free(&self._tx)

    @property
    def local_address(self) -> tuple:
        return self._sock.getsockname()

    @property
    def rcvbuf_bytes(self) -> int:
        return self._sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF)

    @property
    def sndbuf_bytes(self) -> int:
        return self._sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF)

    @property
    def batch(self) -> int:
        return self._rx.capacity

    @property
    def queued(self) -> int:
        return self._tx.count

    def fileno(self) -> int:
        return -1 if self.closed else self._sock.fileno()

    def counters(self) -> dict:
        """Snapshot of the socket's counters as plain ints."""
        c = self._c
        return {
            "datagrams_in": c.datagrams_in, "bytes_in": c.bytes_in,
            "datagrams_out": c.datagrams_out, "bytes_out": c.bytes_out,
            "send_would_block": c.send_would_block, "conn_refused": c.conn_refused,
            "nobufs": c.nobufs, "truncated": c.truncated, "oversize_out": c.oversize_out,
            "other_errors": c.other_errors, "frames_coalesced": c.frames_coalesced,
        }

    @property
    def datagrams_in(self): return self._c.datagrams_in
    @property
    def bytes_in(self): return self._c.bytes_in
    @property
    def datagrams_out(self): return self._c.datagrams_out
    @property
    def bytes_out(self): return self._c.bytes_out
    @property
    def truncated(self): return self._c.truncated

    def poll(self, handler, int limit=DEFAULT_BATCH) -> int:
        """Take up to ``limit`` datagrams off the socket (truncated ones, dropped and counted,
        included), calling ``handler(address_key, memoryview)`` for each whole one; returns how
        many were delivered. Never blocks, never raises on I/O errors
        (an exception raised by the handler propagates; the rest of its batch is lost)."""
        cdef int delivered = 0, taken = 0, n, i, want, slot = self._rx.slot_bytes
        cdef bint v6 = self._v6
        cdef unsigned char key6[32]
        cdef Py_ssize_t off
        if self.closed:
            return 0
        view = self._rx_view
        # ``taken`` counts datagrams taken off the socket, truncated ones too: counting only
        # those delivered, a flood of oversize datagrams kept one call looping while it lasted
        while taken < limit:
            want = limit - taken
            if want > self._rx.capacity:
                want = self._rx.capacity
            n = udp_recv_batch(self._fd, &self._rx, want, self.use_mmsg, &self._c)
            if n <= 0:
                break
            taken += n
            for i in range(n):
                if self._rx.lens[i] < 0:
                    continue
                off = <Py_ssize_t>i * slot
                delivered += 1
                if v6:
                    udp_key6_bytes(&self._rx, i, key6)
                    handler(int.from_bytes(PyBytes_FromStringAndSize(<char*>key6, UDP_KEY6_BYTES),
                                           "big"), view[off:off + self._rx.lens[i]])
                else:
                    handler(self._rx.keys[i], view[off:off + self._rx.lens[i]])
            if n < want:
                break
        return delivered

    cdef int _destination(self, object address_key, uint64_t *key, const udp_addr **to) except -1:
        """The C form of ``address_key`` for this socket: an IPv4 key in ``key`` (``to`` set
        to NULL), or an IPv6 address decoded into ``self._to`` (``to`` pointing at it) with its
        digest in ``key``.
        ValueError for a key of the other family or no key at all."""
        cdef uint64_t k
        cdef bytes raw
        if type(address_key) is int:
            if not self._v6:
                try:
                    k = address_key             # OverflowError when < 0 or >= 2**64
                except OverflowError:
                    k = <uint64_t>1 << 48
                if k >> 48 == 0:
                    key[0] = k
                    to[0] = NULL
                    return 0
            elif address_key.bit_length() == 8 * UDP_KEY6_BYTES - 7:   # marker byte 01
                raw = address_key.to_bytes(UDP_KEY6_BYTES, "big")
                udp_addr6_of_bytes(<const unsigned char*>raw, &self._to)
                key[0] = udp_addr_digest(&self._to)
                to[0] = &self._to
                return 0
        raise ValueError(f"{address_key!r} is not an address key of this socket's family "
                         f"({'IPv6' if self._v6 else 'IPv4'})")

    cpdef int queue(self, object address_key, object datagram) except -2:
        """Queue one datagram for the next ``flush()`` (flushing first if the batch is full).
        Returns 1 if queued, 0 if it is larger than ``max_datagram_bytes`` (counted)."""
        return self.queue_parts(address_key, datagram, None)

    cpdef int queue_parts(self, object address_key, object head, object body) except -2:
        """Queue the datagram ``head + body`` without concatenating them in Python."""
        cdef Py_buffer hb, bb
        cdef int r
        cdef bint have_body = body is not None
        cdef uint64_t key
        if self.closed:
            return 0
        cdef const udp_addr *to
        self._destination(address_key, &key, &to)
        PyObject_GetBuffer(head, &hb, PyBUF_SIMPLE)
        try:
            if have_body:
                PyObject_GetBuffer(body, &bb, PyBUF_SIMPLE)
            try:
                if hb.len + (bb.len if have_body else 0) > self.max_datagram_bytes:
                    self._c.oversize_out += 1
                    return 0
                r = udp_batch_queue(&self._tx, key, to, <const unsigned char*>hb.buf,
                                    <int>hb.len,
                                    <const unsigned char*>bb.buf if have_body else NULL,
                                    <int>bb.len if have_body else 0)
                if r == -2:
                    udp_send_batch(self._fd, &self._tx, self.use_mmsg, &self._c)
                    r = udp_batch_queue(&self._tx, key, to, <const unsigned char*>hb.buf,
                                        <int>hb.len,
                                        <const unsigned char*>bb.buf if have_body else NULL,
                                        <int>bb.len if have_body else 0)
                return 1 if r == 0 else 0
            finally:
                if have_body:
                    PyBuffer_Release(&bb)
        finally:
            PyBuffer_Release(&hb)

    cpdef int queue_frame(self, object address_key, object frame) except -2:
        """Queue one self-delimiting frame, packed into the datagram already queued to the same
        peer when it fits in ``max_datagram_bytes`` (the receiver splits datagrams by each
        frame's length). Returns 1 if queued, 0 if the frame alone is too large (counted)."""
        cdef Py_buffer fb
        cdef int r
        cdef uint64_t key
        if self.closed:
            return 0
        cdef const udp_addr *to
        self._destination(address_key, &key, &to)
        PyObject_GetBuffer(frame, &fb, PyBUF_SIMPLE)
        try:
            if fb.len > self.max_datagram_bytes:
                self._c.oversize_out += 1
                return 0
            r = udp_batch_append_frame(&self._tx, key, to, <const unsigned char*>fb.buf,
                                       <int>fb.len, self.max_datagram_bytes, &self._c)
            if r == -2:
                udp_send_batch(self._fd, &self._tx, self.use_mmsg, &self._c)
                r = udp_batch_queue(&self._tx, key, to, <const unsigned char*>fb.buf,
                                    <int>fb.len, NULL, 0)
            return 1 if r >= 0 else 0
        finally:
            PyBuffer_Release(&fb)

    cpdef int flush(self):
        """Send every queued datagram (one ``sendmmsg`` on Linux); returns how many went out."""
        if self.closed:
            return 0
        return udp_send_batch(self._fd, &self._tx, self.use_mmsg, &self._c)

    def send_to(self, object address_key, datagram) -> int:
        """Queue ``datagram`` and flush at once; returns datagrams sent by the flush."""
        self.queue(address_key, datagram)
        return self.flush()

    def wait_readable(self, long long timeout_ns) -> bool:
        """Block (GIL released) until a datagram is waiting or ``timeout_ns`` passes; for idle
        strategies. Nanosecond precision on Linux, whole milliseconds (rounded up) elsewhere;
        0 only checks."""
        cdef int r
        if self.closed:
            return False
        with nogil:
            r = udp_wait_readable(self._fd, timeout_ns)
        return r == 1

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._tx.count = 0
            self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
