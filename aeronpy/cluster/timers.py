"""Service timers, kept by the consensus layer and fired through the log.

A service schedules a timer while it handles a log entry, so every member's table changes at
the same point of the log. Only the leader looks at deadlines (in cluster time, its own clock)
and proposes a TIMER_FIRE entry; the timer fires on every member when that entry is applied,
and only if the entry still names the live schedule of the timer. Each schedule gets a fresh
``timer_seq``, so a fire proposed for a schedule that was cancelled or replaced in between is
skipped everywhere: the log resolves the race.

Replicated state is ``_timers`` and ``next_timer_seq`` only (what a snapshot holds). The heap
of (deadline, timer_seq, service, cid) is bookkeeping for :meth:`TimerTable.due`: a cancel or
reschedule leaves its old entry in it (stale: it no longer names the live schedule), and so
does a fire applied on a follower, which never pops its heap. Stale entries are dropped when
they reach the top, and the heap is compacted in place whenever it holds more than
``2 * len(table) + COMPACT_SLACK`` entries, so it stays within a constant factor of the live
timers at O(1) amortised cost per push. Compaction only removes entries that can no longer
fire, so the order :meth:`TimerTable.due` yields (deadline, then timer_seq) is unchanged, and
no member's replicated state depends on it.
"""
from __future__ import annotations

import heapq
from typing import Iterator, Optional

TimerKey = tuple  # (service_id, correlation_id)


class TimerTable:
    """Replicated timers: (service_id, correlation_id) -> (deadline_ns, timer_seq)."""

    #: the heap is compacted when it exceeds ``2 * len(self) + COMPACT_SLACK`` entries
    COMPACT_SLACK = 64

    def __init__(self) -> None:
        self._timers: dict[TimerKey, tuple[int, int]] = {}
        self.next_timer_seq = 1
        self._heap: list[tuple[int, int, int, int]] = []   # (deadline, timer_seq, service, cid)

    # ---- replicated changes (called while applying entries) ----------------------------
    def schedule(self, service_id: int, correlation_id: int, deadline_ns: int) -> int:
        """Schedule or reschedule; returns the new timer_seq."""
        timer_seq = self.next_timer_seq
        self.next_timer_seq += 1
        timers = self._timers
        timers[(service_id, correlation_id)] = (deadline_ns, timer_seq)
        heap = self._heap
        heapq.heappush(heap, (deadline_ns, timer_seq, service_id, correlation_id))
        if len(heap) > 2 * len(timers) + self.COMPACT_SLACK:
            self._compact()
        return timer_seq

    def cancel(self, service_id: int, correlation_id: int) -> bool:
        timers = self._timers
        if timers.pop((service_id, correlation_id), None) is None:
            return False
        if len(self._heap) > 2 * len(timers) + self.COMPACT_SLACK:
            self._compact()
        return True

    def take_if_live(self, service_id: int, correlation_id: int, timer_seq: int) -> bool:
        """Remove the timer if ``timer_seq`` is its current schedule; True when it should fire."""
        current = self._timers.get((service_id, correlation_id))
        if current is None or current[1] != timer_seq:
            return False
        del self._timers[(service_id, correlation_id)]
        if len(self._heap) > 2 * len(self._timers) + self.COMPACT_SLACK:
            self._compact()     # a follower never pops its heap: fired entries stay in it
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

    def next_deadline(self) -> Optional[int]:
        """The earliest scheduled deadline, or None (a cancelled timer's may still count:
        its heap entry stays until popped, so a waiter wakes early, never late)."""
        heap = self._heap
        return heap[0][0] if heap else None

    def requeue(self, service_id: int, correlation_id: int, timer_seq: int) -> None:
        """Put a schedule that :meth:`due` yielded back (its fire could not be proposed)."""
        current = self._timers.get((service_id, correlation_id))
        if current is not None and current[1] == timer_seq:
            heap = self._heap
            heapq.heappush(heap, (current[0], timer_seq, service_id, correlation_id))
            if len(heap) > 2 * len(self._timers) + self.COMPACT_SLACK:
                self._compact()

    def rebuild_heap(self) -> None:
        """One entry per live timer (a new leader: fires popped before may not be in the log).
        In place, so a :meth:`due` generator in progress keeps seeing the table's heap."""
        heap = self._heap
        heap[:] = [(d, s, svc, cid) for (svc, cid), (d, s) in self._timers.items()]
        heapq.heapify(heap)

    def _compact(self) -> None:
        """Drop the heap's stale entries, in place (a :meth:`due` generator part-way through
        keeps working). Entries the leader has popped (fires in flight) stay out: compaction
        only removes, never adds back. Cost O(len(heap)); it runs when the heap is more than
        ``2 * len(self) + COMPACT_SLACK``, and leaves at most ``len(self)`` entries (a live
        schedule is in the heap at most once: only a requeue of a fire popped before a
        rebuild_heap could add a second, and the leader requeues in the tick that popped it),
        so over half of what it scans is dropped: amortised O(1) per push."""
        timers = self._timers
        heap = self._heap
        live = []
        for entry in heap:
            current = timers.get((entry[2], entry[3]))
            if current is not None and current[1] == entry[1]:
                live.append(entry)
        heap[:] = live
        heapq.heapify(heap)

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
