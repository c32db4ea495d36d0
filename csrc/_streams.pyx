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
from bisect import bisect_right

from cpython.bytearray cimport PyByteArray_Resize
from libc.stdint cimport INT64_MAX, int32_t, int64_t

from aeronpy._frame cimport (DATA_HEADER_LENGTH, FRAGMENT_BEGIN, FRAGMENT_END, MAC_LENGTH,
                             TYPE_DATA, TYPE_HEARTBEAT, TYPE_NAK, TYPE_SETUP, TYPE_STATUS,
                             FrameReader, FrameWriter)
from aeronpy._frame import FrameError
from aeronpy.errors import MessageTooLargeError

# Negative results of ``offer``/``send`` (same values as aeronpy.NOT_CONNECTED etc.).
NOT_CONNECTED = -1
BACK_PRESSURED = -2
CLOSED = -4

cdef int UNFRAGMENTED_FLAGS = FRAGMENT_BEGIN | FRAGMENT_END
cdef Py_ssize_t ASSEMBLY_FIRST_BYTES = 16 * 1024   # reassembly room at a message's first fragment


cdef class StreamCounters:
    """Counter storage of ``TransportCounters`` (C integers, so the compiled paths bump them
    without a Python attribute round trip)."""


cdef class StreamSender:
    """The sending half of one stream: fragments, buffers, paces and retransmits."""

    def __init__(self, FrameWriter writer, emit, config, StreamCounters counters,
                 int64_t now_ns=0, int64_t start_position=0):
        self.epoch = writer.epoch
        self._writer = writer
        self._emit = emit
        self._c = counters
        self._max_message_bytes = config.max_message_bytes
        self._send_buffer_bytes = config.send_buffer_bytes
        self._window_bytes = config.window_bytes
        self._retransmit_linger_ns = config.retransmit_linger_ns
        self._heartbeat_interval_ns = config.heartbeat_interval_ns
        self._idle_interval_ns = config.idle_interval_ns
        self._setup_linger_ns = config.setup_linger_ns
        mac = MAC_LENGTH if writer.secret is not None else 0
        self.max_fragment_bytes = config.mtu_bytes - DATA_HEADER_LENGTH - mac
        # start_position > 0: a stream re-created for a receiver that may still hold an image
        # of the earlier one (same epoch); it must never see positions go backwards
        self.tail_position = start_position   # position after the last offered byte
        self.sent_position = start_position   # position after the last frame transmitted once
        self.acked_position = start_position  # receiver's consumed position (from STATUS)
        self.receiver_window = config.window_bytes  # assumed until the first STATUS
        # Buffered frames, oldest first; entries before _head are acknowledged garbage.
        self._positions = []
        self._frames = []
        self._lengths = []
        self._head = 0
        self._next = 0                  # index of the first frame never transmitted
        self._recent_retransmits = {}   # position -> ns of last resend
        self._last_emit_ns = now_ns
        self._last_setup_ns = -(1 << 62)
        self._quiet_heartbeats = 0      # tail HEARTBEATs since data last moved (_heartbeat_due_ns)

    @property
    def low_position(self) -> int:
        """Lowest position still held (what a receiver restarted from scratch can get)."""
        return self._low_position()

    cdef int64_t _low_position(self):
        if self._head < len(self._positions):
            return <int64_t>self._positions[self._head]
        return self.tail_position

    @property
    def buffered_bytes(self) -> int:
        return self.tail_position - self._low_position()

    def offer(self, payload, int64_t now_ns):
        """Queue one message; returns the new tail position (> 0) or ``BACK_PRESSURED``."""
        return self._offer_c(payload, now_ns)

    cdef object _offer_c(self, object payload, int64_t now_ns):
        cdef Py_ssize_t n, offset, chunk, piece_length
        cdef int64_t position, end, acked
        cdef int flags
        cdef list frames
        view = payload if type(payload) is bytes else memoryview(payload).cast("B")
        n = len(view)
        if n == 0:
            raise ValueError("empty messages are not allowed on a stream")
        if n > self._max_message_bytes:
            raise MessageTooLargeError(
                f"message of {n} bytes exceeds max_message_bytes={self._max_message_bytes}")
        position = self.tail_position
        if position - self._low_position() + n > self._send_buffer_bytes:
            self._c.back_pressured += 1
            return BACK_PRESSURED
        chunk = self.max_fragment_bytes
        if n <= chunk:
            frame = self._writer.data(position, UNFRAGMENTED_FLAGS, <int32_t>n, view)
            frames = self._frames
            self._positions.append(position)
            frames.append(frame)
            self._lengths.append(n)
            end = position + n
            self.tail_position = end
            self._c.messages_out += 1
            acked = self.acked_position
            if self._next == len(frames) - 1 and \
                    (end <= acked + self.receiver_window or position == acked):
                # the common case: nothing waits before it and the window allows it
                self._emit(frame)
                self._next += 1
                self.sent_position = end
                self._last_emit_ns = now_ns
                self._quiet_heartbeats = 0
                self._c.data_frames_out += 1
            elif position - acked < self.receiver_window:
                self._transmit_new(now_ns)
            return end
        offset = 0
        while offset < n:
            piece_length = chunk if offset + chunk <= n else n - offset
            flags = (FRAGMENT_BEGIN if offset == 0 else 0) | (FRAGMENT_END if offset + chunk >= n else 0)
            self._positions.append(position + offset)
            self._frames.append(self._writer.data(position + offset, flags, <int32_t>n,
                                                  view[offset:offset + piece_length]))
            self._lengths.append(piece_length)
            offset += chunk
        self.tail_position = position + n
        self._c.messages_out += 1
        if position - self.acked_position < self.receiver_window:
            self._transmit_new(now_ns)
        return self.tail_position

    cdef int _transmit_new(self, int64_t now_ns) except -1:
        """Transmit never-sent frames while they fit in the receiver's window."""
        cdef int64_t limit = self.acked_position + self.receiver_window, position, end
        cdef list frames = self._frames, positions = self._positions, lengths = self._lengths
        cdef Py_ssize_t i = self._next, count = len(frames)
        cdef int sent = 0
        while i < count:
            position = <int64_t>positions[i]
            end = position + <int64_t>lengths[i]
            if end > limit and position != self.acked_position:
                break   # flow control: wait for STATUS (always allow one frame if none in flight)
            self._emit(frames[i])
            self.sent_position = end
            i += 1
            sent += 1
        if sent:
            self._next = i
            self._last_emit_ns = now_ns
            self._quiet_heartbeats = 0
            self._c.data_frames_out += sent
        return sent

    def on_status(self, int64_t consumed_position, int64_t window_bytes, int64_t now_ns) -> int:
        self._c.status_received += 1
        if consumed_position > self.sent_position:
            self._c.drops["bogus_position"] += 1
            return 0
        if consumed_position < self._low_position():
            return self._send_setup(now_ns)     # a receiver that restarted from scratch
        self.receiver_window = window_bytes
        if consumed_position > self.acked_position:
            self.acked_position = consumed_position
            self._quiet_heartbeats = 0
            self._release_acked()
        return self._transmit_new(now_ns)

    cdef void _release_acked(self):
        cdef list positions = self._positions, lengths = self._lengths
        cdef Py_ssize_t head = self._head, count = len(positions)
        cdef int64_t acked = self.acked_position
        while head < count and <int64_t>positions[head] + <int64_t>lengths[head] <= acked:
            head += 1
        self._head = head
        if head > 256 and head * 2 > count:   # compact: keep the lists proportional to use
            del self._positions[:head], self._frames[:head], self._lengths[:head]
            self._next -= head
            self._head = 0

    def on_nak(self, int64_t position, int64_t length, int64_t now_ns) -> int:
        """Resend the buffered frames covering ``[position, position+length)``."""
        cdef int64_t end, p
        cdef Py_ssize_t i
        cdef int resent = 0
        self._c.naks_received += 1
        if position < self._low_position():
            return self._send_setup(now_ns)
        # (no signed overflow: a NAK's position may be anything up to the int64 limit)
        end = min(position + length if length <= INT64_MAX - position else INT64_MAX,
                  self.sent_position,
                  position + self._window_bytes if self._window_bytes <= INT64_MAX - position
                  else INT64_MAX)
        i = bisect_right(self._positions, position, self._head, self._next) - 1
        if i < self._head:
            i = self._head
        recent = self._recent_retransmits
        while i < self._next and <int64_t>self._positions[i] < end:
            p = <int64_t>self._positions[i]
            last = recent.get(p)
            if last is None or now_ns - <int64_t>last >= self._retransmit_linger_ns:
                self._emit(self._frames[i])
                recent[p] = now_ns
                resent += 1
            i += 1
        if len(recent) > 4096:
            self._purge_recent(now_ns)
        if resent:
            self._c.retransmits += resent
            self._last_emit_ns = now_ns
        return resent

    cdef void _purge_recent(self, int64_t now_ns):
        cdef int64_t linger = self._retransmit_linger_ns, low = self._low_position()
        self._recent_retransmits = {p: t for p, t in self._recent_retransmits.items()
                                    if now_ns - t < linger and p >= low}

    cdef int _send_setup(self, int64_t now_ns) except -1:
        if now_ns - self._last_setup_ns < self._setup_linger_ns:
            return 0
        self._last_setup_ns = now_ns
        self._emit(self._writer.setup(self._low_position()))
        self._c.setups_sent += 1
        return 1

    def do_work(self, int64_t now_ns) -> int:
        """Timers: transmit what the window now allows; HEARTBEAT when silent (soon while
        data is unacknowledged, to expose a lost tail; slowly when idle, for liveness)."""
        cdef int work = self._transmit_new(now_ns) if self._next < len(self._frames) else 0
        if now_ns >= self._heartbeat_due_ns():
            self._emit(self._writer.heartbeat(self.sent_position))
            self._last_emit_ns = now_ns
            self._c.heartbeats_sent += 1
            if self.sent_position > self.acked_position and self._quiet_heartbeats < 62:
                self._quiet_heartbeats += 1
            work += 1
        if len(self._recent_retransmits) > 64:
            self._purge_recent(now_ns)
        return work

    def next_due_ns(self) -> int:
        """When ``do_work`` next has something to do (0: frames wait for the window, so at
        once): a parked duty cycle may sleep until then (ClusterNode's idle park)."""
        if self._next < len(self._frames):
            return 0
        return self._heartbeat_due_ns()

    cdef int64_t _heartbeat_due_ns(self):
        """The next HEARTBEAT: soon while data is unacknowledged, slowly when idle (the one
        rule of do_work and next_due_ns). Each tail HEARTBEAT left unanswered doubles the next
        gap, up to the idle interval: a receiver that is not reading (a blocking client between
        requests) is probed a few times, not every heartbeat_interval_ns until it reads."""
        cdef int64_t interval = self._heartbeat_interval_ns, cap = self._idle_interval_ns
        cdef int k = self._quiet_heartbeats
        if self.sent_position <= self.acked_position:
            interval = cap
        else:
            if cap < interval:
                cap = interval
            while k > 0 and interval < cap:
                interval = cap if interval > cap // 2 else interval * 2
                k -= 1
        # saturating: an interval near the int64 limit ("never") must not wrap to the past
        if self._last_emit_ns > 0 and interval > INT64_MAX - self._last_emit_ns:
            return INT64_MAX
        return self._last_emit_ns + interval


cdef class TransportCore:
    """``UdpTransport.send``, the one transport method every outgoing message calls."""

    def send(self, peer_id, payload):
        """Queue a whole message to a peer: the new stream position (> 0), or
        ``BACK_PRESSURED`` (send buffer full: retry later), ``NOT_CONNECTED`` (no such peer),
        ``CLOSED``. Too large a message raises ``MessageTooLargeError``."""
        if self.closed:
            return CLOSED
        peer = self._peers.get(peer_id)
        if peer is None:
            return NOT_CONNECTED
        result = (<StreamSender?>peer.sender)._offer_c(payload, self._now_ns)
        image = peer.image
        if image is not None and result > 0:
            # our STATUS for the peer's stream rides in the same datagram: a request's reply
            # acknowledges it, so its sender does not HEARTBEAT after a lone message
            (<StreamReceiver?>image)._piggyback_status(self._now_ns)
        return result


cdef class StreamReceiver:
    """The receiving half ("image") of one sender incarnation's stream."""

    def __init__(self, int32_t stream_epoch, FrameWriter writer, emit, config,
                 StreamCounters counters, int64_t now_ns=0):
        self.stream_epoch = stream_epoch
        self._writer = writer
        self._emit = emit
        self._c = counters
        self._window_bytes = config.window_bytes
        self._nak_retry_ns = config.nak_retry_ns
        self._status_interval_ns = config.status_interval_ns
        self._idle_interval_ns = config.idle_interval_ns
        self.expected_position = 0      # consumed: every byte before it was delivered/assembled
        self.high_position = 0          # highest position the sender is known to have sent
        self._pending = {}              # out-of-order frames: position -> (flags, length, bytes)
        self._pending_bytes = 0
        self._assembly = None
        self._assembly_offset = 0
        self._assembly_length = 0
        self._last_nak_ns = -(1 << 62)
        self._last_nak_position = -1
        self._last_status_ns = -(1 << 62)
        self._last_status_position = -1
        self._status_threshold = config.window_bytes // 4
        self._piggyback_gap_ns = config.status_piggyback_ns
        self._status_prompt_ns = config.status_prompt_ns
        self._last_data_ns = -(1 << 62)     # the last DATA that moved consumption on
        self._progress_ns = -(1 << 62)      # the first DATA that no STATUS has reported yet

    def on_data(self, int64_t position, int fragment_flags, int32_t message_length, payload,
                handler, peer_id, int64_t now_ns) -> int:
        """One DATA frame; calls ``handler(peer_id, message)`` for each message completed.
        Returns the number of messages delivered."""
        return self._on_data_c(position, fragment_flags, message_length, payload, handler,
                               peer_id, now_ns)

    cdef int _on_data_c(self, int64_t position, int fragment_flags, int32_t message_length,
                        object payload, object handler, object peer_id, int64_t now_ns) except -1:
        cdef Py_ssize_t length = len(payload)
        cdef int64_t end, expected = self.expected_position
        cdef int delivered
        if position > INT64_MAX - length:
            # would end past the largest position (a forged jump to the top): the position
            # wrapped negative and the next STATUS raised out of do_work on every duty cycle
            self._c.drops["malformed"] += 1
            return 0
        end = position + length
        if position == expected and fragment_flags == UNFRAGMENTED_FLAGS and \
                self._assembly is None and not self._pending:
            # the common case: the next whole message, nothing held out of order
            self.expected_position = end
            self._note_progress(expected, now_ns)
            self._c.messages_in += 1
            handler(peer_id, payload)
            if end > self.high_position:
                self.high_position = end
            if end - self._last_status_position >= self._status_threshold:
                self._send_status(now_ns)
            return 1
        if position != expected:
            if end <= expected or position < expected:
                self._c.duplicates += 1
                return 0
            return self._hold_out_of_order(position, fragment_flags, message_length, payload, now_ns)
        delivered = self._accept(fragment_flags, message_length, payload, length, handler, peer_id)
        if self._pending:
            delivered += self._drain_pending(handler, peer_id, now_ns)
        self._note_progress(expected, now_ns)
        if end > self.high_position:
            self.high_position = end
        if self.expected_position - self._last_status_position >= self._status_threshold:
            self._send_status(now_ns)
        return delivered

    cdef int _hold_out_of_order(self, int64_t position, int fragment_flags,
                                int32_t message_length, payload, int64_t now_ns) except -1:
        cdef Py_ssize_t length = len(payload)
        if position in self._pending:
            self._c.duplicates += 1
            return 0
        # Bounded in bytes (the window) and in frames: a held frame costs ~136 bytes besides
        # its payload, so 1-byte frames once pinned ~18 MB per peer under a 128 KiB window.
        if position + length - self.expected_position > self._window_bytes or \
                self._pending_bytes + length > self._window_bytes or \
                len(self._pending) >= max(self._window_bytes >> 4, 1024):
            self._c.drops["beyond_window"] += 1
            return 0
        self._pending[position] = (fragment_flags, message_length, bytes(payload))
        self._pending_bytes += length
        if position + length > self.high_position:
            self.high_position = position + length
        self._maybe_nak(now_ns)
        return 0

    cdef int _accept(self, int flags, int32_t message_length, payload, Py_ssize_t length,
                     handler, peer_id) except -1:
        """An in-order frame: advance the position, deliver or assemble."""
        cdef Py_ssize_t offset, size
        self.expected_position += length
        if flags == UNFRAGMENTED_FLAGS:
            if self._assembly is not None:
                self._abandon_assembly()
            self._c.messages_in += 1
            handler(peer_id, payload)
            return 1
        if flags & FRAGMENT_BEGIN:
            if self._assembly is not None:
                self._abandon_assembly()
            # Room grows with the fragments that arrive (doubling, capped at the declared
            # length), never the declared length up front: one datagram declaring a 4 MiB
            # message from a new "client" once pinned 4 MiB until that client timed out.
            self._assembly = bytearray(message_length if message_length < ASSEMBLY_FIRST_BYTES
                                       else ASSEMBLY_FIRST_BYTES)
            self._assembly_length = message_length
            self._assembly_offset = 0
        elif self._assembly is None:
            self._c.fragments_skipped += 1   # continuation of a message we joined mid-way
            return 0
        offset = self._assembly_offset
        if offset + length > self._assembly_length or \
                (flags & FRAGMENT_END and offset + length != self._assembly_length):
            self._c.drops["malformed"] += 1    # inconsistent fragment lengths: drop the message
            self._assembly = None
            return 0
        size = len(self._assembly)
        if offset + length > size:
            size = 2 * size if 2 * size > offset + length else offset + length
            if size > self._assembly_length:
                size = self._assembly_length
            PyByteArray_Resize(self._assembly, size)
        self._assembly[offset:offset + length] = payload
        self._assembly_offset = offset + length
        if flags & FRAGMENT_END:
            message = self._assembly
            self._assembly = None
            self._c.messages_in += 1
            self._c.messages_reassembled += 1
            handler(peer_id, memoryview(message))
            return 1
        return 0

    cdef void _abandon_assembly(self):
        self._assembly = None
        self._c.drops["incomplete_message"] += 1

    cdef int _drain_pending(self, handler, peer_id, int64_t now_ns) except -1:
        cdef int delivered = 0
        cdef dict pending = self._pending
        cdef int64_t expected
        while pending:
            expected = self.expected_position
            item = pending.pop(expected, None)
            if item is None:
                # discard anything the position has passed (a SETUP jump), then stop
                stale = [p for p in pending if p < expected]
                for p in stale:
                    self._pending_bytes -= len(pending.pop(p)[2])
                if stale:
                    continue
                self._maybe_nak(now_ns)
                break
            flags, message_length, payload = item
            self._pending_bytes -= len(payload)
            delivered += self._accept(flags, message_length, payload, len(payload), handler, peer_id)
        return delivered

    cdef int64_t _gap_end(self):
        if self._pending:
            return min(self._pending)
        return self.high_position

    cdef int _maybe_nak(self, int64_t now_ns) except -1:
        """NAK the first gap now if it is new, else only after ``nak_retry_ns``."""
        cdef int64_t expected = self.expected_position, length
        if self.high_position <= expected:
            return 0
        if expected == self._last_nak_position and now_ns - self._last_nak_ns < self._nak_retry_ns:
            return 0
        length = min(self._gap_end() - expected, self._window_bytes)
        if length <= 0:
            # A frame held out of order is due next but was not drained: the handler raised
            # while an earlier message was delivered. Ask for it again; its arrival drains
            # the rest (else the stream stalled for good: no NAK, and nothing to drain it).
            item = self._pending.get(expected)
            if item is None:
                return 0
            length = len(item[2])
        self._emit(self._writer.nak(self.stream_epoch, expected, <int32_t>length))
        self._last_nak_ns = now_ns
        self._last_nak_position = expected
        self._c.naks_sent += 1
        return 1

    def on_heartbeat(self, int64_t position, int64_t now_ns) -> None:
        cdef int64_t expected = self.expected_position
        # A live sender never transmits past our window (but for one frame), so a gap is NAKed
        # at most a window deep; and the latest HEARTBEAT is the sender's word on its tail when
        # nothing is held: a gap claimed past it (a forged or corrupted HEARTBEAT) is closed.
        # Else one such frame had the gap NAKed every nak_retry_ns for as long as the peer
        # lived, and never filled.
        if position - expected > self._window_bytes:
            position = expected + self._window_bytes
        if position > self.high_position:
            self.high_position = position
        elif position < self.high_position and not self._pending:
            self.high_position = position if position > expected else expected
        self._maybe_nak(now_ns)

    def on_setup(self, int64_t start_position, handler, peer_id, int64_t now_ns) -> int:
        """The sender no longer holds data before ``start_position``: jump there."""
        cdef int delivered = 0
        if start_position <= self.expected_position:
            return 0
        self._c.setup_jumps += 1
        self._c.bytes_skipped += start_position - self.expected_position
        if self._assembly is not None:
            self._abandon_assembly()
        self.expected_position = start_position
        if start_position > self.high_position:
            self.high_position = start_position
        if self._pending:
            delivered = self._drain_pending(handler, peer_id, now_ns)
        self._send_status(now_ns)
        return delivered

    cdef int _send_status(self, int64_t now_ns) except -1:
        self._emit(self._writer.status(self.stream_epoch, self.expected_position,
                                       <int32_t>self._window_bytes))
        self._last_status_ns = now_ns
        self._last_status_position = self.expected_position
        self._c.status_sent += 1
        return 0

    cdef void _note_progress(self, int64_t before, int64_t now_ns) noexcept:
        """Consumption moved on from ``before``: the time of the first progress no STATUS has
        reported, and of the latest (``_status_due_ns``)."""
        if self.expected_position == before:
            return
        if before == self._last_status_position:
            self._progress_ns = now_ns
        self._last_data_ns = now_ns

    cdef int _piggyback_status(self, int64_t now_ns) except -1:
        """A STATUS to go with our DATA to the peer (``TransportCore.send``): when something
        is consumed that no STATUS reported and the last STATUS is ``status_piggyback_ns``
        old (at most one per that interval, however many messages we send)."""
        if self.expected_position != self._last_status_position and \
                now_ns - self._last_status_ns >= self._piggyback_gap_ns:
            return self._send_status(now_ns) + 1
        return 0

    def do_work(self, int64_t now_ns) -> int:
        """Timers: re-NAK an open gap; STATUS soon after progress, slowly when idle."""
        cdef int work = 0
        if self.high_position > self.expected_position and \
                now_ns - self._last_nak_ns >= self._nak_retry_ns:
            self._maybe_nak(now_ns)
            work += 1
        if now_ns >= self._status_due_ns():
            self._send_status(now_ns)
            work += 1
        return work

    def next_due_ns(self) -> int:
        """When ``do_work`` next has something to do: the next STATUS, or the re-NAK of an
        open gap (ClusterNode's idle park sleeps no longer)."""
        cdef int64_t due = self._status_due_ns()
        if self.high_position > self.expected_position and \
                self._last_nak_ns + self._nak_retry_ns < due:
            due = self._last_nak_ns + self._nak_retry_ns
        return due

    cdef int64_t _status_due_ns(self):
        """The next STATUS (the one rule of do_work and next_due_ns): slowly when idle; after
        progress, once the sender has been quiet ``status_prompt_ns`` (a lone message is
        acknowledged before the sender's first tail HEARTBEAT, and not at once: a reply sent
        meanwhile carries the STATUS), or ``status_interval_ns`` after the progress began."""
        cdef int64_t start, due, quiet
        if self.expected_position == self._last_status_position:
            return self._last_status_ns + self._idle_interval_ns
        start = self._progress_ns if self._progress_ns > self._last_status_ns else self._last_status_ns
        due = start + self._status_interval_ns
        quiet = self._last_data_ns + self._status_prompt_ns
        return quiet if quiet < due else due


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
                (<StreamReceiver?>image)._on_data_c(
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
