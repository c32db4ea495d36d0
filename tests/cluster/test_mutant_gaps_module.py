"""Gaps a mutation-testing pass found in the consensus module's timers and session timeouts.

Each test here failed to exist: the mutant it names survived the whole suite.
- T03: a member that led before and leads again must rebuild its timer heap. A TIMER_FIRE it
  proposed in its earlier leadership, then lost to a truncation, must be proposed again.
- ST2: the compiled ingress path (``IngressPath.on_frame``) must count a session message as
  hearing from the client, as the Python handler does. A client that only sends messages,
  never keepalives, must keep its session.
- ST4: a new leader must start the silence clock of every session it inherits. A client that
  went silent under the old leader must still be timed out, on every member.
"""
from aeronpy import _codec
from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P
from aeronpy.service import CloseReason
from aeronpy.testing import SimCluster

from tests.sim.helpers import converge, wait_leader
from tests.sim.test_sessions_sim import CounterService
from .fakes import FakeWorld
from .test_module_timers import T0, TimerService, command, timer_events

C1 = "c1:7000"
MS = 1_000_000


# ---------------------------------------------------------------- T03: timer heap on re-election
def test_a_timer_fire_truncated_away_is_proposed_again_when_the_same_member_leads_again():
    """Member 0 proposes a timer's fire, loses the lead before the entry replicates, and the
    new leader's log overwrites it. When member 0 leads again, the timer is due and still
    live in the table: it must propose the fire again, and the timer fires once everywhere.
    Without the heap rebuild the fire had been popped for good and never came."""
    w = FakeWorld(members=3, services=lambda: [TimerService()])
    w.elect(0)
    w.settle()
    sid = w.connect()
    command(w, sid, 1, b"s 9 %d" % (T0 + 500))
    assert all(len(m.timers) == 1 for m in w.modules)
    assert w.tick(600) == 1                             # the fire is proposed by member 0 ...
    assert w.log_types(0)[-1] == E.TIMER_FIRE
    w.elect(1)                                          # ... but never replicates:
    w.settle()                                          # member 1's log overwrites it
    assert E.TIMER_FIRE not in w.log_types(0)
    assert timer_events(w, 0) == [] and len(w.modules[0].timers) == 1
    w.elect(0)                                          # member 0 leads again
    w.settle()
    assert w.modules[0].is_leader and w.modules[0]._leader_ready
    assert w.tick(1) == 1, "the timer's fire was not proposed again by the re-elected leader"
    assert w.log_types(0)[-1] == E.TIMER_FIRE
    w.settle()
    for m in range(3):
        assert [e[1] for e in timer_events(w, m)] == [9], m
        assert len(w.modules[m].timers) == 0
    w.tick(10_000)
    w.settle()
    assert [e[1] for e in timer_events(w, 0)] == [9]    # once


# ---------------------------------------------------------------- ST2: compiled path counts as heard
def _frame(sid, seq, payload=b"x"):
    return memoryview(_codec.encode(P.SessionMessage(sid, seq, 100 + seq, 0, payload)))


def test_messages_through_the_compiled_ingress_path_keep_a_session_open_without_keepalives():
    """A session timeout of 100 ms; the client sends a message every 30 ms through the
    node's compiled entry for 10 timeouts, and nothing else. Each message is heard: the
    session is never closed, and the module's last-heard time is the message's."""
    timeout_ns = 100 * MS
    w = FakeWorld(members=1, session_timeout_ns=timeout_ns)
    sid = w.connect(0, C1, 11)
    module = w.modules[0]
    for seq in range(1, 35):
        w.now_ns += 30 * MS
        assert module.ingress_path.on_frame(C1, _frame(sid, seq), lambda: w.now_ns)
        w.tick()
        w.settle()
        assert sid in module.sessions, f"timed out at message {seq}, {seq * 30} ms in"
    assert module._last_heard_ns[sid] == w.now_ns
    assert E.SESSION_CLOSE not in w.log_types(0)
    assert module.counters["session_timeouts_proposed"] == 0
    assert sid in module.sessions
    assert not [e for e in w.services(0)[0].events if e[0] == "close"]
    assert len(w.services(0)[0].messages) == 34
    # and silence still times it out (the check itself works here)
    w.tick(timeout_ns)
    w.settle()
    assert sid not in module.sessions
    assert [e for e in w.services(0)[0].events if e[0] == "close"] == \
        [("close", sid, CloseReason.TIMEOUT)]


def test_compiled_and_python_ingress_paths_leave_the_same_last_heard_times():
    """Differential: the same messages through ``on_frame`` and through ``on_ingress`` (the
    Python handler) leave the same leader-local state, last-heard times included."""
    def run(compiled: bool):
        w = FakeWorld(members=1)
        sid = w.connect(0, C1, 11)
        module = w.modules[0]
        for seq in range(1, 6):
            w.now_ns += 7 * MS
            if compiled:
                assert module.ingress_path.on_frame(C1, _frame(sid, seq), lambda: w.now_ns)
            else:
                w.ingress(0, C1, P.SessionMessage(sid, seq, 100 + seq, 0, b"x"))
        return (dict(module._last_heard_ns), dict(module._leader_seq), module._last_stamp_ns,
                list(w.cores[0].log.entries))
    assert run(True) == run(False)


# ---------------------------------------------------------------- ST4: new leader starts the clocks
def test_a_client_silent_since_the_old_leader_is_timed_out_by_the_new_one():
    """The client goes silent, then its leader crashes. The new leader has never heard from
    it, so the session's clock must start when it takes over: the session is closed with
    TIMEOUT on every member. Before, the new leader kept no clock for it and it leaked."""
    sim = SimCluster(3, seed=4242, service=CounterService, session_timeout_ms=500)
    client = sim.client()
    assert client.request(b"inc") == b"1"
    session_id = client.session_id
    sim.partition({client.client_id}, {0, 1, 2})       # the client goes silent
    sim.run_for(50)
    old = wait_leader(sim)
    sim.crash(old)                                       # well before the session timeout
    wait_leader(sim, within_ms=3000, among={m for m in range(3) if m != old})
    assert all(sim.service(m).closed == [] for m in range(3) if sim.alive(m))
    sim.run_for(2000)                                    # four session timeouts
    sim.restart(old)
    converge(sim)
    closed = [sim.service(m).closed for m in range(3)]
    assert closed == [[(session_id, CloseReason.TIMEOUT)]] * 3, closed
    sim.check()
