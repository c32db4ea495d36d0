"""Reliable, ordered, flow-controlled message streams over unreliable datagrams (Aeron-like).

One ``StreamSender`` per destination and one ``StreamReceiver`` ("image") per source. Both are
sans-I/O: they are given ``now_ns`` and an ``emit(frame_bytes)`` callable and never touch a
socket or a clock, so they can be tested without a network.

Positions count payload bytes from 0 at the start of a sender incarnation (epoch). Rules:
- The sender keeps every frame it has not seen acknowledged in a bounded buffer
  (``send_buffer_bytes``); ``offer`` returns ``BACK_PRESSURED`` when a message would not fit.
- It never has more than the receiver's advertised window in flight beyond the receiver's
  consumed position (STATUS frames carry both); frames past that wait in the buffer.
- The receiver delivers whole messages in position order, keeps out-of-order frames only
  inside its window, NAKs gaps (rate-limited), and reassembles fragmented messages in a buffer
  bounded by ``max_message_bytes``.
- HEARTBEAT frames carry the sender's transmitted position so a lost tail is detected, and
  prove liveness. A STATUS rides with the receiver's own DATA to the sender when it can
  (``UdpTransport.send``), so a request's reply acknowledges it and no HEARTBEAT follows.
  A receiver that asks for data the sender no longer holds (it restarted and
  its new image starts at 0) gets a SETUP frame naming the lowest position still held, and
  jumps there (the messages in between are lost, which consensus tolerates).
"""
from __future__ import annotations

from dataclasses import dataclass

from aeronpy._frame import DATA_HEADER, MAC_BYTES
# The classes are compiled (csrc/_streams.pyx): every frame in and out passes through them.
from aeronpy._streams import BACK_PRESSURED, CLOSED, NOT_CONNECTED, StreamReceiver, StreamSender

__all__ = ["StreamConfig", "StreamSender", "StreamReceiver", "NOT_CONNECTED", "BACK_PRESSURED",
           "CLOSED"]


@dataclass(frozen=True)
class StreamConfig:
    """Every bound and timer of a stream, with its unit in its name."""

    mtu_bytes: int = 1408                    # largest datagram a stream sends (incl. headers)
    window_bytes: int = 128 * 1024           # receive window a receiver advertises
    send_buffer_bytes: int = 8 * 1024 * 1024  # retransmit + not-yet-sent bytes per destination
    max_message_bytes: int = 4 * 1024 * 1024  # largest message (reassembly bound)
    nak_retry_ns: int = 5_000_000            # re-NAK a gap that is still open after this
    retransmit_linger_ns: int = 2_000_000    # ignore NAKs for a range resent this recently
    status_interval_ns: int = 20_000_000     # STATUS this often while consumption advances
    status_piggyback_ns: int = 200_000       # a STATUS rides on our DATA if the last is this old
    status_prompt_ns: int = 2_000_000        # else STATUS once the sender is this long quiet
    #                                          (below heartbeat_interval_ns: no tail HEARTBEAT)
    heartbeat_interval_ns: int = 5_000_000   # HEARTBEAT after this long silent with data unacked
    #                                          (each unanswered one doubles it, to idle_interval_ns)
    idle_interval_ns: int = 100_000_000      # HEARTBEAT / STATUS keep-alive of an idle stream
    setup_linger_ns: int = 5_000_000         # at most one SETUP per this interval

    @classmethod
    def for_message_bytes(cls, max_message_bytes: int, **overrides) -> "StreamConfig":
        """Defaults, but messages up to ``max_message_bytes`` when that is above the default
        (never below it: reassembly room grows with the fragments that arrive, so a high bound
        costs nothing until used); the send buffer grows to hold two such messages."""
        largest = max(cls.max_message_bytes, max_message_bytes)
        send = max(cls.send_buffer_bytes, 2 * largest)
        return cls(**{"max_message_bytes": largest, "send_buffer_bytes": send, **overrides})

    def __post_init__(self) -> None:
        if not DATA_HEADER + MAC_BYTES + 16 <= self.mtu_bytes <= 65507:
            raise ValueError(f"mtu_bytes out of range: {self.mtu_bytes}")
        if self.window_bytes < self.mtu_bytes:
            raise ValueError("window_bytes must hold at least one frame (>= mtu_bytes)")
        if self.window_bytes >= 2**31:
            # STATUS and NAK carry it as an i32: a larger one raised out of every duty cycle
            raise ValueError(f"window_bytes must be below 2**31 (an i32 on the wire), got "
                             f"{self.window_bytes}")
        if self.max_message_bytes < 1 or self.send_buffer_bytes < self.max_message_bytes:
            raise ValueError("need 1 <= max_message_bytes <= send_buffer_bytes")
        for name in ("nak_retry_ns", "retransmit_linger_ns", "status_interval_ns", "status_piggyback_ns",
                     "status_prompt_ns", "heartbeat_interval_ns", "idle_interval_ns", "setup_linger_ns"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
