"""Frame admission: decide whether a frame may enter a stream, and count why not.

The rule of this module: input from the network never raises. A datagram is checked
cheapest-first (shape, cluster, stream, size, then the MAC, which costs a hash) and every
refusal increments exactly one ``drops[reason]`` counter. Identity checks (unknown member,
stale epoch, unknown client) need the peer table and are made by the transport through
``drop()`` and ``epoch_is_stale()``.
"""
from __future__ import annotations

from collections import deque

from aeronpy._frame import FrameReader
from aeronpy._streams import AdmissionCore
from aeronpy.transport.counters import TransportCounters

RETIRED_EPOCHS_MAX = 8   # earlier incarnations remembered per member, to refuse their replays


class Admission(AdmissionCore):
    """Stateless checks of one datagram against this transport's identity and limits.

    ``admit_at(datagram, offset, whole=False)`` (compiled, ``AdmissionCore``) checks the frame
    at ``offset`` of a datagram packing several frames: the frame type, or 0 with one drop
    counted; on success ``reader.frame_end`` is where the next frame starts."""

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

    def drop(self, reason: str) -> None:
        self.drops[reason] += 1


def epoch_is_stale(retired_epochs: deque, epoch: int) -> bool:
    """True when ``epoch`` belongs to an incarnation of a peer that has since restarted."""
    return epoch in retired_epochs


def retire_epoch(retired_epochs: deque, epoch: int) -> None:
    if epoch not in retired_epochs:
        retired_epochs.append(epoch)   # a deque(maxlen=RETIRED_EPOCHS_MAX) forgets the oldest
