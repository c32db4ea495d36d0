"""TimerTable's due-heap stays within a constant factor of the live timers.

Regression: cancels and reschedules (and, on a follower, applied fires) left their heap entries
behind until the old deadline came due, so a good-till-time pattern (schedule a timer an hour
out, cancel it soon after) grew every member's heap by one entry per order all day. The heap
is now compacted in place when it exceeds ``2 * len(table) + COMPACT_SLACK``; compaction only
drops entries that can no longer fire, so what ``due`` yields, and in which order, is unchanged
(checked against a reference model below).
"""
from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P
from aeronpy.cluster.timers import TimerTable

from .fakes import FakeWorld, RecordingService

T0 = 1_000_000_000
HOUR_NS = 3600 * 1_000_000_000


def heap_bounded(table: TimerTable) -> bool:
    return len(table._heap) <= 2 * len(table) + table.COMPACT_SLACK


# ---- the reviewer's pattern, smaller ------------------------------------------------------
def test_good_till_time_schedule_then_cancel_keeps_the_heap_bounded():
    """100 x (schedule an hour out; cancel) per message, 300 messages: 0 live timers, and
    (before the fix) 30,000 stale heap entries."""
    table = TimerTable()
    for message in range(300):
        ts = T0 + message * 1_000
        for n in range(100):
            table.schedule(0, n, ts + HOUR_NS)
            assert table.cancel(0, n)
        assert heap_bounded(table), (message, len(table._heap), len(table))
    assert len(table) == 0
    assert len(table._heap) <= table.COMPACT_SLACK
    assert not table.has_due(T0 + 2 * HOUR_NS) or list(table.due(T0 + 2 * HOUR_NS)) == []


def test_reschedules_keep_the_heap_bounded_and_the_last_deadline_wins():
    table = TimerTable()
    for message in range(300):
        for n in range(100):                        # amend 100 resting orders' expiry
            table.schedule(0, n, T0 + HOUR_NS + message)
        assert heap_bounded(table), (message, len(table._heap), len(table))
    assert len(table) == 100
    fired = [cid for _svc, cid, _seq in table.due(T0 + HOUR_NS + 299)]
    assert fired == list(range(100))                # last schedule of each, in timer_seq order


def test_follower_applying_fires_keeps_the_heap_bounded():
    """A follower never calls due(): before the fix every fire it applied stayed in its heap."""
    leader, follower = TimerTable(), TimerTable()
    for round_ in range(200):
        for table in (leader, follower):
            for n in range(50):
                table.schedule(1, round_ * 50 + n, T0 + round_)
        fires = list(leader.due(T0 + round_))
        assert len(fires) == 50
        for table in (leader, follower):
            for service_id, cid, seq in fires:
                assert table.take_if_live(service_id, cid, seq)
            assert heap_bounded(table), (round_, len(table._heap), len(table))
    assert len(leader) == len(follower) == 0


def test_compaction_does_not_bring_back_a_fire_in_flight():
    """A fire the leader popped and proposed is not in the heap; compacting must not push it
    back (only a new leader's rebuild_heap does), or due() would yield it a second time."""
    table = TimerTable()
    table.COMPACT_SLACK = 0
    table.schedule(0, 1, 5)
    table.schedule(0, 2, 5)
    assert list(itertools.islice(table.due(10), 1)) == [(0, 1, 1)]    # in flight
    for n in range(10, 20):                                           # churn: compactions
        table.schedule(0, n, 50)
        table.cancel(0, n)
        assert heap_bounded(table)
    assert list(table.due(10)) == [(0, 2, 2)]
    assert table.take_if_live(0, 1, 1)


def test_compaction_keeps_a_due_iteration_in_progress_on_the_table_heap():
    """Compaction works in place: a due() generator part-way through still sees schedules
    made after it started, as it did when the heap was only ever pushed to."""
    table = TimerTable()
    table.COMPACT_SLACK = 0
    for cid in range(3):
        table.schedule(0, cid, 5)
    due = table.due(10)
    assert next(due) == (0, 0, 1)
    for n in range(10, 20):
        table.schedule(0, n, 50)
        table.cancel(0, n)
    table.schedule(0, 99, 7)
    assert heap_bounded(table)
    assert list(due) == [(0, 1, 2), (0, 2, 3), (0, 99, 14)]


class GoodTillTimeService(RecordingService):
    """b"g <n> <cid>": n x (schedule a timer an hour out; cancel it), then a timer for
    ``cid`` due 10 ns after the message (it fires)."""

    def on_session_message(self, session, timestamp_ns, message):
        parts = bytes(message).split()
        if parts[0] == b"g":
            for n in range(int(parts[1])):
                assert self.cluster.schedule_timer(1_000_000 + n, timestamp_ns + HOUR_NS)
                assert self.cluster.cancel_timer(1_000_000 + n)
            assert self.cluster.schedule_timer(int(parts[2]), timestamp_ns + 10)
        super().on_session_message(session, timestamp_ns, message)


def test_every_member_heap_stays_bounded_through_the_module():
    w = FakeWorld(members=3, services=lambda: [GoodTillTimeService()])
    w.elect(0)
    sid = w.connect()
    for seq in range(1, 61):
        w.ingress(0, "c1:7000", P.SessionMessage(sid, seq, seq, 0, b"g 100 %d" % seq))
        w.settle()
        w.tick(20)                                  # the leader proposes the short timer's fire
        w.settle()
        for module in w.modules:
            assert heap_bounded(module.timers), (seq, len(module.timers._heap), len(module.timers))
    assert w.log_types().count(E.TIMER_FIRE) == 60
    fired = [[e[1] for e in w.services(m)[0].events if e[0] == "timer"] for m in range(3)]
    assert fired[0] == fired[1] == fired[2] == list(range(1, 61))
    assert all(len(m.timers) == 0 for m in w.modules)


# ---- property: same yields as a reference model, heap bounded throughout ------------------
class ReferenceTimers:
    """The table's contract, naively: a dict scanned for its minimum."""

    def __init__(self):
        self.timers: dict[tuple[int, int], tuple[int, int]] = {}
        self.next_seq = 1
        self.popped: set[int] = set()               # yielded by due, not requeued or rebuilt

    def schedule(self, svc, cid, deadline):
        seq = self.next_seq
        self.next_seq += 1
        self.timers[(svc, cid)] = (deadline, seq)
        return seq

    def cancel(self, svc, cid):
        return self.timers.pop((svc, cid), None) is not None

    def take_if_live(self, svc, cid, seq):
        current = self.timers.get((svc, cid))
        if current is None or current[1] != seq:
            return False
        del self.timers[(svc, cid)]
        return True

    def due(self, now, limit):
        out = []
        while len(out) < limit:
            ready = [(d, s, svc, cid) for (svc, cid), (d, s) in self.timers.items()
                     if d <= now and s not in self.popped]
            if not ready:
                break
            d, s, svc, cid = min(ready)
            self.popped.add(s)
            out.append((svc, cid, s))
        return out

    def requeue(self, svc, cid, seq):
        self.popped.discard(seq)

    def rebuild(self):
        self.popped.clear()

    def items(self):
        return sorted(((svc, cid, d, s) for (svc, cid), (d, s) in self.timers.items()),
                      key=lambda t: t[3])


# (kind, service_id, correlation_id, a, b); the kinds repeat to weight them: mostly churn, so
# stale entries pile up and the heap is compacted while fires are in flight
KINDS = (["schedule"] * 6 + ["cancel"] * 4 + ["due"] * 3
         + ["requeue", "fire", "apply_fire", "stale_fire", "rebuild", "restore"])
OPS = st.tuples(st.sampled_from(KINDS), st.integers(0, 1), st.integers(0, 3),
                st.integers(0, 120), st.integers(0, 60))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=10, max_size=150),
       slack=st.sampled_from([0, 1, 3, TimerTable.COMPACT_SLACK]))
def test_table_matches_the_reference_model_with_a_bounded_heap(ops, slack):
    table, ref = TimerTable(), ReferenceTimers()
    table.COMPACT_SLACK = slack
    requeueable: list[tuple[int, int, int]] = []   # yielded since the last rebuild (as in tick)
    in_flight: list[tuple[int, int, int]] = []     # yielded, fire not applied yet
    for op in ops:
        kind, key, a, b = op[0], op[1:3], op[3], op[4]
        if kind == "schedule":                       # deadline a
            assert table.schedule(*key, a) == ref.schedule(*key, a)
        elif kind == "cancel":
            assert table.cancel(*key) == ref.cancel(*key)
        elif kind == "due":                          # now a, at most b % 4 fires (the budget)
            now, limit = a, b % 4
            expected = ref.due(now, limit)
            if expected:
                assert table.has_due(now)
            got = list(itertools.islice(table.due(now), limit))
            assert got == expected
            requeueable += got
            in_flight += got
        elif kind == "requeue" and requeueable:     # the proposal was refused
            fire = requeueable.pop(b % len(requeueable))
            in_flight.remove(fire)
            table.requeue(*fire)
            ref.requeue(*fire)
        elif kind == "fire" and in_flight:          # a fire this member proposed is applied
            fire = in_flight.pop(b % len(in_flight))
            if fire in requeueable:
                requeueable.remove(fire)
            assert table.take_if_live(*fire) == ref.take_if_live(*fire)
        elif kind == "apply_fire":                   # a fire it did not pop (a follower)
            current = ref.timers.get(key)
            if current is not None:
                assert table.take_if_live(*key, current[1]) == ref.take_if_live(*key, current[1])
        elif kind == "stale_fire":                   # timer_seq b, live or not
            assert table.take_if_live(*key, b) == ref.take_if_live(*key, b)
        elif kind == "rebuild":                      # a new leader
            table.rebuild_heap()
            ref.rebuild()
            requeueable.clear()
        elif kind == "restore":                      # snapshot round trip
            items, next_seq = table.items(), table.next_timer_seq
            table = TimerTable()
            table.COMPACT_SLACK = slack
            table.restore(items, next_seq)
            ref.rebuild()
            requeueable.clear()
        assert len(table) == len(ref.timers)
        assert table.items() == ref.items()
        assert table.next_timer_seq == ref.next_seq
        assert heap_bounded(table), (op, len(table._heap), len(table))
    # whatever is left fires in (deadline, timer_seq) order, each live schedule once
    table.rebuild_heap()
    ref.rebuild()
    assert list(table.due(10**9)) == ref.due(10**9, 10**9)
