"""Review 4 of the egress ack hold: a new leader's NEW_LEADER event and the acks after it.

After a failover the client learns of the new leader from its NEW_LEADER event and re-sends
its window; the leader answers each re-sent message it already applied from the reply cache.
That is what gets the client the replies the old leader never sent, so an ack of the new
leader must not reach the client before that event: released by the ack, a message whose
reply it lacks is never re-sent. A NEW_LEADER event a full queue refused was dropped (the
client then re-sent nothing until its resend timeout), and an ack sent for a new message the
client wrote before it read the event released its whole window, including the messages the
not-yet-ready leader had dropped unread. Now the event is retried like a refused ack and a
session's acks wait behind it; an answer to a re-sent message that is dropped after an ack
already released it is queued again when the client's queue has room.

With the event always ahead of the acks, a reply dropped while the new leader catches up
needs no hold: a client still without it keeps the message in its window and re-sends it on
the event. So the catch-up drops hold nothing (the strict xfail of review 3 now passes).
"""
import random

from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientConfig, ClientCore

from .fakes import FakeWorld
from .test_egress_drop_holds_acks import C1, Mixed, acks, apply_committed, drain, msg

MS = 1_000_000


def apply_on(w, member, upto=None):
    """Commit ``upto`` (default: everything in its log) on ``member`` and apply, without
    taking its egress (FakeWorld.commit would drain every queue)."""
    core, module = w.cores[member], w.modules[member]
    core.commit_index = max(core.commit_index, core.log.last_index if upto is None else upto)
    for i in range(module.applied_index + 1, core.commit_index + 1):
        module.apply(i, *core.log.entries[i - 1])


class TwoMembers:
    """A real ClientCore and two FakeWorld members; a dead member hears and sends nothing."""

    def __init__(self, queue_max, service=Mixed):
        self.w = w = FakeWorld(members=2, services=lambda: [service()], egress_queue_max=queue_max)
        w.elect(0)
        self.dead = set()
        self.got = []
        self.client = ClientCore("m0:9000,m1:9000", C1,
                                 ClientConfig(window_messages=16, resend_timeout_ns=500 * MS),
                                 random.Random(1))
        self.client.connect(w.now_ns)
        self.send()
        w.replicate()
        apply_on(w, 0)
        apply_on(w, 1)
        self.read(0)
        assert self.client.is_connected

    def send(self):
        for endpoint, message in self.client.take_outgoing():
            member = int(endpoint[1])
            if member not in self.dead:
                self.w.modules[member].on_ingress(C1, message, self.w.now_ns)

    def read(self, member):
        for message in drain(self.w.modules[member]):
            self.client.on_egress(message, self.w.now_ns)
        self.client.poll(lambda cid, payload: self.got.append(bytes(payload)))

    def advance(self, ms, leader):
        self.w.now_ns += ms * MS
        self.client.tick(self.w.now_ns)
        self.w.modules[leader].tick(self.w.now_ns)
        self.send()
        self.w.replicate()
        apply_on(self.w, leader)
        self.read(leader)


def test_a_resent_window_a_not_ready_leader_dropped_is_answered_after_all():
    """Member 0 applies r1 and r2 (member 1 too) and dies before sending their replies; r3 and
    r4 reach member 1's log unapplied. The client's resend timeout sends its window to member
    1, elected but not ready: dropped unread. Member 1 applies r3 and r4 while catching up
    (their replies fill its queue of 2), turns ready, and its NEW_LEADER event finds the queue
    full. The client reads r3's and r4's replies and sends the unanswered s5: its ack
    released 1 and 2 too, whose replies the client never got and never asked for again."""
    p = TwoMembers(queue_max=2)
    w, client = p.w, p.client
    for payload in (b"r1", b"r2"):
        assert client.offer(payload) > 0
    p.send()
    w.replicate()
    apply_on(w, 0)
    apply_on(w, 1)                               # member 1 applies 1 and 2 as a follower
    drain(w.modules[0])                          # ... and member 0 dies before sending
    for payload in (b"r3", b"r4"):
        assert client.offer(payload) > 0
    p.send()
    w.replicate()                                # 3 and 4 in member 1's log, unapplied
    p.dead.add(0)
    w.elect(1, alive=[1])
    module = w.modules[1]
    w.now_ns += 600 * MS
    client.tick(w.now_ns)                        # stalled: the window goes to member 1
    p.send()
    assert module.counters["ingress_leader_not_ready"] == 4
    apply_on(w, 1)                               # catch-up: the replies to 3 and 4 queued
    assert module.leader_ready
    p.read(1)
    assert p.got == [b"re:r3", b"re:r4"]
    assert client.offer(b"s5") > 0
    for _ in range(6):                           # 3 s: reads promptly, resends when stalled
        p.advance(1, leader=1)
        p.advance(600, leader=1)
    assert sorted(p.got) == [b"re:r1", b"re:r2", b"re:r3", b"re:r4"]
    assert client.unacknowledged == 0


def test_a_reply_dropped_while_catching_up_reaches_the_client_that_lacked_it():
    """The catch-up drop holds nothing now; a client without that reply still gets it.
    Member 0 dies before replying to r1 .. r3, which member 1 has unapplied. The client's
    window goes to member 1 while it is not ready (dropped); catching up, it queues the replies
    to 1 and 2 and drops 3's (queue of 2), and its NEW_LEADER event is refused. The client
    reads, then sends the unanswered s4 before the event reaches it: the event goes first,
    so the client re-sends 3 before the ack for 4 releases it."""
    p = TwoMembers(queue_max=2)
    w, client = p.w, p.client
    for payload in (b"r1", b"r2", b"r3"):
        assert client.offer(payload) > 0
    p.send()
    w.replicate()
    drain(w.modules[0])
    p.dead.add(0)
    w.elect(1, alive=[1])
    module = w.modules[1]
    w.now_ns += 600 * MS
    client.tick(w.now_ns)
    p.send()
    assert module.counters["ingress_leader_not_ready"] == 3
    apply_on(w, 1)
    assert module.leader_ready and module.counters["new_leader_refused"] == 1
    assert not module._reply.dropped_replies              # the drop of 3's reply holds nothing
    p.read(1)
    assert p.got == [b"re:r1", b"re:r2"]
    assert client.offer(b"s4") > 0
    for _ in range(3):
        p.advance(1, leader=1)
    assert p.got == [b"re:r1", b"re:r2", b"re:r3"]
    assert client.unacknowledged == 0
    assert client.counters.get("window_resends", 0) == 2  # the stall's, then the event's


def answered_as_follower(queue_max: int):
    """Member 0 applies r1 and r2 (member 1 too, as a follower) and dies before sending their
    replies; member 1 takes over and is ready, its NEW_LEADER event queued."""
    w = FakeWorld(members=2, services=lambda: [Mixed()], egress_queue_max=queue_max)
    w.elect(0)
    sid = w.connect()
    for seq in (1, 2):
        w.ingress(0, C1, msg(sid, seq, b"r%d" % seq))
    w.replicate()
    w.commit()                                   # applied on both
    w.egress[0].clear()                          # member 0 died before sending the replies
    w.elect(1, alive=[1])
    module = w.modules[1]
    apply_on(w, 1)
    assert module.leader_ready
    return w, sid, module


def test_an_ack_past_the_base_waits_for_the_answers_to_the_resent_window():
    """Member 1 applied r1 and r2 as a follower (member 0 died before replying) and turns
    ready at once: its NEW_LEADER event is queued. The client, before reading it, sends s3
    and r4 .. r6. Its ack is held below 1 (answered before member 1 was ready, no re-send read
    yet; until review 6 an ack past the base held nothing, and released 1 and 2 unanswered).
    The client then reads the event and re-sends its window, but the replies to r4 .. r6 fill
    the queue again first: the answers to 1 and 2 are dropped and the acks stay below them
    until the client's stall re-sends them and their answers are queued."""
    w, sid, module = answered_as_follower(queue_max=2)
    module.on_ingress(C1, msg(sid, 3, b"s3"), w.now_ns)      # sent before reading the event
    apply_committed(w, member=1)
    out = drain(module)
    assert [type(m) for m in out] == [P.NewLeaderEvent, P.SessionAck]
    assert acks(out) == [0]
    for seq in (4, 5, 6):                        # r4, r5 queued; r6 dropped (held: ready)
        module.on_ingress(C1, msg(sid, seq, b"r%d" % seq), w.now_ns)
    apply_committed(w, member=1)
    for seq in (1, 2):                           # the re-sent window meets a full queue
        module.on_ingress(C1, msg(sid, seq, b"r%d" % seq), w.now_ns)
    answered, acked = set(), []
    for _ in range(4):                           # 4 stalls of 500 ms; the client reads every 10 ms
        for _ in range(50):
            for m in drain(module):
                if isinstance(m, P.EgressMessage):
                    answered.add(m.ack_seq)
                elif isinstance(m, P.SessionAck):
                    # never past a message whose reply was not queued before it
                    assert all(q in answered or q == 3 for q in range(1, m.ack_seq + 1)), (
                        m.ack_seq, answered)
                    acked.append(m.ack_seq)
            w.now_ns += 10 * MS
            module.tick(w.now_ns)
        for seq in (1, 2, 3, 4, 5, 6):           # the stall re-sends what is still held
            if seq > max(acked, default=0) and seq not in answered:
                module.on_ingress(C1, msg(sid, seq, b"r%d" % seq), w.now_ns)
    assert {1, 2, 4, 5, 6} <= answered
    assert max(acked) == 6


def test_a_refused_new_leader_event_is_sent_before_the_sessions_next_ack():
    """The event a full queue refused goes out once there is room, ahead of any ack."""
    w = FakeWorld(members=2, services=lambda: [Mixed()], egress_queue_max=2)
    w.elect(0)
    sid = w.connect()
    w.ingress(0, C1, msg(sid, 1, b"r1"))
    w.ingress(0, C1, msg(sid, 2, b"r2"))
    w.replicate()
    w.egress[0].clear()
    w.elect(1, alive=[1])
    module = w.modules[1]
    apply_on(w, 1)                               # catch-up: two replies fill the queue
    assert module.leader_ready
    assert [type(m) for m in drain(module)] == [P.EgressMessage, P.EgressMessage]
    module.on_ingress(C1, msg(sid, 3, b"s3"), w.now_ns)
    apply_committed(w, member=1)
    out = drain(module)
    assert [type(m) for m in out] == [P.NewLeaderEvent, P.SessionAck]


def test_a_new_leader_event_owed_to_clients_that_never_read_backs_off():
    """Sessions whose client is gone with a full queue: the owed event is looked at on the
    ack retry's backed-off passes (not every 1 ms), and goes once the queue has room."""
    w = FakeWorld(members=2, services=lambda: [Mixed()], egress_queue_max=1)
    w.elect(0)
    sids = [w.connect(endpoint=f"c{i}:7000", nonce=100 + i, correlation_id=10 + i)
            for i in range(20)]
    for i, sid in enumerate(sids):
        w.ingress(0, f"c{i}:7000", msg(sid, 1, b"r1"))
    w.replicate()
    w.egress[0].clear()
    w.elect(1, alive=[1])
    module = w.modules[1]
    apply_on(w, 1)                               # each queue: its catch-up reply (full)
    assert module.leader_ready
    assert len(module._ack_retry) == 20
    passes = []
    real = module._retry_acks
    module._retry_acks = lambda: passes.append(1) or real()
    for _ in range(1000):                        # 1 s, a flush every 1 ms
        module._now_ns += MS
        module._flush_acks()
    assert 5 <= len(passes) <= 30
    out = drain(module)                          # the replies; then room: the events go
    w.now_ns = module._now_ns + 70 * MS
    module.tick(w.now_ns)
    out += drain(module)
    events = [m for m in out if isinstance(m, P.NewLeaderEvent)]
    assert sorted(e.session_id for e in events) == sorted(sids)
    assert not module._ack_retry
