"""Frame admission: decide whether a frame may enter a stream, and count why not.

The rule of this module: input from the network never raises. A datagram is checked
cheapest-first (shape, cluster, stream, size, then the MAC, which costs a hash) and every
refusal increments exactly one ``drops[reason]`` counter. Identity checks (unknown member,
stale epoch, unknown client) need the peer table and are made by the transport through
``drop()`` and ``epoch_is_stale()``.
"""
from __future__ import annotations

from collections import deque

from aeronpy._frame import DATA, FrameError, FrameReader
from aeronpy.transport.counters import TransportCounters

RETIRED_EPOCHS_MAX = 8   # earlier incarnations remembered per member, to refuse their replays


class Admission:
    """Stateless checks of one datagram against this transport's identity and limits."""

    def __init__(self, reader: FrameReader, cluster_id: int, stream_id: int,
                 max_message_bytes: int, counters: TransportCounters):
        self.reader = reader
        self.cluster_id = cluster_id
        self.stream_id = stream_id
        self.max_message_bytes = max_message_bytes
        self.drops = counters.drops

    def admit(self, datagram) -> int:
        """The frame type if ``datagram`` (exactly one frame) passes; 0 (and one drop counted)
        if not."""
        return self.admit_at(datagram, 0, True)

    def admit_at(self, datagram, offset: int, whole: bool = False) -> int:
        """The same checks for the frame at ``offset`` of a datagram packing several frames;
        on success ``reader.frame_end`` is where the next frame starts."""
        reader = self.reader
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
        if frame_type == DATA and reader.message_length > self.max_message_bytes:
            self.drops["oversize"] += 1
            return 0
        if not reader.mac_ok(datagram):
            self.drops["bad_mac"] += 1
            return 0
        return frame_type

    def drop(self, reason: str) -> None:
        self.drops[reason] += 1


def epoch_is_stale(retired_epochs: deque, epoch: int) -> bool:
    """True when ``epoch`` belongs to an incarnation of a peer that has since restarted."""
    return epoch in retired_epochs


def retire_epoch(retired_epochs: deque, epoch: int) -> None:
    if epoch not in retired_epochs:
        retired_epochs.append(epoch)   # a deque(maxlen=RETIRED_EPOCHS_MAX) forgets the oldest
