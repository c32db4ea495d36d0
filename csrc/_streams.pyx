"""The common case of the reliable streams, compiled: one message, one frame, in order.

Why: every client message costs a stream frame in and a frame out on every process it
crosses, and in Python the bookkeeping of those frames (offer, on_data, admission and the walk
over the frames of a datagram) was a sixth of a message's CPU. The rules live in Python
(``aeronpy/transport/streams.py``, ``admission.py``, ``udp.py``), whose classes subclass these:
each compiled method here handles only the case it can decide with a few comparisons and hands
everything else (fragments, out-of-order frames, back pressure, control frames, odd payload
types) to the Python method it shortcuts (``_offer_slow``, ``_on_data_slow``,
``UdpTransport._on_datagram``'s branches), which stays the reference the tests compare against.
"""
from cpython.bytes cimport PyBytes_GET_SIZE
from libc.stdint cimport int32_t, int64_t

from aeronpy._frame cimport (FRAGMENT_BEGIN, FRAGMENT_END, TYPE_DATA, TYPE_HEARTBEAT, TYPE_NAK,
                             TYPE_SETUP, TYPE_STATUS, FrameReader, FrameWriter)
from aeronpy._frame import FrameError

cdef int UNFRAGMENTED_FLAGS = FRAGMENT_BEGIN | FRAGMENT_END
cdef int TRANSPORT_NOT_CONNECTED = -1     # the values of streams.NOT_CONNECTED and CLOSED
cdef int TRANSPORT_CLOSED = -4


cdef class StreamCounters:
    """Counter storage of ``TransportCounters`` (C integers, so the compiled paths bump them
    without a Python attribute round trip)."""


cdef class SenderCore:
    """Bookkeeping of ``StreamSender`` and its ``offer`` for a bytes message that fits one
    frame and the send buffer."""

    def offer(self, payload, int64_t now_ns):
        """Queue one message; returns the new tail position (> 0) or ``BACK_PRESSURED``."""
        return self._offer_c(payload, now_ns)

    cdef object _offer_c(self, object payload, int64_t now_ns):
        cdef Py_ssize_t n, head
        cdef int64_t position, low, end, acked
        cdef list positions, frames
        if type(payload) is not bytes:
            return self._offer_slow(payload, now_ns)
        n = PyBytes_GET_SIZE(payload)
        position = self.tail_position
        positions = self._positions
        head = self._head
        low = <int64_t>positions[head] if head < len(positions) else position
        if n == 0 or n > self.max_fragment_bytes or n > self._max_message_bytes or \
                position - low + n > self._send_buffer_bytes:
            return self._offer_slow(payload, now_ns)     # errors, back pressure, fragments
        frame = self._writer.data(position, UNFRAGMENTED_FLAGS, <int32_t>n, payload)
        frames = self._frames
        positions.append(position)
        frames.append(frame)
        self._lengths.append(n)
        end = position + n
        self.tail_position = end
        self._c.messages_out += 1
        acked = self.acked_position
        if self._next == len(frames) - 1 and \
                (end <= acked + self.receiver_window or position == acked):
            self._emit(frame)      # nothing waits before it and the window allows it
            self._next += 1
            self.sent_position = end
            self._last_emit_ns = now_ns
            self._c.data_frames_out += 1
        elif position - acked < self.receiver_window:
            self._transmit_new(now_ns)
        return end


cdef class TransportCore:
    """``UdpTransport.send``, the one transport method every outgoing message calls."""

    def send(self, peer_id, payload):
        """Queue a whole message to a peer: the new stream position (> 0), or
        ``BACK_PRESSURED`` (send buffer full: retry later), ``NOT_CONNECTED`` (no such peer),
        ``CLOSED``. Too large a message raises ``MessageTooLargeError``."""
        if self.closed:
            return TRANSPORT_CLOSED
        peer = self._peers.get(peer_id)
        if peer is None:
            return TRANSPORT_NOT_CONNECTED
        return (<SenderCore?>peer.sender)._offer_c(payload, self._now_ns)


cdef class ReceiverCore:
    """Positions of ``StreamReceiver`` and its ``on_data`` for the next whole message while
    nothing is held out of order or half assembled."""

    cdef int _on_data_c(self, int64_t position, int fragment_flags, int32_t message_length,
                        object payload, object handler, object peer_id, int64_t now_ns) except -1:
        cdef int64_t end
        if position != self.expected_position or fragment_flags != UNFRAGMENTED_FLAGS or \
                self._assembly is not None or self._pending:
            return self._on_data_slow(position, fragment_flags, message_length, payload,
                                      handler, peer_id, now_ns)
        end = position + len(payload)
        self.expected_position = end
        self._c.messages_in += 1
        handler(peer_id, payload)
        if end > self.high_position:
            self.high_position = end
        if end - self._last_status_position >= self._status_threshold:
            self._send_status(now_ns)
        return 1

    def on_data(self, int64_t position, int fragment_flags, int32_t message_length, payload,
                handler, peer_id, int64_t now_ns) -> int:
        """One DATA frame; calls ``handler(peer_id, message)`` for each message completed.
        Returns the number of messages delivered."""
        return self._on_data_c(position, fragment_flags, message_length, payload, handler,
                               peer_id, now_ns)


cdef class AdmissionCore:
    """The checks of ``Admission`` (see admission.py), cheapest first, one drop counted per
    refusal; input from the network never raises."""

    cpdef int admit_at(self, datagram, Py_ssize_t offset, bint whole=False) except -1:
        """The frame type if the frame at ``offset`` passes, else 0 (one drop counted); on
        success ``reader.frame_end`` is where the next frame starts."""
        cdef FrameReader reader = self.reader
        cdef int frame_type
        try:
            frame_type = reader.read_at(datagram, offset, whole)
        except FrameError:
            self.drops["malformed"] += 1
            return 0
        if reader.cluster_id != self.cluster_id:
            self.drops["wrong_cluster"] += 1
            return 0
        if reader.stream_id != self.stream_id:
            self.drops["wrong_stream"] += 1
            return 0
        if frame_type == TYPE_DATA and reader.message_length > self.max_message_bytes:
            self.drops["oversize"] += 1
            return 0
        if not reader.mac_ok(datagram):
            self.drops["bad_mac"] += 1
            return 0
        return frame_type


cdef class DatagramWalker:
    """``UdpTransport._on_datagram`` compiled: every frame of one datagram, in order; a
    refused frame drops the rest of its datagram (one drop counted). Peer resolution and
    every control frame call the same Python methods the reference loop calls."""

    def __init__(self, transport, AdmissionCore admission, int32_t own_epoch):
        self._transport = transport
        self._admission = admission
        self._reader = admission.reader
        self._own_epoch = own_epoch
        self._drops = admission.drops

    def __call__(self, key, datagram):
        cdef FrameReader reader = self._reader
        cdef AdmissionCore admission = self._admission
        cdef Py_ssize_t size = len(datagram), offset = 0, off
        cdef int frame_type
        cdef int32_t peer_sender = 0, peer_epoch = 0
        transport = self._transport
        handler = transport._handler
        now = transport._now_ns
        cdef int64_t now_ns = now
        peer = None
        while True:     # at least once: an empty datagram is refused as malformed
            frame_type = admission.admit_at(datagram, offset, False)
            if not frame_type:
                return
            offset = reader.frame_end
            if peer is None or reader.sender_id != peer_sender or reader.epoch != peer_epoch:
                peer_sender, peer_epoch = reader.sender_id, reader.epoch
                peer = transport._resolve_peer(key, peer_sender, peer_epoch, frame_type)
                if peer is None:
                    return
                peer.last_heard_ns = now
            if frame_type == TYPE_DATA:
                image = peer.image
                if image is None:
                    image = transport._new_image(peer)
                off = reader.payload_offset
                (<ReceiverCore?>image)._on_data_c(
                    reader.position, reader.fragment_flags, reader.message_length,
                    datagram[off:off + reader.payload_length], handler, peer.peer_id, now_ns)
            elif frame_type == TYPE_STATUS or frame_type == TYPE_NAK:
                if reader.stream_epoch != self._own_epoch:
                    self._drops["stale_epoch"] += 1     # about an earlier incarnation of us
                elif frame_type == TYPE_STATUS:
                    peer.sender.on_status(reader.position, reader.length, now)
                else:
                    peer.sender.on_nak(reader.position, reader.length, now)
            elif frame_type == TYPE_HEARTBEAT:
                image = peer.image
                if image is None:
                    image = transport._new_image(peer)
                image.on_heartbeat(reader.position, now)
            elif frame_type == TYPE_SETUP:
                image = peer.image
                if image is None:
                    image = transport._new_image(peer)
                image.on_setup(reader.position, handler, peer.peer_id, now)
            if offset >= size:
                return
