"""Review of ClientCore (sans-I/O): an idle client must find a new leader by itself."""
import random

from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientConfig, ClientCore

from .test_client_core import EPS, MS, OK_DETAIL, connected


def test_an_idle_client_probes_another_member_and_follows_its_redirect():
    """The leader died while the client was idle: its keepalives went to the dead member for
    ever (its window is empty, so no stall ever moved it), the new leader never heard from it
    and closed the session after session_timeout_ms. A keepalive to another member now and then
    is answered by a redirect naming the leader, and the client follows it."""
    c = connected(resend_timeout_ns=500 * MS)
    assert c._keepalive_interval_ns == 1000 * MS
    c.tick(1000 * MS)
    out = c.take_outgoing()
    assert ("m1:1", P.SessionKeepAlive(42, 3)) in out
    probes = [ep for ep, m in out if type(m) is P.SessionKeepAlive and ep != "m1:1"]
    assert len(probes) == 1 and probes[0] in ("m0:1", "m2:1")
    # a follower of term 4 answers: the leader is m2 now
    c.on_egress(P.SessionEvent(0, 42, P.EVENT_REDIRECT, 2, 4, "m2:1"), 1001 * MS)
    assert c.leader_endpoint == "m2:1"
    assert ("m2:1", P.SessionKeepAlive(42, 4)) in c.take_outgoing()   # heard by it at once
    c.tick(2001 * MS)
    assert ("m2:1", P.SessionKeepAlive(42, 4)) in c.take_outgoing()


def test_a_lagging_followers_redirect_to_an_older_leader_is_not_followed():
    c = connected()
    c.on_egress(P.SessionEvent(0, 42, P.EVENT_REDIRECT, 0, 2, "m0:1"), 0)   # term 2 < 3
    assert c.leader_endpoint == "m1:1"


def test_a_busy_client_sends_no_probes():
    c = connected(keepalive_interval_ns=100, resend_timeout_ns=500 * MS)
    c.offer(b"a", now_ns=60)
    c.take_outgoing()
    c.on_egress(P.SessionAck(42, 3, 1), 60)
    c.tick(160)
    assert c.take_outgoing() == [("m1:1", P.SessionKeepAlive(42, 3))]


def test_a_service_id_that_is_not_an_integer_is_refused_and_uses_no_seq():
    """offer(payload, 1.5) went to service 1 (the compiled encoder truncated the float), where
    the object path and the codec refuse a float for an integer field."""
    import pytest
    for encoded in (True, False):
        c = ClientCore(EPS, "me:5", ClientConfig(), random.Random(1), encoded_messages=encoded)
        c.connect(0)
        [(_, connect)] = c.take_outgoing()
        c.on_egress(P.SessionEvent(connect.correlation_id, 42, P.EVENT_OK, 1, 3, OK_DETAIL), 0)
        for bad in (1.5, "1", None):
            with pytest.raises(TypeError):
                c.offer(b"x", bad)
        assert c.unacknowledged == 0 and c.take_outgoing() == []
        assert c.offer(b"x", 1) == 2 and c.unacknowledged == 1


def test_a_reply_to_a_message_never_sent_is_dropped_not_recorded():
    """A forged (or confused) EgressMessage naming a seq the client never sent was recorded
    in its record of answered seqs, which is pruned only as the window moves past: each such
    datagram with a new huge seq grew it for good. Both egress paths drop it now."""
    for fields_path in (False, True):
        c = connected()
        c.offer(b"a", now_ns=1)
        c.take_outgoing()
        for seq in range(10**6, 10**6 + 50):
            if fields_path:
                c.on_egress_message(42, 7, seq, b"forged", 2)
            else:
                c.on_egress(P.EgressMessage(42, 7, seq, b"forged"), 2)
        assert len(c._answered) == 0 and c.counters["egress_bogus_seq"] == 50
        assert len(c._inbox) == 0                     # nothing handed to the application
        # the real reply to message 1 still lands
        c.on_egress(P.EgressMessage(42, 1, 1, b"real"), 3)
        assert len(c._answered) == 1 and not c._window
