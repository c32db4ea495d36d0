"""Review 6 of the egress ack hold (bbee693, 86a62f0): an adversarial pass.

A client sends its window start (SessionWindow) only when it released messages above the
highest ack it ever got. That highest ack may be an older leader's: a new leader's hold below
a message the client released (by an old leader's late reply and ack, after it had re-sent
its window to the new leader) then never sends the window start, and every later unanswered
message is acked below the hold: the window never empties and, full, back-pressures every
offer for good (fixed: only acks of the newest leadership term count, client_core._release).

And an ack past a new leader's base (the client wrote a new message to it before it read the
NEW_LEADER event) releases the messages the client re-sends on that event unread: when that
re-send is lost on the way, their replies never come (fixed: a new leader's acks past its
base are held too, and a client sends its window start on every NEW_LEADER event).

And a message answered twice whose second reply died with the old leader: the client released
it on the first and never re-sends it (fixed: the window start on the NEW_LEADER event makes
the new leader queue again every reply it keeps for such messages, AckHold._resend_multi_replies).
The same for a second reply a full queue dropped after the first got through (fixed: the apply
path holds the acks below it too, so the client's next re-send round carries its window start).
"""
from aeronpy.cluster import protocol as P
from aeronpy.cluster.acks import AckHold
from aeronpy.service import ClusteredService

from .test_egress_drop_holds_acks import C1, acks, apply_committed, drain, msg
from .test_review4_egress_hold import MS, TwoMembers, answered_as_follower, apply_on


def test_an_old_leaders_late_ack_does_not_stop_the_window_start():
    """Member 0 applies r1 (answered) and s2 (not): its reply to 1 and ack of 2 are on their
    way to the client, late. Member 1 takes over and catches up (its reply to 1 and its
    NEW_LEADER event fill its queue of 2). The client's stall re-sends 1 and 2 to member 1:
    the answer to 1 finds the queue full (hold on 1). Then member 0's late reply and ack 2
    reach the client (1 and 2 released). Member 1 acks every later unanswered message at 0;
    the client, whose highest ack (2, member 0's) covers its released prefix, never told
    member 1 where its window starts."""
    p = TwoMembers(queue_max=2)
    w, client = p.w, p.client
    assert client.offer(b"r1") > 0 and client.offer(b"s2") > 0
    p.send()
    w.replicate()
    apply_on(w, 0)
    old_leader = w.modules[0]
    late = []                                    # member 0's egress, delayed in the network
    old_leader.drain_egress(lambda ref, m: late.append(m) or True)
    assert [type(m) for m in late] == [P.EgressMessage, P.SessionAck] and late[1].ack_seq == 2
    p.dead.add(0)
    w.elect(1, alive=[1])
    module = w.modules[1]
    apply_on(w, 1)                               # catch-up: r1's reply and the event: full
    assert module.leader_ready and module.egress.backlog(C1) == 2
    w.now_ns += 600 * MS
    client.tick(w.now_ns)                        # the stall: the window goes to member 1
    p.send()
    assert module._reply.dropped_replies         # the answer to the re-sent 1: dropped
    for m in late:                               # member 0's reply and ack, late
        client.on_egress(m, w.now_ns)
    assert client.unacknowledged == 0
    for _ in range(6):                           # 3.6 s: reads promptly, re-sends when stalled
        p.advance(1, leader=1)
        p.advance(600, leader=1)
    for i in range(40):                          # a window of 16: offers keep being accepted
        assert client.offer(b"s%d" % i, now_ns=w.now_ns) > 0, (i, client.unacknowledged)
        p.advance(1, leader=1)
        p.advance(600, leader=1)
    assert client.unacknowledged == 0


def _replies_after_a_resend_lost_on_the_way():
    """Member 0 applies r1 and dies before replying; member 1 applied it as a follower. The
    client's stall round reaches member 1 before it is ready (dropped unread), so the client
    writes s2 to member 1 before it reads the NEW_LEADER event. The event goes first, then
    the ack of 2, past the base. The client re-sent 1 on the event, but that datagram was lost
    (client links drop, as the simulator's do). Returns the replies the client got."""
    p = TwoMembers(queue_max=8)
    w, client = p.w, p.client
    assert client.offer(b"r1", now_ns=w.now_ns) > 0
    p.send()
    w.replicate()
    apply_on(w, 1)                               # member 1 applies 1 as a follower
    p.dead.add(0)                                # member 0 dies before replying
    w.elect(1, alive=[1])
    module = w.modules[1]
    w.now_ns += 600 * MS
    client.tick(w.now_ns)                        # stalled: the window goes to member 1
    p.send()
    assert module.counters["ingress_leader_not_ready"] == 1
    apply_on(w, 1)
    assert module.leader_ready
    assert client.offer(b"s2", now_ns=w.now_ns) > 0     # to member 1, before the event
    p.send()
    apply_on(w, 1)
    p.read(1)                                    # the event (re-send of 1, 2), the ack of 2
    client.take_outgoing()                       # ... and that re-send is lost
    for _ in range(6):                           # 3.6 s: reads promptly, re-sends when stalled
        p.advance(1, leader=1)
        p.advance(600, leader=1)
    return p.got


def test_an_ack_past_the_base_does_not_release_a_resend_lost_on_the_way():
    """The ack of 2 is held below 1 (answered before member 1 was ready, no re-send of it
    read yet): 1 stays in the client's window, its stall re-sends it, and the answer comes
    from the reply cache."""
    assert _replies_after_a_resend_lost_on_the_way() == [b"re:r1"]


def test_control_with_acks_past_the_base_unheld_the_reply_never_comes(monkeypatch):
    """Negative control: the rule before the fix (a new leader's acks past its base held
    nothing) loses the reply in the same run."""
    real = AckHold._ack_below_unread
    monkeypatch.setattr(AckHold, "_ack_below_unread",
                        lambda self, s, base, ack_seq: ack_seq if ack_seq > base
                        else real(self, s, base, ack_seq))
    assert _replies_after_a_resend_lost_on_the_way() == []


def _ack_after_a_later_resend_read(seq_lost: int):
    """Member 1 applied r1 and r2 as a follower (member 0 died before replying) and is ready.
    The client re-sends 1 and 2 on its NEW_LEADER event and the datagram with ``seq_lost``
    is lost on the way; it then sends s3. Returns (seqs answered, acks) of member 1's egress."""
    w, sid, module = answered_as_follower(queue_max=8)
    drain(module)                                # the event
    for seq in (1, 2):
        if seq != seq_lost:
            module.on_ingress(C1, msg(sid, seq, b"r%d" % seq), w.now_ns)
    module.on_ingress(C1, msg(sid, 3, b"s3"), w.now_ns)
    apply_committed(w, member=1)
    out = drain(module)
    return [m.ack_seq for m in out if isinstance(m, P.EgressMessage)], acks(out), (w, sid, module)


def test_a_later_resend_read_does_not_release_an_earlier_one_lost_on_the_way():
    """The re-send of 2 was read and answered, that of 1 lost: the ack stays below 1 (the
    hold once counted every seq below the highest re-send read as read) until the client's
    stall re-sends 1 and its answer is queued."""
    answered, sent_acks, (w, sid, module) = _ack_after_a_later_resend_read(1)
    assert answered == [2] and sent_acks == [0]
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)
    out = drain(module)
    assert [m.ack_seq for m in out if isinstance(m, P.EgressMessage)] == [1]
    assert acks(out) == [3]


def test_control_a_lost_later_resend_holds_nothing_below_it():
    """Negative control of the test above: with 2's re-send lost instead, 1's answer is
    queued and the ack stops below 2 only."""
    answered, sent_acks, _ = _ack_after_a_later_resend_read(2)
    assert answered == [1] and sent_acks == [1]


class _Twice(ClusteredService):
    """Answers every message twice (an acknowledgement, then a result)."""

    def on_session_message(self, session, timestamp_ns, message):
        if session is not None:
            session.offer(b"a:" + bytes(message))
            session.offer(b"b:" + bytes(message))


def _second_reply_after_a_failover():
    """Member 0 applies m1 (member 1 too, as a follower) and answers it twice; only the first
    answer reaches the client, which releases m1 on it, before member 0 dies. Member 1 takes
    over. Returns the replies the client's application got."""
    p = TwoMembers(queue_max=8, service=_Twice)
    w, client = p.w, p.client
    assert client.offer(b"m1", now_ns=w.now_ns) > 0
    p.send()
    w.replicate()
    apply_on(w, 0)
    apply_on(w, 1)
    first = [m for m in drain(w.modules[0]) if isinstance(m, P.EgressMessage)][0]
    client.on_egress(first, w.now_ns)            # the second answer dies with member 0
    client.poll(lambda cid, payload: p.got.append(bytes(payload)))
    assert p.got == [b"a:m1"] and client.unacknowledged == 0
    p.dead.add(0)
    w.elect(1, alive=[1])
    apply_on(w, 1)
    for _ in range(3):                           # the event, the window start, the answers
        p.read(1)
        p.send()
    return p.got


def test_a_second_reply_lost_with_the_old_leader_comes_from_the_new_one():
    """The client released m1 on its first reply, so it never re-sends it. The window start
    it sends on the NEW_LEADER event is where the new leader learns that: it sends again the
    replies it keeps for messages answered more than once below that start and at or below
    its base, and the client delivers the one it lacks (its duplicate filter drops the rest)."""
    assert _second_reply_after_a_failover() == [b"a:m1", b"b:m1"]


def test_control_without_the_resend_the_second_reply_is_lost(monkeypatch):
    monkeypatch.setattr(AckHold, "_resend_multi_replies", lambda self, s, seqs: None)
    assert _second_reply_after_a_failover() == [b"a:m1"]



class _OnceTwiceNone(ClusteredService):
    """Answers b"r..." once, b"m..." twice, anything else not at all (acked)."""

    def on_session_message(self, session, timestamp_ns, message):
        data = bytes(message)
        if session is not None and data[:1] in (b"r", b"m"):
            session.offer(b"a:" + data)
            if data[:1] == b"m":
                session.offer(b"b:" + data)


def _second_reply_after_a_full_queue(monkeypatch, resend: bool = True):
    """One leader, a queue of two messages per client: r1's reply and m2's first fill it, m2's
    second is dropped; the client releases both on their first replies, then sends s3 (no
    reply). Returns the replies."""
    if not resend:
        monkeypatch.setattr(AckHold, "_resend_multi_replies", lambda self, s, seqs: None)
    p = TwoMembers(queue_max=2, service=_OnceTwiceNone)
    w, client = p.w, p.client
    assert client.offer(b"r1", now_ns=w.now_ns) > 0 and client.offer(b"m2", now_ns=w.now_ns) > 0
    p.advance(1, leader=0)
    assert w.modules[0].counters["egress_dropped"] >= 1 and p.got == [b"a:r1", b"a:m2"]
    assert client.offer(b"s3", now_ns=w.now_ns) > 0
    for _ in range(6):                           # 3.6 s: reads promptly, re-sends when stalled
        p.advance(1, leader=0)
        p.advance(600, leader=0)
    assert client.unacknowledged == 0
    return p.got


def test_a_second_reply_a_full_queue_dropped_comes_with_the_window_start(monkeypatch):
    """The drop of m2's second reply holds the acks below 2 (it once held only for a first
    reply's drop, and the second was lost): s3's ack comes below what the client released, so
    its stall round carries its window start, which ends the hold, and the leader queues both
    kept replies of m2 again; the client hands over the one it lacks."""
    assert _second_reply_after_a_full_queue(monkeypatch) == [b"a:r1", b"a:m2", b"b:m2"]


def test_control_without_the_resend_the_dropped_second_reply_is_lost(monkeypatch):
    assert _second_reply_after_a_full_queue(monkeypatch, resend=False) == [b"a:r1", b"a:m2"]
