"""ClientCore on its own: connect/redirect, window, back pressure, resend, reply matching."""
import random

import pytest

from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientConfig, ClientCore, ClientState
from aeronpy.cluster.codes import BACK_PRESSURED, CLOSED, NOT_CONNECTED
from aeronpy.errors import AuthenticationError, ClusterClosedError, MessageTooLargeError, NotConnectedError

EPS = "m0:1,m1:1,m2:1"
MS = 1_000_000


OK_DETAIL = "m1:1;session_timeout_ms=10000;reply_cache_messages=4096"


def client(**cfg):
    c = ClientCore(EPS, "me:5", ClientConfig(**cfg), random.Random(1))
    c.connect(0)
    return c


def connected(**cfg):
    c = client(**cfg)
    [(_, connect)] = c.take_outgoing()
    # a protocol-2 cluster's answer: the leader's endpoint and the session terms
    c.on_egress(P.SessionEvent(connect.correlation_id, 42, P.EVENT_OK, 1, 3, OK_DETAIL), 0)
    assert c.state is ClientState.CONNECTED
    return c


def sent(c):
    return [(ep, m) for ep, m in c.take_outgoing()]


def test_connect_goes_to_the_first_endpoint_then_round_robin_with_the_same_nonce():
    c = client(connect_attempt_timeout_ns=10)
    [(ep0, first)] = sent(c)
    c.tick(5)
    assert sent(c) == []
    c.tick(10)
    [(ep1, again)] = sent(c)
    assert (ep0, ep1) == ("m0:1", "m1:1") and again == first
    assert first.response_endpoint == "me:5"


def test_redirect_during_connect_goes_to_the_named_leader():
    c = client()
    [(_, connect)] = sent(c)
    c.on_egress(P.SessionEvent(connect.correlation_id, 0, P.EVENT_REDIRECT, 2, 3, "m2:1"), 0)
    assert sent(c) == [("m2:1", connect)]
    c.on_egress(P.SessionEvent(connect.correlation_id, 9, P.EVENT_OK, 2, 3, "m2:1;session_timeout_ms=10000"), 0)
    assert c.session_id == 9 and c.leader_endpoint == "m2:1"


def test_events_for_other_connects_are_ignored():
    c = client()
    [(_, connect)] = sent(c)
    c.on_egress(P.SessionEvent(connect.correlation_id + 5, 9, P.EVENT_OK, 2, 3, "m2:1"), 0)
    assert c.state is ClientState.CONNECTING


@pytest.mark.parametrize("code,error", [(P.EVENT_AUTHENTICATION_REJECTED, AuthenticationError),
                                        (P.EVENT_ERROR, NotConnectedError)])
def test_refused_connect_closes_with_a_clear_error(code, error):
    c = client()
    [(_, connect)] = sent(c)
    c.on_egress(P.SessionEvent(connect.correlation_id, 0, code, 0, 1, "nope"), 0)
    assert c.state is ClientState.CLOSED and type(c.error) is error
    assert c.offer(b"x") == CLOSED


def test_offer_before_connect_and_oversized_offer():
    c = client(max_message_bytes=8)
    assert c.offer(b"x") == NOT_CONNECTED
    c = connected(max_message_bytes=8)
    with pytest.raises(MessageTooLargeError):
        c.offer(b"123456789")
    assert sent(c) == []
    assert c.offer(b"12345678") > 0


def test_offer_numbers_messages_and_window_full_back_pressures():
    c = connected(window_messages=3)
    cids = [c.offer(b"m%d" % i) for i in range(3)]
    assert c.offer(b"more") == BACK_PRESSURED
    msgs = [m for _, m in sent(c)]
    assert [m.seq for m in msgs] == [1, 2, 3] and [m.correlation_id for m in msgs] == cids
    assert all(m.session_id == 42 for m in msgs) and len(set(cids)) == 3
    c.on_egress(P.SessionAck(42, 3, 2), 0)
    assert c.unacknowledged == 1
    assert c.offer(b"more") > 0


def test_new_leader_event_resends_every_unacknowledged_message_to_the_new_leader():
    c = connected()
    for i in range(4):
        c.offer(b"%d" % i)
    c.on_egress(P.SessionAck(42, 3, 2), 0)           # messages 1 and 2 are done with
    sent(c)
    c.on_egress(P.NewLeaderEvent(42, 4, 0, "0=m0:1,1=m1:1,2=m2:1"), 0)
    out = sent(c)
    assert {ep for ep, _ in out} == {"m0:1"}
    # where the window starts, then the window (the new leader holds its acks below what it
    # answered before it was ready until it reads a re-send of it or this)
    assert type(out[0][1]) is P.SessionWindow and out[0][1].window_base == 3
    assert [m.seq for _, m in out[1:]] == [3, 4]
    c.on_egress(P.NewLeaderEvent(42, 3, 2, "0=m0:1,1=m1:1,2=m2:1"), 0)   # stale term: ignored
    assert sent(c) == [] and c.leader_endpoint == "m0:1"


def test_a_new_leader_event_before_anything_was_released_sends_no_window_start():
    c = connected()
    c.offer(b"0")
    sent(c)
    c.on_egress(P.NewLeaderEvent(42, 4, 0, "0=m0:1,1=m1:1,2=m2:1"), 0)
    assert [type(m) for _, m in sent(c)] == [P.SessionMessage]


def test_redirect_of_a_session_message_resends_to_the_leader():
    c = connected()
    c.offer(b"a")
    sent(c)
    c.on_egress(P.SessionEvent(0, 42, P.EVENT_REDIRECT, 2, 4, "m2:1"), 0)
    assert [(ep, m.seq) for ep, m in sent(c)] == [("m2:1", 1)]


def test_a_stalled_window_is_resent_to_the_next_member_at_each_stall():
    """The leader acknowledged nothing for resend_timeout_ns: the window goes to another member
    at once (a follower redirects). It went to the same leader first, and only at a second
    stall elsewhere, which made the first request after a quiet failover take over 1 s."""
    c = connected(resend_timeout_ns=100, keepalive_interval_ns=10 ** 12)
    c.offer(b"a", now_ns=0)
    sent(c)
    c.tick(99)
    assert sent(c) == []
    c.tick(100)                                       # first stall: another member already
    [(first, m)] = sent(c)
    assert first in ("m0:1", "m2:1") and m.seq == 1 and c.leader_endpoint == first
    c.tick(200)                                       # and on to the next at the next one
    [(second, m)] = sent(c)
    assert second not in (first,) and m.seq == 1 and c.leader_endpoint == second


def test_keepalive_only_when_nothing_was_sent_for_an_interval():
    c = connected(keepalive_interval_ns=100)
    c.tick(50)
    c.offer(b"a", now_ns=60)
    sent(c)
    c.on_egress(P.SessionAck(42, 3, 1), 60)
    c.tick(150)
    assert sent(c) == []
    c.tick(160)
    assert sent(c) == [("m1:1", P.SessionKeepAlive(42, 3))]


def test_reply_is_matched_on_correlation_id_and_never_given_to_another_request():
    c = connected()
    a = c.offer(b"a", expect_reply=True)
    b = c.offer(b"b", expect_reply=True)
    c.on_egress(P.EgressMessage(42, b, 2, b"rb"), 0)
    assert c.take_reply(a) is None and c.take_reply(b) == b"rb"
    c.abandon(a)                                      # request a timed out
    c.on_egress(P.EgressMessage(42, a, 1, b"ra"), 0)  # its late reply
    got = []
    c.poll(lambda cid, p: got.append((cid, bytes(p))))
    assert c.take_reply(a) is None and got == []


def test_responses_not_awaited_go_to_poll_and_duplicates_from_the_cache_are_dropped():
    c = connected()
    x = c.offer(b"x")
    c.on_egress(P.EgressMessage(42, x, 1, b"rx"), 0)
    c.on_egress(P.EgressMessage(42, x, 1, b"rx"), 0)       # re-sent from the reply cache
    c.on_egress(P.EgressMessage(42, x, 1, b"rx2"), 0)      # a second, different response
    c.on_egress(P.EgressMessage(42, 0, 1, b"push"), 0)     # unsolicited
    c.on_egress(P.EgressMessage(7, 0, 1, b"other"), 0)     # another session's
    got = []
    assert c.poll(lambda cid, p: got.append((cid, bytes(p)))) == 3
    assert got == [(x, b"rx"), (x, b"rx2"), (0, b"push")]


def test_session_closed_by_the_cluster_closes_the_client():
    c = connected()
    c.on_egress(P.SessionEvent(0, 42, P.EVENT_CLOSED, 1, 3, "TIMEOUT"), 0)
    assert c.state is ClientState.CLOSED and isinstance(c.error, ClusterClosedError)
    assert "TIMEOUT" in str(c.error) and c.offer(b"x") == CLOSED


def test_close_sends_session_close():
    c = connected()
    c.close(5)
    assert sent(c) == [("m1:1", P.SessionClose(42, 3))]
    assert c.offer(b"x") == CLOSED


def test_inbox_is_bounded():
    c = connected(inbox_max=2)
    for i in range(5):
        c.on_egress(P.EgressMessage(42, 0, 0, b"%d" % i), 0)
    assert c.poll(lambda cid, p: None) == 2 and c.counters["inbox_dropped"] == 3


def test_codes_match_the_public_constants_and_exports_resolve():
    import aeronpy
    import aeronpy.cluster as cluster
    from aeronpy.cluster import codes
    assert (codes.NOT_CONNECTED, codes.BACK_PRESSURED, codes.CLOSED) == \
        (aeronpy.NOT_CONNECTED, aeronpy.BACK_PRESSURED, aeronpy.CLOSED)
    for name in cluster.__all__:
        assert getattr(cluster, name).__name__ == name
    with pytest.raises(AttributeError):
        cluster.NoSuchThing


def test_a_reply_to_a_later_message_does_not_release_an_earlier_unanswered_one():
    # the replies to 1 and 2 died with a leader; the new one answers 3 and 4 first
    c = connected(resend_timeout_ns=100, keepalive_interval_ns=10 ** 12)
    cids = [c.offer(b"%d" % seq, now_ns=0) for seq in range(1, 5)]
    sent(c)
    for seq in (3, 4):
        c.on_egress(P.EgressMessage(42, cids[seq - 1], seq, b"r%d" % seq), 10)
    assert c.unacknowledged == 4
    c.tick(100)                                       # no progress: 1 and 2 are asked for again
    assert [m.seq for _, m in sent(c)] == [1, 2, 3, 4]
    for seq in (1, 2, 3, 4):                          # the reply cache answers all four
        c.on_egress(P.EgressMessage(42, cids[seq - 1], seq, b"r%d" % seq), 110)
    got = []
    c.poll(lambda cid, p: got.append((cid, bytes(p))))
    assert sorted(got) == [(cids[i], b"r%d" % (i + 1)) for i in range(4)]
    assert c.unacknowledged == 0 and c.counters["duplicate_responses"] == 2


def test_a_reply_arriving_after_a_later_ones_is_delivered_once():
    c = connected()
    a, b = c.offer(b"a"), c.offer(b"b")
    c.on_egress(P.EgressMessage(42, b, 2, b"rb"), 0)  # from the new leader
    c.on_egress(P.EgressMessage(42, a, 1, b"ra"), 0)  # from its reply cache, later
    c.on_egress(P.EgressMessage(42, a, 1, b"ra"), 0)
    got = []
    c.poll(lambda cid, p: got.append((cid, bytes(p))))
    assert got == [(b, b"rb"), (a, b"ra")] and c.unacknowledged == 0


def test_unsolicited_responses_release_nothing_and_session_acks_release_up_to_their_seq():
    c = connected()
    for i in range(3):
        c.offer(b"%d" % i)
    c.on_egress(P.EgressMessage(42, 0, 3, b"push"), 0)   # the service's own: answers nothing
    assert c.unacknowledged == 3
    c.on_egress(P.SessionAck(42, 3, 2), 0)
    assert c.unacknowledged == 1


def test_rejected_message_fails_its_request_and_the_ack_releases_it():
    c = connected()
    cid = c.offer(b"big", expect_reply=True)
    later = c.offer(b"small")
    c.on_egress(P.SessionEvent(cid, 42, P.EVENT_ERROR, 1, 3, "message too large"), 0)
    error = c.take_error(cid)
    assert isinstance(error, MessageTooLargeError) and "too large" in str(error)
    assert not c.is_awaiting(cid) and c.take_error(cid) is None
    assert c.counters["messages_rejected"] == 1
    c.on_egress(P.SessionAck(42, 3, 1), 0)            # the cluster consumed its seq
    assert c.unacknowledged == 1
    c.on_egress(P.EgressMessage(42, later, 2, b"ok"), 0)
    assert c.unacknowledged == 0


def test_record_of_delivered_replies_is_bounded():
    c = connected(window_messages=4)
    for seq in range(1, 101):
        cid = c.offer(b"x")
        c.on_egress(P.EgressMessage(42, cid, seq, b"r"), 0)
    assert c.unacknowledged == 0 and len(c._answered) <= 5
    c.on_egress(P.EgressMessage(42, 2, 1, b"r"), 0)    # far below the window: a late duplicate
    assert c.counters["duplicate_responses"] == 1
