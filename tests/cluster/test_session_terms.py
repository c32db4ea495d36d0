"""Client protocol 2: the cluster gives its session terms at connect, and the client keeps to
them (session timeout, reply cache, max message size); older protocols still connect."""
import asyncio
import logging

import pytest

from aeronpy.aio import AsyncClusterClient

from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientConfig
from aeronpy.cluster.codes import BACK_PRESSURED, CLOSED
from aeronpy.cluster.module_config import ModuleConfig
from aeronpy.errors import ClusterClosedError, MessageTooLargeError

from .test_client import applied, cluster

MS = 1_000_000


def _config(**options):
    return ClientConfig(connect_attempt_timeout_ns=5 * MS, resend_timeout_ns=20 * MS, **options)


def _sent(net, kind, name="c1:7000"):
    return [m for _, m in net.transports[name].sent if type(m) is kind]


def test_terms_round_trip_and_unknown_or_malformed_parts_are_left_out():
    detail = P.format_session_terms("h:1", {"session_timeout_ms": 10_000, "reply_cache_messages": 256,
                                            "max_message_bytes": 1 << 20})
    assert detail == "h:1;session_timeout_ms=10000;reply_cache_messages=256;max_message_bytes=1048576"
    assert P.parse_session_terms(detail) == ("h:1", {"session_timeout_ms": 10_000, "reply_cache_messages": 256,
                                                     "max_message_bytes": 1 << 20})
    assert P.parse_session_terms("h:1") == ("h:1", {})
    assert P.parse_session_terms("") == ("", {})
    # a newer cluster's extra term, a negative, a non-number, a part with no '=', a huge value
    assert P.parse_session_terms("h:1;future=3;session_timeout_ms=-5;reply_cache_messages=x;junk;"
                                 "max_message_bytes=9999999999999999999999") == ("h:1", {})


def test_a_client_learns_the_terms_at_connect():
    w, net = cluster(session_timeout_ns=2_000 * MS, reply_cache_messages=64, max_message_bytes=4096)
    client = net.client(config=_config())
    assert client.session_terms == {"session_timeout_ms": 2000, "reply_cache_messages": 64,
                                          "max_message_bytes": 4096}
    assert client.request(b"a") == b"re:a"


def test_an_idle_client_past_the_session_timeout_sends_nothing_and_is_told():
    w, net = cluster(session_timeout_ns=50 * MS)
    client = net.client(config=_config())
    assert client.request(b"a") == b"re:a"
    w.now_ns += 60 * MS                      # the application made no call for 60 ms
    for _ in range(3):
        net.pump()                           # the cluster times the session out meanwhile
    before = len(_sent(net, P.SessionMessage))
    assert client.offer(b"order") == CLOSED  # not a correlation id: the order was not sent
    assert len(_sent(net, P.SessionMessage)) == before
    assert _sent(net, P.SessionClose)        # ends the session if the cluster had not yet
    assert client.counters["sessions_expired"] == 1
    with pytest.raises(ClusterClosedError, match="expired: this client sent nothing for"):
        client.request(b"order")
    assert b"order" not in applied(w, 0)


def test_negative_control_a_protocol_1_client_sends_the_order_into_the_gone_session():
    # the old behaviour the check above replaces: offer() gives a correlation id, the message
    # leaves, and the cluster refuses it ("unknown session") only afterwards
    w, net = cluster(session_timeout_ns=50 * MS)
    client = net.client(config=_config(protocol_version=1))
    assert client.session_terms == {}
    assert client.request(b"a") == b"re:a"
    w.now_ns += 60 * MS
    for _ in range(3):
        net.pump()
    before = len(_sent(net, P.SessionMessage))
    assert client.offer(b"order") > 0
    assert len(_sent(net, P.SessionMessage)) == before + 1
    client.poll_egress(lambda c, p: None)
    with pytest.raises(ClusterClosedError, match="closed the session"):
        client.request(b"again")
    assert b"order" not in applied(w, 0)


def test_a_client_that_keeps_calling_keeps_its_session_even_with_a_long_keepalive_setting():
    # keepalive_interval above the cluster's timeout is lowered to a third of it at connect
    w, net = cluster(session_timeout_ns=50 * MS)
    client = net.client(config=_config(keepalive_interval_ns=10 ** 12))
    net.step_ns = 10 * MS
    for _ in range(30):                       # 300 ms of polling, no messages
        client.poll_egress(lambda c, p: None)
    assert client.is_connected
    assert client.request(b"still here") == b"re:still here"


def test_the_window_is_lowered_to_the_reply_cache_with_a_warning(caplog):
    w, net = cluster(reply_cache_messages=4)
    with caplog.at_level(logging.WARNING, logger="aeronpy.client"):
        client = net.client(config=_config(window_messages=256))
    net.auto_settle = False                  # nothing is acknowledged from now: the window fills
    assert "send window lowered from 256 to 4" in caplog.text
    assert client.counters["window_lowered_to_reply_cache"] == 1
    assert [client.offer(b"%d" % i) > 0 for i in range(5)] == [True] * 4 + [False]
    assert client.offer(b"x") == BACK_PRESSURED


def test_the_async_clients_window_wait_keeps_to_the_lowered_window():
    w, net = cluster(reply_cache_messages=4)

    async def main():
        from .memnet import MemTransport
        transport = net.transports["c1:7000"] = MemTransport(net, "c1:7000")
        client = await AsyncClusterClient.connect(net.endpoints(), transport=transport, config=_config(),
                                                  clock=net.clock, poll_interval_s=0)
        net.auto_settle = False               # nothing is acknowledged: the window fills
        assert [client.offer(b"%d" % i) > 0 for i in range(4)] == [True] * 4
        assert client.offer(b"x") == BACK_PRESSURED
        assert not await client.wait_for_window(0.05)   # no room: the window is 4, not 256
        net.auto_settle = True
        assert await client.wait_for_window(5.0)
        assert client.offer(b"y") > 0
        await client.close()

    asyncio.run(main())


def test_a_window_within_the_reply_cache_or_a_cache_of_zero_is_kept():
    for cache, window in ((256, 16), (0, 16)):
        w, net = cluster(reply_cache_messages=cache)
        client = net.client(config=_config(window_messages=window))
        assert client._core._window_messages == window
        assert "window_lowered_to_reply_cache" not in client.counters


def test_a_message_above_the_clusters_max_size_raises_at_offer_and_nothing_is_sent():
    w, net = cluster(max_message_bytes=64)
    client = net.client(config=_config(max_message_bytes=1 << 20))
    before = len(_sent(net, P.SessionMessage))
    with pytest.raises(MessageTooLargeError, match="max_message_bytes 64"):
        client.offer(b"x" * 65)
    assert len(_sent(net, P.SessionMessage)) == before
    assert client.request(b"x" * 60) == b"re:" + b"x" * 60


def test_a_client_of_protocol_2_connects_to_a_cluster_that_speaks_only_1():
    w, net = cluster(protocol_version=1)
    client = net.client(config=_config())
    assert client.is_connected
    assert client.counters["protocol_fallbacks"] == 1
    assert client.session_terms == {}   # an old cluster gives none: nothing is checked
    assert client.request(b"a") == b"re:a"
    assert [m.protocol_version for m in _sent(net, P.SessionConnect)][:2] == [2, 1]


def test_a_refusal_of_the_oldest_protocol_still_fails_the_connect():
    from aeronpy.cluster.client_core import ClientCore
    core = ClientCore("m0:9000", "c:1", _config(protocol_version=1))
    core.connect(0)
    core.on_egress(P.SessionEvent(core._connect_message.correlation_id, 0, P.EVENT_ERROR, 0, 1,
                                  "protocol version 1 not supported (cluster speaks 3 to 4)"), 1)
    assert core.state.name == "CLOSED" and "protocol version 1" in str(core.error)


def test_a_late_refusal_of_the_version_given_up_is_ignored():
    from aeronpy.cluster.client_core import ClientCore
    core = ClientCore("m0:9000", "c:1", _config())
    core.connect(0)
    refusal = P.SessionEvent(core._connect_message.correlation_id, 0, P.EVENT_ERROR, 0, 1,
                             "protocol version 2 not supported (cluster speaks 1)")
    core.on_egress(refusal, 1)
    assert core._connect_message.protocol_version == 1
    core.on_egress(refusal, 2)                # the answer to an earlier re-send of the v2 connect
    assert core.state.name == "CONNECTING" and core._connect_message.protocol_version == 1


def test_the_cluster_refuses_protocols_outside_its_range():
    config = ModuleConfig(protocol_version=2)
    assert [config.accepts_protocol(v) for v in (0, 1, 2, 3)] == [False, True, True, False]
    with pytest.raises(ValueError, match="protocol_version must be >= 1"):
        ModuleConfig(protocol_version=0)
    with pytest.raises(ValueError, match="protocol_version must be >= 1"):
        ClientConfig(protocol_version=0)


def test_an_ok_without_terms_from_a_protocol_2_cluster_asks_again_and_keeps_the_answer():
    # a leader that took over a session's opening from another does not know the client's
    # protocol and answers with the endpoint alone: the client sends its connect again
    from aeronpy.cluster.client_core import ClientCore
    core = ClientCore("m0:9000", "c:1", _config(window_messages=256))
    core.connect(0)
    core.take_outgoing()
    cid = core._connect_message.correlation_id
    core.on_egress(P.SessionEvent(cid, 5, P.EVENT_OK, 1, 3, "m1:9000"), 1)
    assert core.is_connected and core.session_terms == {}
    assert [(e, type(m)) for e, m in core.take_outgoing()] == [("m1:9000", P.SessionConnect)]
    assert core.counters["session_terms_asked"] == 1
    core.on_egress(P.SessionEvent(cid, 5, P.EVENT_OK, 1, 3,
                                  "m1:9000;session_timeout_ms=900;reply_cache_messages=8"), 2)
    assert core.session_terms == {"session_timeout_ms": 900, "reply_cache_messages": 8}
    assert core._window_messages == 8 and core._session_expiry_ns == 900 * MS


def test_the_leader_answers_a_connect_again_with_the_terms():
    w, net = cluster(session_timeout_ns=3_000 * MS)
    client = net.client(config=_config())
    core = client._core
    core.session_terms = {}
    client._transport.send(core.leader_endpoint, core._connect_message)   # the same connect
    client.poll_egress(lambda c, p: None)
    assert core.session_terms["session_timeout_ms"] == 3000 and client.is_connected


def test_terms_out_of_any_real_range_are_left_out_not_raised():
    from aeronpy.cluster.client_core import ClientCore
    for value in ("9223372036855", str(P.MAX_SESSION_TERM + 1), "99999999999999999999", "\u00b2", "1\u0663"):
        core = ClientCore("m0:9000", "c:1", _config())
        core.connect(0)
        detail = f"m0:9000;session_timeout_ms={value};max_message_bytes={value}"
        core.on_egress(P.SessionEvent(core._connect_message.correlation_id, 5, P.EVENT_OK, 0, 1,
                                      detail), 1)
        assert core.is_connected and core.session_terms == {} and core._session_expiry_ns == 0
    core = ClientCore("m0:9000", "c:1", _config())
    core.connect(0)
    core.on_egress(P.SessionEvent(core._connect_message.correlation_id, 5, P.EVENT_OK, 0, 1,
                                  f"m0:9000;session_timeout_ms={P.MAX_SESSION_TERM}"), 1)
    assert core._session_expiry_ns == P.MAX_SESSION_TERM * MS        # fits in 64 bits


def test_an_async_request_on_an_expired_session_raises_and_sends_nothing():
    w, net = cluster(session_timeout_ns=50 * MS)

    async def main():
        from .memnet import MemTransport
        transport = net.transports["c1:7000"] = MemTransport(net, "c1:7000")
        client = await AsyncClusterClient.connect(net.endpoints(), transport=transport, config=_config(),
                                                  clock=net.clock, poll_interval_s=0)
        assert await client.request(b"a", timeout_s=5) == b"re:a"
        before = len(_sent(net, P.SessionMessage))
        w.now_ns += 60 * MS           # the loop was blocked elsewhere: no keepalive went out
        with pytest.raises(ClusterClosedError, match="session expired"):
            await client.request(b"order", timeout_s=5)
        assert len(_sent(net, P.SessionMessage)) == before
        await client.close()

    asyncio.run(main())


def test_the_terms_are_asked_for_again_until_they_come_a_bounded_number_of_times():
    from aeronpy.cluster.client_core import ClientCore
    core = ClientCore("m0:9000", "c:1", _config())
    core.connect(0)
    core.take_outgoing()
    cid = core._connect_message.correlation_id
    core.on_egress(P.SessionEvent(cid, 5, P.EVENT_OK, 1, 3, "m1:9000"), 1)
    asks = [len([m for _, m in core.take_outgoing() if type(m) is P.SessionConnect])]
    for step in range(1, 12):                 # the asks are lost: every attempt timeout, again
        core.tick(1 + step * 5 * MS)
        asks.append(len([m for _, m in core.take_outgoing() if type(m) is P.SessionConnect]))
    assert sum(asks) == 5 and core.counters["session_terms_asked"] == 5
    core2 = ClientCore("m0:9000", "c:1", _config())
    core2.connect(0)
    cid = core2._connect_message.correlation_id
    core2.on_egress(P.SessionEvent(cid, 5, P.EVENT_OK, 1, 3, "m1:9000"), 1)
    core2.on_egress(P.SessionEvent(cid, 5, P.EVENT_OK, 1, 3, "m1:9000;session_timeout_ms=900"), 2)
    core2.take_outgoing()
    core2.tick(10 * MS)                       # came: no more asks
    assert not [m for _, m in core2.take_outgoing() if type(m) is P.SessionConnect]


def test_the_same_connect_from_its_own_client_is_not_authenticated_again():
    from aeronpy.cluster.module_config import Authenticator

    class OneTimeTokens(Authenticator):
        def __init__(self):
            self.calls = []

        def authenticate(self, credentials, response_endpoint):
            self.calls.append((bytes(credentials), response_endpoint))
            return self.calls.count((bytes(credentials), response_endpoint)) == 1

    tokens = OneTimeTokens()
    w, net = cluster(session_timeout_ns=3_000 * MS, authenticator=tokens)
    client = net.client(config=_config(), credentials=b"token-1")
    core = client._core
    calls = len(tokens.calls)
    core.session_terms = {}
    client._transport.send(core.leader_endpoint, core._connect_message)   # the same connect
    client.poll_egress(lambda c, p: None)
    assert core.session_terms["session_timeout_ms"] == 3000 and client.is_connected
    assert len(tokens.calls) == calls                # answered without a second login
    # the same connect from anyone else is authenticated (and this one-time token refused)
    from .memnet import MemTransport
    other = net.transports["c9:7000"] = MemTransport(net, "c9:7000")
    other.send(core.leader_endpoint, core._connect_message)
    net.pump()
    assert len(tokens.calls) == calls + 1
    refusals = [m for m in other.inbox if type(m) is P.SessionEvent]
    assert [m.code for m in refusals] == [P.EVENT_AUTHENTICATION_REJECTED]
