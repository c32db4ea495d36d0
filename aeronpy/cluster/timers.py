"""Service timers, kept by the consensus layer and fired through the log.

A service schedules a timer while it handles a log entry, so every member's table changes at
the same point of the log. Only the leader looks at deadlines (in cluster time, its own clock)
and proposes a TIMER_FIRE entry; the timer fires on every member when that entry is applied,
and only if the entry still names the live schedule of the timer. Each schedule gets a fresh
``timer_seq``, so a fire proposed for a schedule that was cancelled or replaced in between is
skipped everywhere: the log resolves the race.
"""
from __future__ import annotations

import heapq
from typing import Iterator, Optional

TimerKey = tuple  # (service_id, correlation_id)


class TimerTable:
    """Replicated timers: (service_id, correlation_id) -> (deadline_ns, timer_seq)."""

    def __init__(self) -> None:
        self._timers: dict[TimerKey, tuple[int, int]] = {}
        self.next_timer_seq = 1
        self._heap: list[tuple[int, int, int, int]] = []   # (deadline, timer_seq, service, cid)

    # ---- replicated changes (called while applying entries) ----------------------------
    def schedule(self, service_id: int, correlation_id: int, deadline_ns: int) -> int:
        """Schedule or reschedule; returns the new timer_seq."""
        timer_seq = self.next_timer_seq
        self.next_timer_seq += 1
        self._timers[(service_id, correlation_id)] = (deadline_ns, timer_seq)
        heapq.heappush(self._heap, (deadline_ns, timer_seq, service_id, correlation_id))
        return timer_seq

    def cancel(self, service_id: int, correlation_id: int) -> bool:
        return self._timers.pop((service_id, correlation_id), None) is not None

    def take_if_live(self, service_id: int, correlation_id: int, timer_seq: int) -> bool:
        """Remove the timer if ``timer_seq`` is its current schedule; True when it should fire."""
        current = self._timers.get((service_id, correlation_id))
        if current is None or current[1] != timer_seq:
            return False
        del self._timers[(service_id, correlation_id)]
        return True

    # ---- leader side --------------------------------------------------------------------
    def due(self, now_ns: int) -> Iterator[tuple[int, int, int]]:
        """Yield (service_id, correlation_id, timer_seq) of live timers with deadline <= now.

        Each schedule is yielded once (popped from the heap); the leader rebuilds the heap
        with :meth:`rebuild_heap` when it takes over, since a fire it popped might never
        have reached the log.
        """
        heap = self._heap
        while heap and heap[0][0] <= now_ns:
            deadline, timer_seq, service_id, cid = heapq.heappop(heap)
            current = self._timers.get((service_id, cid))
            if current is not None and current[1] == timer_seq:
                yield service_id, cid, timer_seq

    def has_due(self, now_ns: int) -> bool:
        """True when :meth:`due` may yield at ``now_ns`` (a scheduled deadline has passed):
        the leader's tick asks this one comparison before it builds the generator."""
        heap = self._heap
        return bool(heap) and heap[0][0] <= now_ns

    def requeue(self, service_id: int, correlation_id: int, timer_seq: int) -> None:
        """Put a schedule that :meth:`due` yielded back (its fire could not be proposed)."""
        current = self._timers.get((service_id, correlation_id))
        if current is not None and current[1] == timer_seq:
            heapq.heappush(self._heap, (current[0], timer_seq, service_id, correlation_id))

    def rebuild_heap(self) -> None:
        self._heap = [(d, s, svc, cid) for (svc, cid), (d, s) in self._timers.items()]
        heapq.heapify(self._heap)

    # ---- inspection / snapshots ---------------------------------------------------------
    def deadline(self, service_id: int, correlation_id: int) -> Optional[int]:
        current = self._timers.get((service_id, correlation_id))
        return None if current is None else current[0]

    def items(self) -> list[tuple[int, int, int, int]]:
        """(service_id, correlation_id, deadline_ns, timer_seq) in schedule order."""
        return sorted(((svc, cid, d, s) for (svc, cid), (d, s) in self._timers.items()),
                      key=lambda t: t[3])

    def restore(self, items, next_timer_seq: int) -> None:
        self._timers = {(svc, cid): (d, s) for svc, cid, d, s in items}
        self.next_timer_seq = next_timer_seq
        self.rebuild_heap()

    def __len__(self) -> int:
        return len(self._timers)
