"""Gaps a mutation-testing pass found in the client session (ClientCore and its compiled base).

Each test here failed to exist: the mutant it names survived the whole suite.
- W07: a NEW_LEADER event of the client's current term is not stale. The client gets one on
  resume after a suspend, and after a redirect raised its term first. It must re-send at once:
  a SessionWindow, then the window's messages, to the leader the event names.
- W08: a reply whose ack_seq is the client's next seq answers a message never sent. Both
  egress paths (the compiled ``on_egress_message`` and the Python ``on_egress``) must refuse
  it, count it as egress_bogus_seq, and deliver or record nothing.
"""
import pytest

from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientState

from .test_client_core import client, sent

SESSION = 42
MEMBERS = "0=m0:1,1=m1:1,2=m2:1"


def connected_in_term(term: int, **cfg):
    """A client connected to leader m1:1 in ``term`` (a protocol-2 cluster's OK)."""
    c = client(**cfg)
    [(_, connect)] = sent(c)
    c.on_egress(P.SessionEvent(connect.correlation_id, SESSION, P.EVENT_OK, 1, term,
                               "m1:1;session_timeout_ms=10000"), 0)
    assert c.state is ClientState.CONNECTED and c.leadership_term == term
    return c


# ---------------------------------------------------------------- W07: NEW_LEADER of our own term
def test_a_new_leader_event_of_the_term_a_redirect_taught_resends_the_window_at_once():
    """Connected in term 5. Messages 1 and 2 are acked, 3 and 4 are not. A redirect from a
    member of term 6 names m2:1; the client re-sends there and takes term 6. Then m2:1's
    NEW_LEADER event of term 6 arrives: the client must send a SessionWindow (base 3) and
    messages 3 and 4 to m2:1 at once. Ignoring it as stale left the new leader holding its
    acks below the window until the next stall."""
    c = connected_in_term(5)
    cids = [c.offer(b"%d" % i, now_ns=1) for i in range(4)]
    c.on_egress(P.SessionAck(SESSION, 5, 2), 2)
    assert c.unacknowledged == 2
    sent(c)
    c.on_egress(P.SessionEvent(cids[2], SESSION, P.EVENT_REDIRECT, 2, 6, "m2:1"), 3)
    assert c.leadership_term == 6 and c.leader_endpoint == "m2:1"
    sent(c)                                              # the redirect's re-send
    c.on_egress(P.NewLeaderEvent(SESSION, 6, 2, MEMBERS), 4)
    out = sent(c)
    assert out, "a NEW_LEADER event of the current term was ignored"
    assert {ep for ep, _ in out} == {"m2:1"}
    assert type(out[0][1]) is P.SessionWindow
    assert (out[0][1].session_id, out[0][1].leadership_term, out[0][1].window_base) == (SESSION, 6, 3)
    assert [(m.seq, m.correlation_id) for _, m in out[1:]] == [(3, cids[2]), (4, cids[3])]
    assert c.counters.get("stale_new_leader", 0) == 0


def test_a_new_leader_event_of_the_same_term_after_a_resume_resends_the_window():
    """The same leader, the same term (a suspend, then a resume): the leader sends NEW_LEADER
    again, and the client re-sends its window with where it starts. An older term's event is
    still ignored."""
    c = connected_in_term(5)
    for i in range(3):
        c.offer(b"%d" % i, now_ns=1)
    c.on_egress(P.SessionAck(SESSION, 5, 1), 2)
    sent(c)
    c.on_egress(P.NewLeaderEvent(SESSION, 5, 1, MEMBERS), 3)
    out = sent(c)
    assert [type(m) for _, m in out] == [P.SessionWindow, P.SessionMessage, P.SessionMessage]
    assert out[0][1].window_base == 2 and [m.seq for _, m in out[1:]] == [2, 3]
    assert {ep for ep, _ in out} == {"m1:1"}
    c.on_egress(P.NewLeaderEvent(SESSION, 4, 0, MEMBERS), 4)      # older: stale
    assert sent(c) == [] and c.leader_endpoint == "m1:1"
    assert c.counters["stale_new_leader"] == 1


# ---------------------------------------------------------------- W08: reply to the next seq
@pytest.mark.parametrize("path", ["compiled", "python"])
def test_a_reply_naming_the_next_unsent_seq_is_refused_on_both_egress_paths(path):
    """Two messages sent (seqs 1 and 2; the next is 3). A reply with ack_seq 3 answers a
    message never sent: counted as egress_bogus_seq, nothing delivered or recorded, the
    window untouched. Even when it carries the correlation id the next request will use,
    that request must not find it waiting."""
    c = connected_in_term(5)
    c.offer(b"a", now_ns=1)
    c.offer(b"b", now_ns=1)
    sent(c)
    next_seq, next_cid = c._next_seq, c._next_correlation_id
    assert next_seq == 3

    def feed(cid, ack_seq, payload):
        if path == "compiled":
            c.on_egress_message(SESSION, cid, ack_seq, payload, 2)
        else:
            c.on_egress(P.EgressMessage(SESSION, cid, ack_seq, payload), 2)

    feed(next_cid, next_seq, b"forged")
    feed(7, next_seq, b"forged")
    assert c.counters.get("egress_bogus_seq", 0) == 2
    assert len(c._inbox) == 0 and c._replies == {} and c._answered == {}
    got = []
    assert c.poll(lambda cid, p: got.append((cid, bytes(p)))) == 0 and got == []
    assert c.unacknowledged == 2
    # the next request does not find the forged reply waiting for it
    cid = c.offer(b"c", now_ns=3, expect_reply=True)
    assert cid == next_cid and c.take_reply(cid) is None
    # a reply to the last seq sent is taken
    feed(cid, next_seq, b"real")
    assert c.take_reply(cid) == b"real"
    assert c.counters["egress_bogus_seq"] == 2
