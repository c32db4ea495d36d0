"""Transport counters: plain ints the node can read (and export) at any time.

Why plain attributes: they are bumped on the hot path, where a dict lookup or a lock per
increment would cost more than the work being counted. They are C integers of the compiled
``StreamCounters`` so the compiled stream paths bump them directly.
"""
from __future__ import annotations

from aeronpy._streams import StreamCounters

# Every reason a datagram (or a frame inside a stream) is dropped. Each has its own counter.
DROP_REASONS = (
    "malformed",           # not a well-formed frame (FrameError), or inconsistent fragments
    "oversize",            # datagram larger than the receive slot, or message > max_message_bytes
    "wrong_cluster",       # cluster_id is not ours
    "wrong_stream",        # stream_id is not this transport's
    "bad_mac",             # missing or wrong MAC while a secret is configured
    "unknown_member",      # sender_id names no configured peer (or clients are not accepted)
    "unknown_peer",        # control frame from a client we have no stream with
    "too_many_clients",    # a new client while max_clients are connected
    "stale_epoch",         # frame from an earlier incarnation of a peer, or about ours
    "beyond_window",       # out-of-order DATA beyond the receive window
    "bogus_position",      # STATUS acknowledging data never sent
    "incomplete_message",  # a fragmented message abandoned (sender restarted or jumped)
)


# Every counter besides ``drops`` (the fields of StreamCounters, C integers).
COUNTER_NAMES = (
    "messages_in", "messages_out", "messages_reassembled", "data_frames_out",
    "naks_sent", "naks_received", "retransmits", "status_sent", "status_received",
    "heartbeats_sent", "setups_sent", "setup_jumps", "bytes_skipped", "fragments_skipped",
    "duplicates", "back_pressured", "clients_connected", "clients_lost", "peer_restarts",
)


class TransportCounters(StreamCounters):
    """Counters of one transport. ``drops[reason]`` counts each drop reason."""

    __slots__ = ()

    def __init__(self) -> None:
        self.drops = {reason: 0 for reason in DROP_REASONS}

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    def snapshot(self) -> dict:
        """All counters as one flat dict of ints (drops as ``drop_<reason>``)."""
        out = {name: getattr(self, name) for name in COUNTER_NAMES}
        out.update({f"drop_{reason}": n for reason, n in self.drops.items()})
        return out
