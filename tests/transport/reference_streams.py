"""The Python stream classes the compiled ones (aeronpy._streams) were ported from, kept as
the reference model the differential tests (test_fast_paths.py) compare them against.
Text as on main before the port; not used by the package."""
from __future__ import annotations

from bisect import bisect_right
from typing import Callable, Optional

from aeronpy._frame import (BEGIN, DATA, DATA_HEADER, END, HEARTBEAT, MAC_BYTES, NAK, SETUP, STATUS,
                            UNFRAGMENTED, FrameWriter)
from aeronpy.errors import MessageTooLargeError
from aeronpy.transport.counters import TransportCounters
from aeronpy.transport.streams import BACK_PRESSURED, StreamConfig


class StreamSender:
    """The sending half of one stream: fragments, buffers, paces and retransmits."""

    def __init__(self, writer: FrameWriter, emit: Callable[[bytes], object], config: StreamConfig,
                 counters: TransportCounters, now_ns: int = 0, start_position: int = 0):
        self.epoch = writer.epoch
        self._writer = writer
        self._emit = emit
        self._cfg = config
        self._c = counters
        mac = MAC_BYTES if writer.secret is not None else 0
        self.max_fragment_bytes = config.mtu_bytes - DATA_HEADER - mac
        # start_position > 0: a stream re-created for a receiver that may still hold an image
        # of the earlier one (same epoch); it must never see positions go backwards
        self.tail_position = start_position   # position after the last offered byte
        self.sent_position = start_position   # position after the last frame transmitted once
        self.acked_position = start_position  # receiver's consumed position (from STATUS)
        self.receiver_window = config.window_bytes  # assumed until the first STATUS
        # Buffered frames, oldest first; entries before _head are acknowledged garbage.
        self._positions: list[int] = []
        self._frames: list[bytes] = []
        self._lengths: list[int] = []
        self._head = 0
        self._next = 0                  # index of the first frame never transmitted
        self._recent_retransmits: dict[int, int] = {}   # position -> ns of last resend
        self._last_emit_ns = now_ns
        self._last_setup_ns = -(1 << 62)
        self._quiet_heartbeats = 0      # tail HEARTBEATs since data last moved

    @property
    def low_position(self) -> int:
        """Lowest position still held (what a receiver restarted from scratch can get)."""
        return self._positions[self._head] if self._head < len(self._positions) else self.tail_position

    @property
    def buffered_bytes(self) -> int:
        return self.tail_position - self.low_position

    def offer(self, payload, now_ns: int) -> int:
        """Queue one message; returns the new tail position (> 0) or ``BACK_PRESSURED``."""
        view = payload if type(payload) is bytes else memoryview(payload).cast("B")
        n = len(view)
        if n == 0:
            raise ValueError("empty messages are not allowed on a stream")
        if n > self._cfg.max_message_bytes:
            raise MessageTooLargeError(
                f"message of {n} bytes exceeds max_message_bytes={self._cfg.max_message_bytes}")
        position = self.tail_position
        head = self._head
        low = self._positions[head] if head < len(self._positions) else position
        if position - low + n > self._cfg.send_buffer_bytes:
            self._c.back_pressured += 1
            return BACK_PRESSURED
        chunk = self.max_fragment_bytes
        data = self._writer.data
        if n <= chunk:
            frame = data(position, UNFRAGMENTED, n, view)
            frames = self._frames
            self._positions.append(position)
            frames.append(frame)
            self._lengths.append(n)
            end = self.tail_position = position + n
            self._c.messages_out += 1
            acked = self.acked_position
            if self._next == len(frames) - 1 and \
                    (end <= acked + self.receiver_window or position == acked):
                # the common case, inlined: nothing waits before it and the window allows it
                self._emit(frame)
                self._next += 1
                self.sent_position = end
                self._last_emit_ns = now_ns
                self._quiet_heartbeats = 0
                self._c.data_frames_out += 1
            elif position - acked < self.receiver_window:
                self._transmit_new(now_ns)
            return end
        else:
            for offset in range(0, n, chunk):
                piece = view[offset:offset + chunk]
                flags = (BEGIN if offset == 0 else 0) | (END if offset + chunk >= n else 0)
                self._append(position + offset, data(position + offset, flags, n, piece), len(piece))
        self.tail_position = position + n
        self._c.messages_out += 1
        if position - self.acked_position < self.receiver_window:
            self._transmit_new(now_ns)
        return self.tail_position

    def _append(self, position: int, frame: bytes, length: int) -> None:
        self._positions.append(position)
        self._frames.append(frame)
        self._lengths.append(length)

    def _transmit_new(self, now_ns: int) -> int:
        """Transmit never-sent frames while they fit in the receiver's window."""
        limit = self.acked_position + self.receiver_window
        frames, positions, lengths = self._frames, self._positions, self._lengths
        i, count = self._next, len(frames)
        sent = 0
        while i < count:
            end = positions[i] + lengths[i]
            if end > limit and positions[i] != self.acked_position:
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

    def on_status(self, consumed_position: int, window_bytes: int, now_ns: int) -> int:
        self._c.status_received += 1
        if consumed_position > self.sent_position:
            self._c.drops["bogus_position"] += 1
            return 0
        if consumed_position < self.low_position:
            return self._send_setup(now_ns)     # a receiver that restarted from scratch
        self.receiver_window = window_bytes
        if consumed_position > self.acked_position:
            self.acked_position = consumed_position
            self._quiet_heartbeats = 0
            self._release_acked()
        return self._transmit_new(now_ns)

    def _release_acked(self) -> None:
        positions, lengths, head = self._positions, self._lengths, self._head
        acked, count = self.acked_position, len(positions)
        while head < count and positions[head] + lengths[head] <= acked:
            head += 1
        self._head = head
        if head > 256 and head * 2 > count:   # compact: keep the lists proportional to use
            del self._positions[:head], self._frames[:head], self._lengths[:head]
            self._next -= head
            self._head = 0

    def on_nak(self, position: int, length: int, now_ns: int) -> int:
        """Resend the buffered frames covering ``[position, position+length)``."""
        self._c.naks_received += 1
        if position < self.low_position:
            return self._send_setup(now_ns)
        end = min(position + length, self.sent_position, position + self._cfg.window_bytes)
        i = bisect_right(self._positions, position, self._head, self._next) - 1
        if i < self._head:
            i = self._head
        recent, linger = self._recent_retransmits, self._cfg.retransmit_linger_ns
        resent = 0
        while i < self._next and self._positions[i] < end:
            p = self._positions[i]
            last = recent.get(p)
            if last is None or now_ns - last >= linger:
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

    def _purge_recent(self, now_ns: int) -> None:
        linger = self._cfg.retransmit_linger_ns
        self._recent_retransmits = {p: t for p, t in self._recent_retransmits.items()
                                    if now_ns - t < linger and p >= self.low_position}

    def _send_setup(self, now_ns: int) -> int:
        if now_ns - self._last_setup_ns < self._cfg.setup_linger_ns:
            return 0
        self._last_setup_ns = now_ns
        self._emit(self._writer.setup(self.low_position))
        self._c.setups_sent += 1
        return 1

    def do_work(self, now_ns: int) -> int:
        """Timers: transmit what the window now allows; HEARTBEAT when silent (soon while
        data is unacknowledged, to expose a lost tail; slowly when idle, for liveness)."""
        work = self._transmit_new(now_ns) if self._next < len(self._frames) else 0
        hb, idle = self._cfg.heartbeat_interval_ns, self._cfg.idle_interval_ns
        unacked = self.sent_position > self.acked_position
        # unanswered tail HEARTBEATs double the gap, never past max(idle, hb)
        interval = min(hb * 2 ** min(self._quiet_heartbeats, 62), max(idle, hb)) if unacked else idle
        if now_ns - self._last_emit_ns >= interval:
            self._emit(self._writer.heartbeat(self.sent_position))
            self._last_emit_ns = now_ns
            self._c.heartbeats_sent += 1
            if unacked and self._quiet_heartbeats < 62:
                self._quiet_heartbeats += 1
            work += 1
        if self._recent_retransmits and len(self._recent_retransmits) > 64:
            self._purge_recent(now_ns)
        return work


class StreamReceiver:
    """The receiving half ("image") of one sender incarnation's stream."""

    def __init__(self, stream_epoch: int, writer: FrameWriter, emit: Callable[[bytes], object],
                 config: StreamConfig, counters: TransportCounters, now_ns: int = 0):
        self.stream_epoch = stream_epoch
        self._writer = writer
        self._emit = emit
        self._cfg = config
        self._c = counters
        self.expected_position = 0      # consumed: every byte before it was delivered/assembled
        self.high_position = 0          # highest position the sender is known to have sent
        self._pending: dict[int, tuple[int, int, bytes]] = {}   # out-of-order frames
        self._pending_bytes = 0
        self._assembly: Optional[bytearray] = None
        self._assembly_offset = 0
        self._last_nak_ns = -(1 << 62)
        self._last_nak_position = -1
        self._last_status_ns = -(1 << 62)
        self._last_status_position = -1
        self._status_threshold = config.window_bytes // 4
        self._last_data_ns = -(1 << 62)     # the last DATA that moved consumption on
        self._progress_ns = -(1 << 62)      # the first DATA that no STATUS has reported yet

    def _note_progress(self, before: int, now_ns: int) -> None:
        if self.expected_position == before:
            return
        if before == self._last_status_position:
            self._progress_ns = now_ns
        self._last_data_ns = now_ns

    def on_data(self, position: int, fragment_flags: int, message_length: int, payload,
                handler, peer_id: int, now_ns: int) -> int:
        """One DATA frame; calls ``handler(peer_id, message)`` for each message completed.
        Returns the number of messages delivered."""
        length = len(payload)
        end = position + length
        expected = self.expected_position
        if position == expected and fragment_flags == UNFRAGMENTED and self._assembly is None \
                and not self._pending:
            # the common case, inlined: the next whole message, nothing held out of order
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

    def _hold_out_of_order(self, position, fragment_flags, message_length, payload, now_ns) -> int:
        length = len(payload)
        if position in self._pending:
            self._c.duplicates += 1
            return 0
        window = self._cfg.window_bytes
        if position + length - self.expected_position > window or \
                self._pending_bytes + length > window:
            self._c.drops["beyond_window"] += 1
            return 0
        self._pending[position] = (fragment_flags, message_length, bytes(payload))
        self._pending_bytes += length
        if position + length > self.high_position:
            self.high_position = position + length
        self._maybe_nak(now_ns)
        return 0

    def _accept(self, flags, message_length, payload, length, handler, peer_id) -> int:
        """An in-order frame: advance the position, deliver or assemble."""
        self.expected_position += length
        if flags == UNFRAGMENTED:
            if self._assembly is not None:
                self._abandon_assembly()
            self._c.messages_in += 1
            handler(peer_id, payload)
            return 1
        if flags & BEGIN:
            if self._assembly is not None:
                self._abandon_assembly()
            self._assembly = bytearray(message_length)
            self._assembly_offset = 0
        elif self._assembly is None:
            self._c.fragments_skipped += 1   # continuation of a message we joined mid-way
            return 0
        offset = self._assembly_offset
        if offset + length > len(self._assembly) or (flags & END and offset + length != len(self._assembly)):
            self._c.drops["malformed"] += 1    # inconsistent fragment lengths: drop the message
            self._assembly = None
            return 0
        self._assembly[offset:offset + length] = payload
        self._assembly_offset = offset + length
        if flags & END:
            message = self._assembly
            self._assembly = None
            self._c.messages_in += 1
            self._c.messages_reassembled += 1
            handler(peer_id, memoryview(message))
            return 1
        return 0

    def _abandon_assembly(self) -> None:
        self._assembly = None
        self._c.drops["incomplete_message"] += 1

    def _drain_pending(self, handler, peer_id, now_ns: int) -> int:
        delivered = 0
        pending = self._pending
        while pending:
            item = pending.pop(self.expected_position, None)
            if item is None:
                # discard anything the position has passed (a SETUP jump), then stop
                stale = [p for p in pending if p < self.expected_position]
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

    def _gap_end(self) -> int:
        if self._pending:
            return min(self._pending)
        return self.high_position

    def _maybe_nak(self, now_ns: int) -> None:
        """NAK the first gap now if it is new, else only after ``nak_retry_ns``."""
        expected = self.expected_position
        if self.high_position <= expected:
            return
        if expected == self._last_nak_position and now_ns - self._last_nak_ns < self._cfg.nak_retry_ns:
            return
        length = min(self._gap_end() - expected, self._cfg.window_bytes)
        if length <= 0:
            return
        self._emit(self._writer.nak(self.stream_epoch, expected, length))
        self._last_nak_ns = now_ns
        self._last_nak_position = expected
        self._c.naks_sent += 1

    def on_heartbeat(self, position: int, now_ns: int) -> None:
        if position > self.high_position:
            self.high_position = position
        self._maybe_nak(now_ns)

    def on_setup(self, start_position: int, handler, peer_id: int, now_ns: int) -> int:
        """The sender no longer holds data before ``start_position``: jump there."""
        if start_position <= self.expected_position:
            return 0
        self._c.setup_jumps += 1
        self._c.bytes_skipped += start_position - self.expected_position
        if self._assembly is not None:
            self._abandon_assembly()
        self.expected_position = start_position
        if start_position > self.high_position:
            self.high_position = start_position
        delivered = self._drain_pending(handler, peer_id, now_ns) if self._pending else 0
        self._send_status(now_ns)
        return delivered

    def _send_status(self, now_ns: int) -> None:
        self._emit(self._writer.status(self.stream_epoch, self.expected_position, self._cfg.window_bytes))
        self._last_status_ns = now_ns
        self._last_status_position = self.expected_position
        self._c.status_sent += 1

    def do_work(self, now_ns: int) -> int:
        """Timers: re-NAK an open gap; STATUS soon after progress, slowly when idle."""
        work = 0
        if self.high_position > self.expected_position and \
                now_ns - self._last_nak_ns >= self._cfg.nak_retry_ns:
            self._maybe_nak(now_ns)
            work += 1
        if self.expected_position == self._last_status_position:
            due = self._last_status_ns + self._cfg.idle_interval_ns
        else:   # the sender quiet for status_prompt_ns, or status_interval_ns after progress began
            due = min(self._last_data_ns + self._cfg.status_prompt_ns,
                      max(self._progress_ns, self._last_status_ns) + self._cfg.status_interval_ns)
        if now_ns >= due:
            self._send_status(now_ns)
            work += 1
        return work


def reference_on_datagram(self, key: int, datagram) -> None:
    """Every frame of one datagram, in order. A refused frame drops the rest of its
    datagram with it (one drop counted): the frames after it came from the same sender.
    ``UdpTransport.poll`` runs the compiled ``DatagramWalker``; this is the Python loop it was
    ported from (a method of ``UdpTransport`` before), with ``self`` the transport."""
    admit = self._admission.admit_at
    reader = self._reader
    size = len(datagram)
    offset = 0
    peer = None
    peer_sender = peer_epoch = None
    now = self._now_ns
    while True:     # at least once: an empty datagram is refused as malformed
        frame_type = admit(datagram, offset)
        if not frame_type:
            return
        offset = reader.frame_end
        if peer is None or reader.sender_id != peer_sender or reader.epoch != peer_epoch:
            peer_sender, peer_epoch = reader.sender_id, reader.epoch
            peer = self._resolve_peer(key, peer_sender, peer_epoch, frame_type)
            if peer is None:
                return
            peer.last_heard_ns = now
        if frame_type == DATA:
            image = peer.image or self._new_image(peer)
            off = reader.payload_offset
            image.on_data(reader.position, reader.fragment_flags, reader.message_length,
                          datagram[off:off + reader.payload_length], self._handler, peer.peer_id, now)
        elif frame_type == STATUS or frame_type == NAK:
            if reader.stream_epoch != self.epoch:
                self._admission.drop("stale_epoch")    # about an earlier incarnation of us
            elif frame_type == STATUS:
                peer.sender.on_status(reader.position, reader.length, now)
            else:
                peer.sender.on_nak(reader.position, reader.length, now)
        elif frame_type == HEARTBEAT:
            (peer.image or self._new_image(peer)).on_heartbeat(reader.position, now)
        elif frame_type == SETUP:
            (peer.image or self._new_image(peer)).on_setup(reader.position, self._handler,
                                                           peer.peer_id, now)
        if offset >= size:
            return
