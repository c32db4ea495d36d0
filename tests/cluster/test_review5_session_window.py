"""Review 5 of the egress ack hold: the client tells the leader where its window starts.

The leader holds a session's acks below the oldest message whose answer it dropped for a full
egress queue, so that the client keeps that message and re-sends it. A hold on a message the
client released already (it read a reply to it that was queued before) can never be lifted by
a re-send: a new leader's catch-up reply to 1 is queued, the client re-sends 1 on a stall
before reading it, the answer to the re-send finds the queue full (hold on 1), then the client
reads the catch-up reply and releases 1. Its unanswered 2 was then acked at 0 for good: the
window never emptied and, full, back-pressured every offer.

Now a client that released messages above the highest ack it got sends a SessionWindow (the
lowest seq it still holds) ahead of its re-sent window, and the leader drops every hold below
it. A hold below the window saves nothing: the client never re-sends those messages again.
"""
import random

from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientConfig, ClientCore

from .fakes import FakeWorld
from .test_egress_drop_holds_acks import C1, Mixed, acks, apply_committed, drain, msg
from .test_review4_egress_hold import MS, TwoMembers, apply_on


def caught_up_leader(queue_max=2):
    """Member 0 sequenced r1 (answered) and s2 (not) and died before applying them; member 1
    applies both while catching up: r1's reply and its NEW_LEADER event fill the queue."""
    w = FakeWorld(members=2, services=lambda: [Mixed()], egress_queue_max=queue_max)
    w.elect(0)
    sid = w.connect()
    w.modules[0].on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)
    w.modules[0].on_ingress(C1, msg(sid, 2, b"s2"), w.now_ns)
    w.replicate()
    w.elect(1, alive=[1])
    module = w.modules[1]
    apply_on(w, 1)
    assert module.leader_ready and module.egress.backlog(C1) == 2
    return w, sid, module


def test_a_hold_on_a_released_message_is_lifted_by_the_session_window():
    """The race itself, message by message: the stall's re-send of 1 is answered into a full
    queue (hold on 1), the client then reads the catch-up reply and releases 1. Re-sends of
    the unanswered 2 are acked at 0 (held); the SessionWindow naming 2 lifts the hold."""
    w, sid, module = caught_up_leader()
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)       # the stall's re-send, unread
    module.on_ingress(C1, msg(sid, 2, b"s2"), w.now_ns)
    assert module._reply.dropped_replies == {sid: {1}}
    out = drain(module)                                         # the client reads: releases 1
    assert [(m.ack_seq, bytes(m.payload)) for m in out
            if isinstance(m, P.EgressMessage)] == [(1, b"re:r1")]
    for _ in range(3):                                          # re-sends of 2: held at 0
        w.now_ns += 600 * MS
        module.tick(w.now_ns)
        module.on_ingress(C1, msg(sid, 2, b"s2"), w.now_ns)
        assert max(acks(drain(module)) or [0]) == 0
    module.on_ingress(C1, P.SessionWindow(sid, w.term, 2), w.now_ns)
    module.on_ingress(C1, msg(sid, 2, b"s2"), w.now_ns)
    assert acks(drain(module)) == [2]
    assert not module._reply.dropped_replies


def test_a_window_base_at_the_held_seq_lifts_nothing():
    """The negative control: a client still holding 1 (base 1) keeps the hold, which ends
    only when its re-send of 1 is answered and queued."""
    w, sid, module = caught_up_leader()
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)
    module.on_ingress(C1, msg(sid, 2, b"s2"), w.now_ns)
    module.egress.clear()                                       # the replies were lost
    module.on_ingress(C1, P.SessionWindow(sid, w.term, 1), w.now_ns)
    module.on_ingress(C1, msg(sid, 2, b"s2"), w.now_ns)
    assert max(acks(drain(module)) or [0]) == 0
    assert module._reply.dropped_replies == {sid: {1}}
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)
    module.on_ingress(C1, msg(sid, 2, b"s2"), w.now_ns)
    out = drain(module)
    assert (1, b"re:r1") in [(m.ack_seq, bytes(m.payload)) for m in out
                             if isinstance(m, P.EgressMessage)]
    assert max(acks(out)) == 2


def test_a_window_base_below_the_hold_of_a_ready_leader_keeps_it():
    """A hold noted by a ready leader (the first reply to 3 dropped) is kept by a stale
    SessionWindow naming a lower base (sent before, arriving late)."""
    w = FakeWorld(services=lambda: [Mixed()], egress_queue_max=2)
    sid = w.connect()
    module = w.modules[0]
    for seq, payload in ((1, b"r1"), (2, b"r2"), (3, b"r3")):
        module.on_ingress(C1, msg(sid, seq, payload), w.now_ns)
    apply_committed(w)
    assert module._reply.dropped_replies == {sid: {3}}
    drain(module)
    module.on_ingress(C1, msg(sid, 4, b"s4"), w.now_ns)
    module.on_ingress(C1, P.SessionWindow(sid, w.term, 3), w.now_ns)
    apply_committed(w)
    assert acks(drain(module)) == [2]
    assert module._reply.dropped_replies == {sid: {3}}
    assert module.counters["session_window_refused"] == 0


def test_a_session_window_past_the_applied_seqs_or_not_positive_is_refused():
    w, sid, module = caught_up_leader()
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)
    module.on_ingress(C1, msg(sid, 2, b"s2"), w.now_ns)
    drain(module)
    for base in (4, 0, -5, 1 << 62):                            # applied: 2, so 3 at most
        module.on_ingress(C1, P.SessionWindow(sid, w.term, base), w.now_ns)
    assert module.counters["session_window_refused"] == 4
    assert module._reply.dropped_replies == {sid: {1}}
    module.on_ingress(C1, P.SessionWindow(sid, w.term, 3), w.now_ns)   # the highest allowed
    assert not module._reply.dropped_replies
    assert acks(drain(module)) == [2]
    assert module.counters["session_window_refused"] == 4


def test_a_forged_or_unknown_session_window_is_refused_and_lifts_nothing():
    w, sid, module = caught_up_leader()
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)
    module.on_ingress(C1, msg(sid, 2, b"s2"), w.now_ns)
    drain(module)
    module.on_ingress("evil:1", P.SessionWindow(sid, w.term, 2), w.now_ns)
    module.on_ingress(C1, P.SessionWindow(sid + 99, w.term, 2), w.now_ns)
    assert module.counters["ingress_session_client_mismatch"] == 1
    assert module.counters["ingress_unknown_session"] == 1
    assert module._reply.dropped_replies == {sid: {1}}
    assert not acks(drain(module))


def test_a_follower_ignores_a_session_window():
    """No redirect for it (the re-sent messages behind it get theirs), nothing changes."""
    w, sid, module = caught_up_leader()
    follower = w.modules[0]
    follower.on_ingress(C1, P.SessionWindow(sid, w.term, 2), w.now_ns)
    assert drain(follower) == [] and follower.counters["redirects"] == 0
    assert follower.counters["session_window_not_leader"] == 1


def test_the_client_sends_its_window_base_only_when_an_ack_stops_below_it():
    """A re-send round carries a SessionWindow only when the client released messages above
    the highest ack it got (by their replies) and the last ack came below what it released
    (held, or a late duplicate); the leader's ack of it ends that."""
    w = FakeWorld(services=lambda: [Mixed()])
    module = w.modules[0]
    client = ClientCore("m0:9000", C1, ClientConfig(resend_timeout_ns=500 * MS), random.Random(1))
    client.connect(w.now_ns)

    def exchange(read=True):
        for _, m in client.take_outgoing():
            module.on_ingress(C1, m, w.now_ns)
        apply_committed(w)
        if read:
            for m in drain(module):
                client.on_egress(m, w.now_ns)

    def stall_round():
        w.now_ns += 600 * MS
        client.tick(w.now_ns)
        return [type(m) for _, m in client.outgoing]

    exchange()
    assert client.is_connected
    client.offer(b"s1")
    exchange(read=False)                                    # not acked yet (unread)
    assert stall_round() == [P.SessionMessage]              # base 1, nothing released
    exchange()
    assert client.unacknowledged == 0
    client.offer(b"s2")
    exchange(read=False)
    assert stall_round() == [P.SessionMessage]              # base 2, acked 1
    exchange()
    client.offer(b"r3")                                     # answered: base 4, acked 2
    exchange()
    client.offer(b"s4")
    exchange(read=False)
    assert stall_round() == [P.SessionMessage]              # released past the ack: no ack below
    client.take_outgoing()                                  # that round is lost
    client.on_egress(P.SessionAck(client.session_id, client.leadership_term, 2), w.now_ns)
    assert stall_round() == [P.SessionWindow, P.SessionMessage]     # a late ack below it
    [window] = [m for _, m in client.outgoing if isinstance(m, P.SessionWindow)]
    assert (window.session_id, window.window_base) == (client.session_id, 4)
    exchange()
    assert client.unacknowledged == 0
    client.offer(b"s5")
    exchange(read=False)
    assert stall_round() == [P.SessionMessage]              # the leader's ack ended it
    assert client.counters["window_bases_sent"] == 1


def test_a_client_whose_released_message_is_held_is_not_back_pressured_for_good():
    """End to end with the real ClientCore: the race above after a failover. The client's
    window must empty and its offers keep being accepted."""
    p = TwoMembers(queue_max=2)
    w, client = p.w, p.client
    assert client.offer(b"r1") > 0 and client.offer(b"s2") > 0
    p.send()
    w.replicate()                                # 1 and 2 in member 1's log, unapplied
    p.dead.add(0)
    w.elect(1, alive=[1])
    module = w.modules[1]
    apply_on(w, 1)                               # catch-up: r1's reply and the event: full
    assert module.leader_ready and module.egress.backlog(C1) == 2
    w.now_ns += 600 * MS
    client.tick(w.now_ns)                        # the stall: the window goes to member 1
    p.send()
    assert module._reply.dropped_replies         # the re-send of 1 was answered into a full queue
    p.read(1)                                    # the catch-up reply: 1 released
    assert p.got == [b"re:r1"]
    for _ in range(6):                           # 3.6 s: reads promptly, re-sends when stalled
        p.advance(1, leader=1)
        p.advance(600, leader=1)
    assert client.unacknowledged == 0
    for i in range(40):                          # a window of 16: offers keep being accepted
        assert client.offer(b"s%d" % i) > 0
        p.advance(1, leader=1)
    assert client.unacknowledged == 0
    assert module.counters["session_window_refused"] == 0


def test_the_window_start_reaches_the_leader_after_a_follower_redirects_the_round():
    """With more members a stall round goes to the next member first: a follower ignores the
    SessionWindow and redirects the re-sent messages, and the round the redirect starts
    carries the SessionWindow again, to the leader (the client keeps sending it until an
    ack at or past its released prefix comes)."""
    p = TwoMembers(queue_max=2)
    w, client = p.w, p.client
    assert client.offer(b"r1") > 0 and client.offer(b"s2") > 0
    p.send()
    w.replicate()
    p.dead.add(0)
    w.elect(1, alive=[1])
    module, follower = w.modules[1], w.modules[0]
    apply_on(w, 1)
    w.now_ns += 600 * MS
    client.tick(w.now_ns)
    p.send()
    p.read(1)                                    # the catch-up reply: 1 released, 1 held
    assert p.got == [b"re:r1"] and module._reply.dropped_replies
    # the round the NEW_LEADER event started (the window start, then the window) is lost: a
    # stall round has to carry the window start instead
    assert any(type(m) is P.SessionWindow for _, m in client.take_outgoing())
    p.dead.discard(0)                            # member 0 is back, a follower of member 1
    w.cores[0].leader_id = 1
    for _ in range(6):
        p.advance(1, leader=1)
        p.advance(600, leader=1)
        p.read(0)                                # the follower's redirects
        p.send()
        p.read(1)
    assert follower.counters["session_window_not_leader"] >= 1
    assert follower.counters["redirects"] >= 1
    assert client.unacknowledged == 0
