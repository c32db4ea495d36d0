"""The client's public arguments and ClientConfig fields are checked where they enter, with an
error naming the argument, before anything is sent (a fresh user's report: a float timeout in
seconds accepted as ns, a str window failing later with a '<=' TypeError, timeout_s=None
failing on '<', service_id=2**40 an OverflowError from the compiled header store and -1 sent
to a cluster that can only refuse it); a misspelt connect option named ``connect``; and the
``redirects`` counter counting a member's "no leader yet" answer as a redirect."""
import asyncio
import math

import numpy as np
import pytest

from aeronpy.aio import AsyncClusterClient
from aeronpy.client import ClusterClient
from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientConfig, ClientCore
from aeronpy.service import Role

from .fakes import FakeWorld
from .memnet import MemNet, MemTransport

SERVICE_ID_MAX = 2 ** 31 - 1     # the wire field is an int32
INT_FIELDS = ("max_message_bytes", "window_messages", "inbox_max", "connect_attempt_timeout_ns",
              "keepalive_interval_ns", "resend_timeout_ns", "abandoned_max", "protocol_version")


def cluster(members=3):
    w = FakeWorld(members=members)
    w.elect(0)
    w.settle()
    return w, MemNet(w)


def applied(w, member=0):
    return w.services(member)[0].messages


def sent_state(client):
    """What a refused call must leave as it was: nothing sent, no number taken."""
    core = client._core
    return len(client._transport.sent), core._next_seq, core._next_correlation_id, len(core._window)


# ---- ClientConfig ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", INT_FIELDS)
@pytest.mark.parametrize("bad", [0.5, 10.0, "10", None, True])
def test_a_config_field_of_the_wrong_type_is_refused_naming_it(name, bad):
    with pytest.raises(TypeError, match=rf"ClientConfig\.{name} must be an int"):
        ClientConfig(**{name: bad})


def test_a_time_given_in_seconds_is_refused_with_the_unit():
    with pytest.raises(TypeError, match=r"resend_timeout_ns must be an int.*nanoseconds.*0\.5"):
        ClientConfig(resend_timeout_ns=0.5)


@pytest.mark.parametrize("name", INT_FIELDS)
@pytest.mark.parametrize("bad", [0, -1, 2 ** 63])
def test_a_config_field_out_of_range_is_refused_naming_it(name, bad):
    with pytest.raises(ValueError, match=rf"ClientConfig\.{name}"):
        ClientConfig(**{name: bad})


def test_protocol_version_is_one_this_client_speaks():
    with pytest.raises(ValueError, match="protocol_version"):
        ClientConfig(protocol_version=P.CLIENT_PROTOCOL_VERSION + 1)
    ClientConfig(protocol_version=P.OLDEST_CLIENT_PROTOCOL_VERSION)


def test_an_int_like_config_value_is_taken_as_its_int():
    config = ClientConfig(window_messages=np.int64(10))
    assert config.window_messages == 10 and type(config.window_messages) is int


# ---- offer / request ------------------------------------------------------------------------
@pytest.mark.parametrize("bad, error", [(2 ** 40, ValueError), (SERVICE_ID_MAX + 1, ValueError),
                                        (-1, ValueError), (True, TypeError), (1.0, TypeError),
                                        ("1", TypeError), (None, TypeError)])
def test_a_bad_service_id_is_refused_before_anything_is_sent(bad, error):
    w, net = cluster()
    client = net.client()
    before = sent_state(client)
    for call in (lambda: client.offer(b"x", service_id=bad),
                 lambda: client.request(b"x", service_id=bad)):
        with pytest.raises(error, match="service_id"):
            call()
        assert sent_state(client) == before
    assert client.request(b"after") == b"re:after"      # the session goes on
    assert applied(w) == [b"after"]


def test_an_int_like_service_id_and_the_largest_one_are_sent():
    w, net = cluster()
    client = net.client()
    assert client.offer(b"x", service_id=np.int32(0)) > 0
    assert client.offer(b"y", service_id=SERVICE_ID_MAX) > 0    # the cluster refuses it, unapplied
    for _ in range(20):
        client.poll_egress(lambda cid, p: None)
    assert applied(w) == [b"x"]
    assert [type(e).__name__ for _, e in client.take_rejections()] == ["MessageRejectedError"]


@pytest.mark.parametrize("bad, error", [(None, TypeError), ("1", TypeError), (True, TypeError),
                                        (0, ValueError), (-1.0, ValueError), (math.nan, ValueError),
                                        (math.inf, ValueError)])
def test_a_bad_request_timeout_is_refused_naming_it(bad, error):
    w, net = cluster()
    client = net.client()
    before = sent_state(client)
    with pytest.raises(error, match="timeout_s"):
        client.request(b"x", timeout_s=bad)
    assert sent_state(client) == before


def test_an_int_request_timeout_is_fine():
    w, net = cluster()
    client = net.client()
    assert client.request(b"x", timeout_s=2) == b"re:x"
    assert client.request(b"y", timeout_s=np.float32(2.0)) == b"re:y"


# ---- poll_egress / wait_for_egress -----------------------------------------------------------
def test_poll_egress_refuses_a_callback_that_is_not_callable_without_losing_a_reply():
    w, net = cluster()
    client = net.client()
    cid = client.offer(b"x")
    for _ in range(5):
        client.do_work()
    with pytest.raises(TypeError, match="on_message"):
        client.poll_egress(None)
    got = []
    for _ in range(5):
        client.poll_egress(lambda c, p: got.append((c, bytes(p))))
    assert got == [(cid, b"re:x")]


@pytest.mark.parametrize("bad, error", [(1.5, TypeError), ("1", TypeError), (None, TypeError),
                                        (True, TypeError), (-1, ValueError)])
def test_poll_egress_refuses_a_bad_limit_naming_it(bad, error):
    w, net = cluster()
    client = net.client()
    with pytest.raises(error, match="limit"):
        client.poll_egress(lambda c, p: None, bad)


@pytest.mark.parametrize("bad, error", [(None, TypeError), ("0.1", TypeError), (True, TypeError),
                                        (math.nan, ValueError), (math.inf, ValueError)])
def test_wait_for_egress_refuses_a_bad_timeout_naming_it(bad, error):
    w, net = cluster()
    client = net.client()
    with pytest.raises(error, match="timeout_s"):
        client.wait_for_egress(bad)
    assert client.wait_for_egress(-1) is False          # nothing left to wait: a poll, as before
    assert client.wait_for_egress(0) is False


# ---- connect --------------------------------------------------------------------------------
@pytest.mark.parametrize("option, bad, error", [
    ("credentials", "secret", TypeError), ("credentials", 16, TypeError),
    ("config", {"window_messages": 8}, TypeError), ("bind_host", 127, TypeError),
    ("timeout_s", None, TypeError), ("timeout_s", 0, ValueError), ("timeout_s", math.inf, ValueError)])
def test_a_bad_connect_argument_is_refused_naming_it_before_anything_is_sent(option, bad, error):
    w, net = cluster()
    transport = MemTransport(net, "c9:1")
    net.transports["c9:1"] = transport
    with pytest.raises(error, match=option):
        ClusterClient.connect(net.endpoints(), transport=transport, clock=net.clock, **{option: bad})
    assert transport.sent == []


@pytest.mark.parametrize("bad", [None, 7, [1, 2], ["m0:9000", None]])
def test_bad_endpoints_are_refused_naming_them(bad):
    with pytest.raises(TypeError, match="endpoints"):
        ClusterClient.connect(bad, timeout_s=1.0)


def test_a_misspelt_connect_option_names_connect_and_the_options():
    w, net = cluster()
    with pytest.raises(TypeError) as raised:
        ClusterClient.connect(net.endpoints(), credentails=b"")
    text = str(raised.value)
    assert "ClusterClient.connect() got an unexpected keyword argument 'credentails'" in text
    assert "did you mean 'credentials'" in text
    for option in ("credentials", "config", "bind_host", "transport", "rng", "clock"):
        assert option in text


def test_the_async_client_names_its_own_connect():
    async def main():
        await AsyncClusterClient.connect("127.0.0.1:1", credentails=b"")
    with pytest.raises(TypeError, match=r"AsyncClusterClient\.connect\(\) got an unexpected "
                                        r"keyword argument 'credentails'.*credentials"):
        asyncio.run(main())


# ---- the asyncio client ---------------------------------------------------------------------
def test_the_async_client_checks_its_arguments_too():
    w, net = cluster()

    async def main():
        transport = net.transports["a:1"] = MemTransport(net, "a:1")
        for bad, error in ((None, TypeError), (-0.1, ValueError), (math.nan, ValueError)):
            with pytest.raises(error, match="poll_interval_s"):
                await AsyncClusterClient.connect(net.endpoints(), transport=transport,
                                                 clock=net.clock, poll_interval_s=bad)
        with pytest.raises(TypeError, match="timeout_s"):
            await AsyncClusterClient.connect(net.endpoints(), None, transport=transport)
        assert transport.sent == []
        client = await AsyncClusterClient.connect(net.endpoints(), transport=transport,
                                                  clock=net.clock, poll_interval_s=0)
        before = sent_state(client._client)
        with pytest.raises(ValueError, match="service_id"):
            await client.request(b"x", service_id=-1)
        with pytest.raises(ValueError, match="service_id"):
            client.offer(b"x", service_id=2 ** 40)
        with pytest.raises(TypeError, match="timeout_s"):
            await client.request(b"x", timeout_s=None)
        with pytest.raises(TypeError, match="timeout_s"):
            await client.wait_for_egress(None)
        with pytest.raises(TypeError, match="on_message"):
            client.poll_egress(None)
        assert sent_state(client._client) == before
        assert client.session_terms == client._client.session_terms
        assert client.session_terms["reply_cache_messages"] == 256
        assert await client.request(b"ok", timeout_s=5) == b"re:ok"
        await client.close()

    asyncio.run(main())


# ---- the redirects counter ------------------------------------------------------------------
def test_a_member_that_knows_no_leader_yet_is_not_counted_as_a_redirect():
    """A single member that has not finished its election when the client connects answers
    "not the leader, and I know none" (a redirect naming no endpoint); the client tries again
    after connect_attempt_timeout_ns. That is no redirect: counted on its own."""
    w = FakeWorld(members=1)
    w.step_down(0)
    w.cores[0].leader_id = None                 # as a member that never saw a leader
    net = MemNet(w)

    def elected():
        w.elect(0)
        w.settle()
    net.script[3] = elected
    client = net.client()
    assert client.is_connected
    assert client.counters.get("no_leader_answers", 0) >= 1
    assert "redirects" not in client.counters, client.counters


def test_a_redirect_naming_the_leader_is_still_one():
    core = ClientCore("m1:9000,m0:9000", "c:1")
    core.connect(0)
    core.on_egress(P.SessionEvent(1, 0, P.EVENT_REDIRECT, 0, 1, "m0:9000"), 1)
    core.on_egress(P.SessionEvent(1, 0, P.EVENT_REDIRECT, -1, 1, ""), 2)
    assert core.counters == {"redirects": 1, "no_leader_answers": 1}
    assert core.take_outgoing()[-1][0] == "m0:9000"


def test_the_connect_options_are_opens_keyword_arguments():
    import inspect
    from aeronpy.client import CONNECT_OPTIONS
    keyword_only = [name for name, p in inspect.signature(ClusterClient.open).parameters.items()
                    if p.kind is p.KEYWORD_ONLY]
    assert list(CONNECT_OPTIONS) == keyword_only


def test_a_service_id_too_large_for_the_wire_is_a_value_error_on_the_udp_client_too():
    """The UDP client encodes at offer(): 2**40 was an OverflowError from the compiled header
    store ("value too large to convert to int32_t"), -1 was encoded and sent."""
    from aeronpy.client import UdpClientTransport
    transport = UdpClientTransport(["127.0.0.1:1"], bind_host="127.0.0.1")
    client = ClusterClient.open("127.0.0.1:1", transport=transport)
    try:
        core = client._core
        core.on_egress(P.SessionEvent(1, 7, P.EVENT_OK, 0, 1, "127.0.0.1:1"), 0)
        assert client.is_connected
        for bad in (2 ** 40, -1):
            with pytest.raises(ValueError, match="service_id"):
                client.offer(b"x", service_id=bad)
        assert core._next_seq == 1 and not core._window
        assert client.offer(b"x", service_id=1) > 0
    finally:
        client.close()
