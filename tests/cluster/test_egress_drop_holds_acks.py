"""A reply the leader drops for a full egress queue must not be released by a later ack.

The client keeps each message in its window until it is answered or a SessionAck covers it.
A SessionAck is cumulative, so before this fix a reply dropped for a full queue (a client
that fell behind reading) was lost for good as soon as a later unanswered message was acked:
the client released the message, never re-sent it, and never got its reply. Now the leader
holds its acks below the lowest such message until the client re-sends it and the reply
from the cache is queued.
"""
from aeronpy.cluster import protocol as P
from aeronpy.service import ClusteredService

from .fakes import FakeWorld

C1 = "c1:7000"


class Mixed(ClusteredService):
    """Answers messages that start with b"r"; others get no reply (they are acked)."""

    def on_session_message(self, session, timestamp_ns, message):
        data = bytes(message)
        if session is not None and data[:1] == b"r":
            session.offer(b"re:" + data)


def msg(session_id, seq, payload):
    return P.SessionMessage(session_id, seq, 100 + seq, 0, payload)


def apply_committed(w, member=0):
    """Commit and apply on the leader without draining its egress queue (FakeWorld.settle
    would take everything queued)."""
    w.replicate()
    core, module = w.cores[member], w.modules[member]
    core.commit_index = core.log.last_index
    for i in range(module.applied_index + 1, core.commit_index + 1):
        module.apply(i, *core.log.entries[i - 1])


def drain(module):
    sent = []
    module.drain_egress(lambda ref, m: sent.append(m) or True)
    return sent


def acks(out):
    return [m.ack_seq for m in out if isinstance(m, P.SessionAck)]


def world():
    w = FakeWorld(services=lambda: [Mixed()], egress_queue_max=2)
    return w, w.connect(), w.modules[0]


def test_ack_after_a_dropped_reply_stops_below_it():
    w, sid, module = world()
    for seq, payload in ((1, b"r1"), (2, b"r2"), (3, b"r3")):
        module.on_ingress(C1, msg(sid, seq, payload), w.now_ns)
    apply_committed(w)
    assert module.counters["egress_dropped"] == 1             # the reply to 3: queue full
    assert [m.ack_seq for m in drain(module)] == [1, 2]
    module.on_ingress(C1, msg(sid, 4, b"s4"), w.now_ns)         # unanswered: acked
    apply_committed(w)
    [ack] = [m for m in drain(module) if isinstance(m, P.SessionAck)]
    assert ack.ack_seq == 2                                     # not 4: 3 is still owed

    # the client re-sends its window (3 and 4): 3 is answered from the cache, then acks move on
    module.on_ingress(C1, msg(sid, 3, b"r3"), w.now_ns)
    module.on_ingress(C1, msg(sid, 4, b"s4"), w.now_ns)
    out = drain(module)
    replies = [m for m in out if isinstance(m, P.EgressMessage)]
    acks = [m.ack_seq for m in out if isinstance(m, P.SessionAck)]
    assert [(r.ack_seq, bytes(r.payload)) for r in replies] == [(3, b"re:r3")]
    assert acks and max(acks) == 4
    assert module.counters["replies_from_cache"] == 1


def test_a_reply_dropped_again_on_resend_keeps_holding_the_acks():
    w, sid, module = world()
    for seq, payload in ((1, b"r1"), (2, b"r2"), (3, b"r3")):
        module.on_ingress(C1, msg(sid, seq, payload), w.now_ns)
    apply_committed(w)
    drain(module)
    module.on_ingress(C1, msg(sid, 4, b"s4"), w.now_ns)
    apply_committed(w)
    drain(module)
    # fill the queue with two replies, then the re-sent 3 finds it full
    for seq, payload in ((5, b"r5"), (6, b"r6")):
        module.on_ingress(C1, msg(sid, seq, payload), w.now_ns)
    apply_committed(w)
    module.on_ingress(C1, msg(sid, 3, b"r3"), w.now_ns)         # cached reply: dropped again
    assert module.counters["egress_dropped"] == 2
    drain(module)
    module.on_ingress(C1, msg(sid, 7, b"s7"), w.now_ns)
    apply_committed(w)
    acks = [m.ack_seq for m in drain(module) if isinstance(m, P.SessionAck)]
    assert acks == [2]


def test_no_hold_when_nothing_was_dropped():
    """The negative control: without a drop, an unanswered message is acked in full."""
    w, sid, module = world()
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)
    module.on_ingress(C1, msg(sid, 2, b"s2"), w.now_ns)
    apply_committed(w)
    out = drain(module)
    assert module.counters["egress_dropped"] == 0
    assert [m.ack_seq for m in out if isinstance(m, P.SessionAck)] == [2]


def test_a_dropped_seq_that_left_the_reply_cache_stops_holding():
    """A reply that can no longer be answered from the cache must not stall the client's
    window for ever: once its seq left the cache, acks move on."""
    w = FakeWorld(services=lambda: [Mixed()], egress_queue_max=1, reply_cache_messages=2)
    sid = w.connect()
    module = w.modules[0]
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)
    module.on_ingress(C1, msg(sid, 2, b"r2"), w.now_ns)        # dropped
    apply_committed(w)
    drain(module)
    for seq in (3, 4):                                          # push 2 out of the cache
        module.on_ingress(C1, msg(sid, seq, b"r%d" % seq), w.now_ns)
        apply_committed(w)
        drain(module)
    module.on_ingress(C1, msg(sid, 5, b"s5"), w.now_ns)
    apply_committed(w)
    acks = [m.ack_seq for m in drain(module) if isinstance(m, P.SessionAck)]
    assert acks == [5]


def test_a_leader_change_forgets_what_the_old_leader_dropped():
    w = FakeWorld(members=2, services=lambda: [Mixed()], egress_queue_max=2)
    w.elect(0)
    sid = w.connect()
    module = w.modules[0]
    for seq, payload in ((1, b"r1"), (2, b"r2"), (3, b"r3")):
        module.on_ingress(C1, msg(sid, seq, payload), w.now_ns)
    w.replicate()
    w.commit()
    assert module._reply.dropped_replies                        # 3 was dropped
    w.step_down(0)
    assert not module._reply.dropped_replies


def test_a_dropped_reply_the_cache_does_not_keep_holds_nothing():
    """With no replies kept (reply_cache_replies_per_message=0) a re-send could only be
    acked, never answered: holding the acks for it would stall the client for good."""
    w = FakeWorld(services=lambda: [Mixed()], egress_queue_max=1, reply_cache_replies_per_message=0)
    sid = w.connect()
    module = w.modules[0]
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)
    module.on_ingress(C1, msg(sid, 2, b"r2"), w.now_ns)        # dropped, and not cached
    apply_committed(w)
    assert module.counters["egress_dropped"] == 1
    drain(module)
    module.on_ingress(C1, msg(sid, 3, b"s3"), w.now_ns)
    apply_committed(w)
    assert [m.ack_seq for m in drain(module) if isinstance(m, P.SessionAck)] == [3]
    assert not module._reply.dropped_replies


class BigReplies(ClusteredService):
    """16 KiB replies to messages that start with b"r" (eight fill a client's 128 KiB
    stream window); no reply to others."""

    def on_session_message(self, session, timestamp_ns, message):
        data = bytes(message)
        if session is not None and data[:1] == b"r":
            session.offer(data.ljust(16 * 1024, b"."))


def test_a_client_that_stopped_reading_gets_every_reply_on_a_real_cluster():
    """End to end (3 real nodes, loopback, one thread): the client sends while it reads
    nothing, so the leader's stream to it and then its egress queue (bounded to 4 here)
    fill and replies are dropped. The client then reads again and sends one unanswered
    message, whose ack used to release the messages whose replies were dropped. Every
    answered message must get its reply, once."""
    import time
    from aeronpy.testing.inproc import inproc_cluster
    with inproc_cluster(services=BigReplies) as (nodes, pump, client):
        leader = next(n for n in nodes if n.role.name == "LEADER")
        leader.module.egress.queue_max = 4
        sent = {}
        for i in range(40):
            payload = (b"r%d" if i % 2 == 0 else b"s%d") % i
            cid = client.offer(payload)
            assert cid > 0
            sent[cid] = payload
        client.flush()
        deadline = time.monotonic() + 5
        while leader.module.counters["egress_dropped"] == 0 and time.monotonic() < deadline:
            pump()
        assert leader.module.counters["egress_dropped"] > 0      # replies were dropped
        last = client.offer(b"s-last")                              # acked, never answered
        assert last > 0
        got = []
        want = sorted(cid for cid, p in sent.items() if p[:1] == b"r")
        deadline = time.monotonic() + 10
        while sorted(got) != want and time.monotonic() < deadline:
            pump()
            client.poll_egress(lambda cid, payload: got.append(cid))
        assert sorted(got) == want and len(got) == len(set(got))
        while client._core.unacknowledged and time.monotonic() < deadline:
            pump()
            client.poll_egress(lambda cid, payload: got.append(cid))
        assert client._core.unacknowledged == 0                     # the window emptied
        assert sorted(got) == want                                  # and nothing came twice


def test_an_ack_a_full_queue_refused_is_sent_later_not_dropped():
    w = FakeWorld(services=lambda: [Mixed()], egress_queue_max=1)
    sid = w.connect()
    module = w.modules[0]
    module.on_ingress(C1, msg(sid, 1, b"r1"), w.now_ns)
    module.on_ingress(C1, msg(sid, 2, b"s2"), w.now_ns)
    apply_committed(w)
    assert [type(m) for m in drain(module)] == [P.EgressMessage]   # the ack did not fit
    assert module.counters["egress_dropped"] == 0
    assert drain(module) == []                                      # not before 1 ms
    w.now_ns += 2_000_000
    module.tick(w.now_ns)
    assert [m.ack_seq for m in drain(module)] == [2]
