"""Timers and service messages: replicated, fired/delivered through the log exactly once."""
import pytest

from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P
from aeronpy.cluster.codes import BACK_PRESSURED

from .fakes import FakeWorld, RecordingService

C1 = "c1:7000"
T0 = 1_000_000_000


class TimerService(RecordingService):
    """Commands: b"s <cid> <deadline>" schedule, b"c <cid>" cancel, b"o <text>" cluster.offer."""

    def __init__(self):
        super().__init__()
        self.results = []

    def on_session_message(self, session, timestamp_ns, message):
        parts = bytes(message).split()
        if parts[0] == b"s":
            self.results.append(self.cluster.schedule_timer(int(parts[1]), int(parts[2])))
        elif parts[0] == b"c":
            self.results.append(self.cluster.cancel_timer(int(parts[1])))
        elif parts[0] == b"o":
            self.results.append(self.cluster.offer(parts[1]))
        super().on_session_message(session, timestamp_ns, message)

    def on_timer_event(self, correlation_id, timestamp_ns):
        super().on_timer_event(correlation_id, timestamp_ns)
        self.events[-1] += (self.cluster.commit_index,)


def command(w, sid, seq, text, member=0):
    w.ingress(member, C1, P.SessionMessage(sid, seq, seq, 0, text))
    w.settle()


def timer_events(w, member=0):
    return [e for e in w.services(member)[0].events if e[0] == "timer"]


def test_timer_fires_once_when_cluster_time_passes_its_deadline():
    w = FakeWorld(services=lambda: [TimerService()])
    sid = w.connect()
    command(w, sid, 1, b"s 9 %d" % (T0 + 500))
    assert w.tick(499) == 0
    assert w.tick(1) == 1
    assert w.tick(100) == 0                            # not proposed twice
    w.settle()
    [(_, cid, ts, _idx)] = timer_events(w)
    assert cid == 9 and ts == T0 + 500
    w.tick(1000)
    w.settle()
    assert len(timer_events(w)) == 1


def test_cancelled_timer_does_not_fire_even_if_its_fire_was_already_proposed():
    w = FakeWorld(services=lambda: [TimerService()])
    sid = w.connect()
    command(w, sid, 1, b"s 9 %d" % (T0 + 10))
    w.tick(20)                                          # TIMER_FIRE proposed, not applied
    assert w.log_types()[-1] == E.TIMER_FIRE
    w.ingress(0, C1, P.SessionMessage(sid, 2, 2, 0, b"c 9"))
    # the log now says: fire(9), then cancel(9); make the cancel come first
    log = w.cores[0].log.entries
    log[-1], log[-2] = log[-2], log[-1]
    w.settle()
    assert timer_events(w) == []
    assert w.services(0)[0].results == [True, True]
    assert w.modules[0].counters["timer_fire_stale"] == 1


def test_rescheduled_timer_fires_once_at_its_new_deadline():
    w = FakeWorld(services=lambda: [TimerService()])
    sid = w.connect()
    command(w, sid, 1, b"s 9 %d" % (T0 + 10))
    w.tick(20)                                          # fire of the first schedule proposed
    w.ingress(0, C1, P.SessionMessage(sid, 2, 2, 0, b"s 9 %d" % (T0 + 1000)))
    log = w.cores[0].log.entries
    log[-1], log[-2] = log[-2], log[-1]                # reschedule applies before the old fire
    w.settle()
    assert timer_events(w) == []
    w.tick(500)
    w.settle()
    assert timer_events(w) == []
    w.tick(500)
    w.settle()
    assert [e[1:3] for e in timer_events(w)] == [(9, T0 + 1020)]   # stamped when proposed


def test_cancel_of_unknown_timer_returns_false():
    w = FakeWorld(services=lambda: [TimerService()])
    sid = w.connect()
    command(w, sid, 1, b"c 4")
    assert w.services(0)[0].results == [False]


def test_timers_of_two_services_do_not_collide():
    w = FakeWorld(services=lambda: [TimerService(), TimerService()])
    sid = w.connect()
    w.ingress(0, C1, P.SessionMessage(sid, 1, 1, 0, b"s 9 %d" % (T0 + 5)))
    w.ingress(0, C1, P.SessionMessage(sid, 2, 2, 1, b"s 9 %d" % (T0 + 7)))
    w.settle()
    w.tick(10)
    w.settle()
    s0, s1 = w.services(0)
    assert [e[2] for e in timer_events(w)] == [T0 + 10]
    assert [e[2] for e in s1.events if e[0] == "timer"] == [T0 + 10]
    assert len(w.modules[0].timers) == 0


def test_service_message_is_delivered_once_with_no_session():
    w = FakeWorld(services=lambda: [TimerService()])
    sid = w.connect()
    command(w, sid, 1, b"o hello")
    assert w.services(0)[0].results == [1]
    assert w.tick() == 1
    assert w.tick() == 0                               # proposed once per leadership
    w.settle()
    msgs = [e for e in w.services(0)[0].events if e[0] == "message" and e[1] is None]
    assert [m[2] for m in msgs] == [b"hello"]
    assert not w.modules[0].pending_service_messages


def test_service_message_queue_is_bounded():
    w = FakeWorld(services=lambda: [TimerService()], service_message_queue_max=1)
    sid = w.connect()
    command(w, sid, 1, b"o a")
    command(w, sid, 2, b"o b")
    assert w.services(0)[0].results == [1, BACK_PRESSURED]


def test_timer_whose_fire_was_refused_fires_later_under_the_same_leader():
    """Regression (found by the SimCluster swarm, seed 535): the core refused the TIMER_FIRE
    proposal once (a leadership transfer under way) and the timer, already taken off the
    due heap, never fired while that member stayed leader."""
    w = FakeWorld(services=lambda: [TimerService()])
    sid = w.connect()
    command(w, sid, 1, b"s 9 %d" % (T0 + 500))
    leader = w.cores[w.leader()]
    leader.refuse_proposals = True
    assert w.tick(600) == 0
    leader.refuse_proposals = False
    assert w.tick(10) == 1
    w.settle()
    assert [e[1] for e in timer_events(w)] == [9]



def test_max_timers_refuses_a_new_id_but_still_moves_a_scheduled_one():
    """The table was unbounded: a service could grow every member's memory and snapshots
    without limit. Beyond max_timers a new id is refused with False (the contract's bool), on
    every member alike; moving or cancelling a scheduled one still works."""
    w = FakeWorld(members=3, services=lambda: [TimerService()], max_timers=2)
    w.elect(0)
    w.settle()
    sid = w.connect()
    far = T0 + 10**12
    for seq, text in enumerate((b"s 1 %d" % far, b"s 2 %d" % far, b"s 3 %d" % far,
                                b"s 1 %d" % (far + 1), b"c 2", b"s 3 %d" % far), start=1):
        command(w, sid, seq, text)
    for m in range(3):
        assert w.services(m)[0].results == [True, True, False, True, True, True]
        assert sorted(t[:2] for t in w.modules[m].timers.items()) == [(0, 1), (0, 3)]
        assert w.modules[m].counters["timer_schedule_refused"] == 1


def test_a_deadline_past_64_bits_is_held_at_the_largest_and_snapshots_still_encode():
    """Found by a review: a far deadline (2**64) was accepted, then every member failed at its
    next snapshot (struct.error in the timer table's encoding), again after every restart."""
    w = FakeWorld(members=3, services=lambda: [TimerService()])
    w.elect(0)
    w.settle()
    sid = w.connect()
    command(w, sid, 1, b"s 5 %d" % (2 ** 64))
    command(w, sid, 2, b"s 6 %d" % (-(2 ** 70)))         # and one before any cluster time
    for m in range(3):
        assert w.services(m)[0].results == [True, True]
        assert w.modules[m].timers.deadline(0, 5) == 2 ** 63 - 1
        assert w.modules[m].snapshot_state()            # encodes (raised struct.error before)
    w.tick(1)
    w.settle()
    assert [e[1] for e in timer_events(w)] == [6]       # the past one fires, the far one not


def test_a_correlation_id_past_64_bits_raises_in_the_callback_that_passed_it():
    """Before, schedule_timer(2**63, ...) returned True and every member that led failed
    later, inside the timer-fire encoding, naming no service or entry. Now the ValueError is
    raised where the service passed the id, so the failure names the service and the entry
    (and a service that takes ids from clients can catch it)."""
    from aeronpy.cluster.container import ServiceError
    w = FakeWorld(services=lambda: [TimerService()])
    sid = w.connect()
    with pytest.raises((ServiceError, ValueError), match="does not fit a signed 64-bit integer"):
        command(w, sid, 1, b"s %d %d" % (2 ** 63, T0 + 5))
    assert len(w.modules[0].timers) == 0


def test_cancel_of_an_id_past_64_bits_is_simply_false():
    w = FakeWorld(services=lambda: [TimerService()])
    sid = w.connect()
    command(w, sid, 1, b"c %d" % (2 ** 64))
    assert w.services(0)[0].results == [False]
