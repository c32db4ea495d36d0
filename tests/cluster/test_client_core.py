"""ClientCore on its own: connect/redirect, window, back pressure, resend, reply matching."""
import random

import pytest

from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientConfig, ClientCore, ClientState
from aeronpy.cluster.codes import BACK_PRESSURED, CLOSED, NOT_CONNECTED
from aeronpy.errors import AuthenticationError, ClusterClosedError, MessageTooLargeError, NotConnectedError

EPS = "m0:1,m1:1,m2:1"
MS = 1_000_000


def client(**cfg):
    c = ClientCore(EPS, "me:5", ClientConfig(**cfg), random.Random(1))
    c.connect(0)
    return c


def connected(**cfg):
    c = client(**cfg)
    [(_, connect)] = c.take_outgoing()
    c.on_egress(P.SessionEvent(connect.correlation_id, 42, P.EVENT_OK, 1, 3, "m1:1"), 0)
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
    c.on_egress(P.SessionEvent(connect.correlation_id, 9, P.EVENT_OK, 2, 3, "m2:1"), 0)
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
    c.on_egress(P.EgressMessage(42, 2, 2, b"r"), 0)
    sent(c)
    c.on_egress(P.NewLeaderEvent(42, 4, 0, "0=m0:1,1=m1:1,2=m2:1"), 0)
    out = sent(c)
    assert {ep for ep, _ in out} == {"m0:1"} and [m.seq for _, m in out] == [3, 4]
    c.on_egress(P.NewLeaderEvent(42, 3, 2, "0=m0:1,1=m1:1,2=m2:1"), 0)   # stale term: ignored
    assert sent(c) == [] and c.leader_endpoint == "m0:1"


def test_redirect_of_a_session_message_resends_to_the_leader():
    c = connected()
    c.offer(b"a")
    sent(c)
    c.on_egress(P.SessionEvent(0, 42, P.EVENT_REDIRECT, 2, 4, "m2:1"), 0)
    assert [(ep, m.seq) for ep, m in sent(c)] == [("m2:1", 1)]


def test_stalled_window_is_resent_then_other_members_are_probed():
    c = connected(resend_timeout_ns=100, keepalive_interval_ns=10 ** 12)
    c.offer(b"a", now_ns=0)
    sent(c)
    c.tick(99)
    assert sent(c) == []
    c.tick(100)
    assert [ep for ep, _ in sent(c)] == ["m1:1"]
    c.tick(200)                                       # second stall: try another member
    [(ep, m)] = sent(c)
    assert ep in ("m0:1", "m2:1") and m.seq == 1 and c.leader_endpoint == ep


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
