"""The leader's view of one follower's log (etcd's Progress).

PROBE: we do not know where the follower's log matches ours; send one AppendEntries and wait
for its answer (or a heartbeat answer) before sending another. REPLICATE: the follower is
known to match up to ``match``; stream AppendEntries optimistically, at most
``max_inflight`` unacknowledged at a time. SNAPSHOT: the entries it needs were compacted away;
the driver must send it a snapshot first.
"""
from __future__ import annotations

from collections import deque

PROBE = 0
REPLICATE = 1
SNAPSHOT = 2
MODE_NAMES = ("PROBE", "REPLICATE", "SNAPSHOT")


class Progress:
    __slots__ = ("member_id", "match", "next", "mode", "probe_sent", "inflight", "max_inflight",
                 "last_ack_ns", "last_heard_ns", "pending_snapshot_index")

    def __init__(self, member_id: int, next_index: int, now_ns: int, max_inflight: int):
        self.member_id = member_id
        self.match = 0
        self.next = next_index
        self.mode = PROBE
        self.probe_sent = False
        self.inflight: deque = deque()   # last index of each unacknowledged AppendEntries
        self.max_inflight = max_inflight
        self.last_ack_ns = now_ns        # retransmit timer start: match advanced, or an append
                                         # went in flight after none
        self.last_heard_ns = now_ns      # last time any message came from it (check-quorum)
        self.pending_snapshot_index = 0

    def can_send(self) -> bool:
        if self.mode == REPLICATE:
            return len(self.inflight) < self.max_inflight
        if self.mode == PROBE:
            return not self.probe_sent
        return False

    def on_sent(self, last_index: int) -> None:
        """An AppendEntries covering up to ``last_index`` went out."""
        if self.mode == REPLICATE:
            self.next = last_index + 1
            self.inflight.append(last_index)
        else:
            self.probe_sent = True

    def on_ack(self, match_index: int, now_ns: int) -> bool:
        """The follower matches up to ``match_index``; False if that is old news."""
        if match_index <= self.match:
            return False
        self.match = match_index
        if self.next <= match_index:
            self.next = match_index + 1
        inflight = self.inflight
        while inflight and inflight[0] <= match_index:
            inflight.popleft()
        self.last_ack_ns = now_ns
        return True

    def become_probe(self, next_index: int) -> None:
        self.mode = PROBE
        self.next = max(next_index, self.match + 1)
        self.probe_sent = False
        self.inflight.clear()

    def become_replicate(self, now_ns: int) -> None:
        self.mode = REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()
        self.last_ack_ns = now_ns

    def become_snapshot(self, snapshot_index: int) -> None:
        self.mode = SNAPSHOT
        self.pending_snapshot_index = snapshot_index
        self.inflight.clear()

    def __repr__(self) -> str:
        return (f"Progress(member={self.member_id}, mode={MODE_NAMES[self.mode]}, match={self.match}, "
                f"next={self.next}, inflight={len(self.inflight)})")
