"""Members whose wall clocks differ or are stepped (clock trial CK, /work/notes/trials/clock).

Cluster time is the leader's epoch-anchored clock, stamped into each entry and never going
backwards (docs/operations.md, "Cluster time"). FakeWorld feeds every module one ``now_ns``,
so moving it at a failover is a new leader whose clock differs from the old one's.
The first tests pin what the process trial observed and the docs promise; the last two are
the bugs it found (fixed).
"""
import pytest

from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P
from aeronpy.cluster.counters import CountersReader, CountersWriter

from .fakes import FakeWorld, RecordingService

S = 1_000_000_000
SKEW_NS = 30 * S
TIMEOUT_NS = 5 * S
MEMBERS = [{"id": 0, "host": "127.0.0.1", "consensus_port": 20100, "ingress_port": 20101}]


class TimerService(RecordingService):
    """b"s <cid> <delay_ns>" schedules timer cid at the entry's cluster time + delay."""

    def on_session_message(self, session, timestamp_ns, message):
        parts = bytes(message).split()
        if parts[0] == b"s":
            self.cluster.schedule_timer(int(parts[1]), timestamp_ns + int(parts[2]))
        super().on_session_message(session, timestamp_ns, message)


def world_with_sessions():
    """Member 0 leads with two sessions and timers cid 1 (+5 s) and cid 2 (+40 s)."""
    w = FakeWorld(members=3, services=lambda: [TimerService()], session_timeout_ns=TIMEOUT_NS)
    w.now_ns = 1_000 * S            # epoch-like: a clock 30 s behind still reads > 0
    w.elect(0)
    w.settle()
    a = w.connect(0, endpoint="c1:7000", nonce=1, correlation_id=1)
    b = w.connect(0, endpoint="c2:7000", nonce=2, correlation_id=2)
    for seq, cid, delay in ((1, 1, 5 * S), (2, 2, 40 * S)):
        w.ingress(0, "c1:7000", P.SessionMessage(a, seq, seq, 0, b"s %d %d" % (cid, delay)))
        w.settle()
    return w, (a, b)


def fail_over_to(w, member, skew_ns):
    """Member 0 fails; ``member``, whose clock reads ``skew_ns`` off member 0's, takes over."""
    last_stamp = w.modules[member].cluster_time_ns
    w.now_ns += skew_ns
    w.elect(member, alive=(1, 2))
    w.settle()
    assert w.modules[member]._leader_ready
    return last_stamp


def proposed(w, member, entry_type):
    return [e for e in w.cores[member].log.entries if e[1] == entry_type]


def test_failover_to_a_leader_ahead_fires_timers_early_but_times_out_no_session():
    w, sessions = world_with_sessions()
    last_stamp = fail_over_to(w, 1, SKEW_NS)
    assert w.tick(0) == 1                      # the +5 s timer: due by the new leader's clock
    assert [t[1] for t in proposed(w, 1, E.TIMER_FIRE)] == [E.TIMER_FIRE]
    w.settle()
    fired = [e for e in w.services(1)[0].events if e[0] == "timer"]
    assert [(cid, ts - last_stamp >= SKEW_NS) for _, cid, ts in fired] == [(1, True)]
    # silence is judged on the new leader's clock alone, from its taking over
    assert w.tick(TIMEOUT_NS - 1) == 0 and proposed(w, 1, E.SESSION_CLOSE) == []
    assert w.tick(1) == 2
    w.settle()
    closes = [e for e in w.services(1)[0].events if e[0] == "close"]
    assert sorted(sid for _, sid, _ in closes) == sorted(sessions)


def test_failover_to_a_leader_behind_stalls_cluster_time_and_timers_not_sessions():
    w, sessions = world_with_sessions()
    last_stamp = fail_over_to(w, 1, -SKEW_NS)
    leader = w.modules[1]
    w.ingress(1, "c1:7000", P.SessionMessage(sessions[0], 3, 3, 0, b"ping"))
    w.settle()
    ping = [e for e in w.services(1)[0].events if e[0] == "message"][-1]
    stamped = E.decode_entry(E.SESSION_MESSAGE, proposed(w, 1, E.SESSION_MESSAGE)[-1][2])
    assert stamped.timestamp_ns == ping[4] == last_stamp   # stands still, never below it
    # silence is judged on this leader's own clock: 5 s after it took over, not 35 s
    assert w.tick(TIMEOUT_NS - 1) == 0
    assert w.tick(1) == 2 and len(proposed(w, 1, E.SESSION_CLOSE)) == 2
    w.settle()
    # the +5 s timer waits until this leader's clock reaches it: 30 s more than its 5 s
    remaining = leader.timers.deadline(0, 1) - w.now_ns
    assert remaining >= SKEW_NS
    assert w.tick(remaining - 1) == 0 and proposed(w, 1, E.TIMER_FIRE) == []
    assert w.tick(1) == 1 and len(proposed(w, 1, E.TIMER_FIRE)) == 1



def test_next_due_is_now_for_a_timer_due_by_the_last_stamp_on_a_leader_behind():
    """Found by the clock trial: next_due_ns reported such a timer later than tick fired it
    (deadline <= the last stamp, on a leader whose clock is behind it), so the node could park
    instead of proposing the fire (0.5-1.6 ms late on processes)."""
    w, sessions = world_with_sessions()
    fail_over_to(w, 1, -SKEW_NS)
    leader = w.modules[1]
    w.tick(0)                                  # sessions checked: next check in 5 s
    # deadline = the entry's own cluster time (the last stamp): due at once, on every leader
    w.ingress(1, "c1:7000", P.SessionMessage(sessions[0], 3, 3, 0, b"s 9 0"))
    w.settle()
    due_ns = leader.next_due_ns()
    assert w.tick(0) == 1                      # tick proposes the fire now ...
    assert due_ns <= w.now_ns                  # ... so the driver must not be told to wait



def test_status_of_a_node_hung_before_the_clock_stepped_back_is_not_running(tmp_path):
    """Found by the clock trial: a node hung before the host's wall clock stepped back showed
    as running (age 0.0 s) for as long as the step, 1 h there."""
    w = CountersWriter(tmp_path, member_id=0, cluster_id=7, members=MEMBERS)
    try:
        with CountersReader(tmp_path, stale_after_s=5.0) as r:
            last = r.value("last_update_ns")
            assert r.status(now_ns=last + 6 * S).state == "stale"     # control: no step
            stepped_back = r.status(now_ns=last + 6 * S - 3600 * S)
            assert stepped_back.state == "stale", stepped_back
    finally:
        w.close()


def test_a_leader_behind_the_last_stamp_warns_and_counts_it(caplog):
    """The trial's operator could not tell why cluster time stood still after a member whose
    clock was ahead had led: the new leader now says so."""
    w, _sessions = world_with_sessions()
    with caplog.at_level("WARNING", logger="aeronpy.cluster"):
        fail_over_to(w, 1, -SKEW_NS)
    assert w.modules[1].counters["leader_clock_behind"] == 1
    assert any("behind cluster time" in r.getMessage() and "30.0 s" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_a_leader_with_a_clock_ahead_does_not_warn(caplog):
    w, _sessions = world_with_sessions()                 # the control
    with caplog.at_level("WARNING", logger="aeronpy.cluster"):
        fail_over_to(w, 1, SKEW_NS)
    assert w.modules[1].counters["leader_clock_behind"] == 0
    assert not any("behind cluster time" in r.getMessage() for r in caplog.records)
