"""Review of the egress-drop ack hold (ReplyPath.dropped_replies, module._flush_acks).

A held ack is only right while the client may still lack the message's reply and still hold
the message in its window. A hold the client can never lift (it already has the reply and
released the message, so it never re-sends it) stalls its window for good: every later
message the service does not answer is acked below it, so it is never released, and once the
window is full offer() is back-pressured for ever. The leader noted every answer from the
cache that found the queue full, also when it had queued a reply to that message before.

And an ack must not release a message whose answer is still to come: a new leader acked a
re-sent duplicate with the session's last applied seq before it had read the rest of the
re-sent window, whose answers could then be dropped. The ack retry recomputed held acks of
clients whose queue was still full every 1 ms (a scan of their dropped replies each).
"""

from aeronpy.cluster import protocol as P

from .fakes import FakeWorld

from .test_egress_drop_holds_acks import C1, Mixed, acks, apply_committed, drain, msg


def test_a_resend_dropped_while_its_first_reply_is_still_queued_holds_nothing():
    """A client that reads slowly: its queue holds the replies to 1 and 2 (full), it re-sends
    its window on a stall, and the answers from the cache find the queue full. The client then
    reads the first replies and releases 1 and 2: it never re-sends them again, so the leader
    must not hold the acks below them. It did: the unanswered 3 was acked at 0 for good."""
    w = FakeWorld(services=lambda: [Mixed()], egress_queue_max=2)
    sid = w.connect()
    module = w.modules[0]
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)
    module.on_ingress(C1, msg(sid, 2, b"r2"), w.now_ns)
    apply_committed(w)
    assert module.counters["egress_dropped"] == 0                # both replies queued
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)          # the stall's re-send
    module.on_ingress(C1, msg(sid, 2, b"r2"), w.now_ns)
    assert module.counters["egress_dropped"] == 2                # cache answers: queue full
    out = drain(module)                                           # the client reads 1 and 2
    assert [(m.ack_seq, bytes(m.payload)) for m in out
            if isinstance(m, P.EgressMessage)] == [(1, b"re:r1"), (2, b"re:r2")]
    module.on_ingress(C1, msg(sid, 3, b"s3"), w.now_ns)          # unanswered: needs its ack
    apply_committed(w)
    assert acks(drain(module)) == [3]
    for _ in range(3):                                            # and its re-sends are acked
        module.on_ingress(C1, msg(sid, 3, b"s3"), w.now_ns)
        assert acks(drain(module)) == [3]


class Pipe:
    """A ClientCore wired to a FakeWorld (one member): what the client sends goes to the
    leader's ingress; the leader's egress reaches the client only when the client reads."""

    def __init__(self, w, window=8, resend_ms=500):
        import random
        from aeronpy.cluster.client_core import ClientConfig, ClientCore
        self.w, self.module = w, w.modules[0]
        self.client = ClientCore("m0:9000", C1, ClientConfig(window_messages=window,
                                                             resend_timeout_ns=resend_ms * 1_000_000),
                                 random.Random(1))
        self.client.connect(w.now_ns)
        self.pump(read=True)
        assert self.client.is_connected
        self.got = []

    def pump(self, read):
        w, module, client = self.w, self.module, self.client
        client.tick(w.now_ns)
        for _, message in client.take_outgoing():
            module.on_ingress(C1, message, w.now_ns)
        apply_committed(w)
        if read:
            for message in drain(module):
                client.on_egress(message, w.now_ns)
            client.poll(lambda cid, payload: self.got.append(payload))

    def advance(self, ms, read):
        self.w.now_ns += ms * 1_000_000
        self.module.tick(self.w.now_ns)
        self.pump(read)


def test_a_client_that_read_slowly_is_not_stalled_for_good():
    """End to end with the real client state machine: the client sends two requests while it
    reads nothing (the queue of 2 fills with their replies), its resend timeout passes (it
    re-sends both; the cache answers are dropped), then it reads again and sends messages the
    service does not answer. Its window must empty and its offers keep being accepted."""
    w = FakeWorld(services=lambda: [Mixed()], egress_queue_max=2)
    p = Pipe(w)
    client = p.client
    assert client.offer(b"r1") > 0 and client.offer(b"r2") > 0
    p.pump(read=False)
    p.advance(600, read=False)                  # stalled: the window is re-sent, answers dropped
    assert client.counters.get("window_resends", 0) >= 1
    p.advance(1, read=True)                     # reads the replies to 1 and 2
    assert p.got == [b"re:r1", b"re:r2"]
    for i in range(20):                         # unanswered messages, read promptly
        client.offer(b"s%d" % i)
        p.advance(1, read=True)
    for _ in range(5):
        p.advance(600, read=True)
    assert client.unacknowledged == 0


def new_leader_world():
    """Two members; 0 leads, a session sends r1 and r2 (applied on both, answered by 0),
    then 1 takes over and is ready."""
    w = FakeWorld(members=2, services=lambda: [Mixed()], egress_queue_max=2)
    w.elect(0)
    sid = w.connect()
    for seq in (1, 2):
        w.ingress(0, C1, msg(sid, seq, b"r%d" % seq))
    w.settle()
    w.elect(1)
    w.settle()
    module = w.modules[1]
    assert module.leader_ready
    drain(module)                                                 # NEW_LEADER event
    return w, sid, module


def test_a_new_leaders_second_dropped_answer_to_a_resend_holds_nothing():
    """After a failover the client re-sends its window (1, 2) to the new leader, which answers
    both from the cache (queued). The client reads slowly, stalls and re-sends them again: the
    answers find the queue full. The client then reads the first answers and releases 1 and 2;
    the leader must not hold its acks below them (it queued a reply to each already)."""
    w, sid, module = new_leader_world()
    for _ in range(2):                                            # re-sent twice
        module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)
        module.on_ingress(C1, msg(sid, 2, b"r2"), w.now_ns)
    assert module.counters["egress_dropped"] == 2                 # the second answers
    assert [m.ack_seq for m in drain(module) if isinstance(m, P.EgressMessage)] == [1, 2]
    module.on_ingress(C1, msg(sid, 3, b"s3"), w.now_ns)
    apply_committed(w, member=1)
    assert acks(drain(module)) == [3]


def test_a_new_leaders_first_dropped_answer_to_a_resend_still_holds():
    """The negative control: the new leader never queued a reply to 1 (its first answer from
    the cache is dropped), so it must hold its acks below 1 until 1 is answered."""
    w, sid, module = new_leader_world()
    for seq in (3, 4):                                            # fill the queue
        module.on_ingress(C1, msg(sid, seq, b"r%d" % seq), w.now_ns)
    apply_committed(w, member=1)
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)           # dropped: never answered here
    drain(module)
    module.on_ingress(C1, msg(sid, 5, b"s5"), w.now_ns)
    apply_committed(w, member=1)
    assert acks(drain(module)) == [0]
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)           # answered at last
    out = drain(module)
    assert [m.ack_seq for m in out if isinstance(m, P.EgressMessage)] == [1]
    assert acks(out) == [1]        # 2, answered before this leader, not re-sent here yet
    module.on_ingress(C1, msg(sid, 2, b"r2"), w.now_ns)           # the window, in order
    out = drain(module)
    assert [m.ack_seq for m in out if isinstance(m, P.EgressMessage)] == [2]
    assert acks(out) == [5]


def test_a_retried_ack_to_a_client_whose_queue_stays_full_costs_no_scan_of_its_drops():
    """A client gone for good with its queue full, an ack owed and the replies to a window of
    messages dropped: every 1 ms the retry computed its held ack again, a scan of every dropped
    seq (up to the reply cache, 256) per such session, to find the queue still full. 100 such
    sessions cost about 1 ms of every 1 ms, so the leader did little else until they timed out.
    While the client's queue is full there is nothing to compute."""
    w = FakeWorld(services=lambda: [Mixed()], egress_queue_max=1)
    sid = w.connect()
    module = w.modules[0]
    for seq in range(1, 201):                                     # 2 .. 200: replies dropped
        module.on_ingress(C1, msg(sid, seq, b"r"), w.now_ns)
    module.on_ingress(C1, msg(sid, 201, b"s"), w.now_ns)          # unanswered: an ack owed
    apply_committed(w)
    module._flush_acks()
    assert module._ack_retry == {sid}
    assert len(module._reply.dropped_replies[sid]) == 199
    computed = []
    real = module._ack_below_dropped
    module._ack_below_dropped = lambda *a: computed.append(1) or real(*a)
    for _ in range(50):                                           # 50 ms, the queue still full
        module._now_ns += 1_000_000
        module._flush_acks()
    assert computed == []
    assert module._ack_retry == {sid}
    out = drain(module)                                           # room again: the ack goes
    w.now_ns = module._now_ns + 70_000_000                        # the retry's longest gap: 64 ms
    module.tick(w.now_ns)
    out += drain(module)
    assert acks(out) == [1]


def test_a_reply_a_new_leader_queued_while_catching_up_still_holds_when_its_answer_is_dropped():
    """The negative control for catch-up entries: a new leader queues its replies to what it
    applies before it is ready to whatever stream it has to the client (none, if the client
    never sent to it: the node then drops them unsent), and the old leader may have died
    before sending its own. So a re-send of such a message whose answer from the cache is
    dropped still holds the acks below it."""
    w = FakeWorld(members=2, services=lambda: [Mixed()], egress_queue_max=2)
    w.elect(0)
    sid = w.connect()
    for seq in (1, 2):
        w.ingress(0, C1, msg(sid, seq, b"r%d" % seq))
    w.replicate()                                 # member 0 dies before 1 and 2 are answered
    w.egress[0].clear()
    w.elect(1)
    module, core = w.modules[1], w.cores[1]
    core.commit_index = core.log.last_index
    for i in range(module.applied_index + 1, core.commit_index + 1):
        module.apply(i, *core.log.entries[i - 1])   # caught up: the replies to 1, 2 queued
    assert module.leader_ready and not module._reply.dropped_replies
    module.egress.clear()                         # ... and lost (no stream to the client)
    for seq in (3, 4):                            # fill the queue
        module.on_ingress(C1, msg(sid, seq, b"r%d" % seq), w.now_ns)
    apply_committed(w, member=1)
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)   # the re-send: answer dropped
    module.on_ingress(C1, msg(sid, 2, b"r2"), w.now_ns)
    drain(module)
    module.on_ingress(C1, msg(sid, 5, b"s5"), w.now_ns)
    apply_committed(w, member=1)
    assert acks(drain(module)) == [0]


def test_a_new_leader_does_not_ack_a_resent_window_past_what_it_has_read_of_it():
    """After a failover the client re-sends its window: 1 (unanswered), 2 and 3 (answered;
    the old leader died before sending those replies and before acking 1). The node reads
    ingress in batches and drains egress between them, so the ack for the duplicate 1 went
    out before the re-sent 2 and 3 were read, with the session's last applied seq (3): it
    released 2 and 3 on the client, and when their answers from the cache then found the
    queue full they were lost for good (and, noted as dropped, held every later ack below 2:
    the client's unanswered 4 was acked at 1 for ever). Until the client sends something new,
    a new leader's acks stop at what it has read of the re-sent window."""
    w = FakeWorld(members=2, services=lambda: [Mixed()], egress_queue_max=2)
    w.elect(0)
    sid = w.connect()
    for seq, payload in ((1, b"s1"), (2, b"r2"), (3, b"r3")):
        w.ingress(0, C1, msg(sid, seq, payload))
    w.replicate()
    w.commit()
    w.egress[0].clear()                           # member 0 died before sending anything
    w.elect(1)
    module, core = w.modules[1], w.cores[1]
    core.commit_index = core.log.last_index
    for i in range(module.applied_index + 1, core.commit_index + 1):
        module.apply(i, *core.log.entries[i - 1])
    assert module.leader_ready
    module.on_ingress(C1, msg(sid, 1, b"s1"), w.now_ns)
    module._flush_acks()                          # drained between two ingress batches
    module.on_ingress(C1, msg(sid, 2, b"r2"), w.now_ns)   # answers dropped: the queue is full
    module.on_ingress(C1, msg(sid, 3, b"r3"), w.now_ns)
    assert module.counters["egress_dropped"] == 2
    assert acks(drain(module)) == [1]             # releases 1 only: 2 and 3 stay in the window
    module.on_ingress(C1, msg(sid, 2, b"r2"), w.now_ns)   # re-sent again: answered now
    module.on_ingress(C1, msg(sid, 3, b"r3"), w.now_ns)
    out = drain(module)
    assert [(m.ack_seq, bytes(m.payload)) for m in out if isinstance(m, P.EgressMessage)] == \
        [(2, b"re:r2"), (3, b"re:r3")]
    module.on_ingress(C1, msg(sid, 4, b"s4"), w.now_ns)
    apply_committed(w, member=1)
    assert acks(drain(module)) == [4]


def test_a_new_leader_that_drops_catch_up_replies_the_old_leader_delivered_holds_nothing():
    """Member 0 answers 1..3 and the client reads and releases them; member 1 had them in its
    log unapplied, wins, and applies them while catching up (its queue of 2 drops the reply to
    3). The client never re-sends 3, so a hold below it lasted until 3 left the reply cache
    (for good, if the client's later messages get no reply): its unanswered messages were
    acked at 2 meanwhile. Catch-up drops now hold nothing: a client without the reply keeps
    the message and re-sends it on the NEW_LEADER event, which goes before any ack (review 4,
    test_review4_egress_hold.py), and the window start it sends on that event lifts the new
    leader's hold below the answers it gave before it was ready (review 6)."""
    w = FakeWorld(members=2, services=lambda: [Mixed()], egress_queue_max=2)
    w.elect(0)
    sid = w.connect()
    for seq in (1, 2, 3):
        w.ingress(0, C1, msg(sid, seq, b"r%d" % seq))
        w.replicate()
        w.commit(members=[0])
    assert [m.ack_seq for m in w.take(0, P.EgressMessage)] == [1, 2, 3]
    w.elect(1)
    module, core = w.modules[1], w.cores[1]
    core.commit_index = core.log.last_index
    for i in range(module.applied_index + 1, core.commit_index + 1):
        module.apply(i, *core.log.entries[i - 1])
    assert module.leader_ready and module.counters["egress_dropped"] >= 1
    drain(module)
    # the client read the event: it sends where its window starts (4: it released 1 .. 3),
    # then its window (empty) and s4
    module.on_ingress(C1, P.SessionWindow(sid, module._leadership_term, 4), w.now_ns)
    drain(module)
    module.on_ingress(C1, msg(sid, 4, b"s4"), w.now_ns)
    apply_committed(w, member=1)
    assert acks(drain(module)) == [4]


def test_the_retry_backs_off_while_every_queue_stays_full():
    """About 120 ns per stuck session every 1 ms was still 12 % of a core at 1000 sessions
    (clients gone with their queues full, until their sessions time out): while a whole pass
    finds every queue full, the next comes twice as late, up to 64 ms."""
    w = FakeWorld(services=lambda: [Mixed()], egress_queue_max=1)
    sid = w.connect()
    module = w.modules[0]
    module.on_ingress(C1, msg(sid, 1, b"r"), w.now_ns)            # fills the queue
    module.on_ingress(C1, msg(sid, 2, b"s"), w.now_ns)            # its ack is refused
    apply_committed(w)
    module._flush_acks()
    assert module._ack_retry == {sid}
    passes = []
    real = module._retry_acks
    module._retry_acks = lambda: passes.append(1) or real()
    for _ in range(1000):                                         # 1 s, a flush every 1 ms
        module._now_ns += 1_000_000
        module._flush_acks()
    assert 5 <= len(passes) <= 30                                 # not 1000
    drain(module)                                                 # room: the ack still goes
    w.now_ns = module._now_ns + 70_000_000
    module.tick(w.now_ns)
    assert acks(drain(module)) == [2]
