"""ClusterClient and AsyncClusterClient against fake-core members over an in-memory network."""
import asyncio

import pytest

from aeronpy.aio import AsyncClusterClient
from aeronpy.client import ClusterClient
from aeronpy.cluster.client_core import ClientConfig
from aeronpy.cluster.codes import BACK_PRESSURED
from aeronpy.cluster.module_config import SecretAuthenticator
from aeronpy.errors import (AuthenticationError, ClusterClosedError, ClusterTimeoutError,
                            MessageTooLargeError, NotConnectedError)

from .fakes import FakeWorld
from .memnet import MemNet, MemTransport


def cluster(**config):
    w = FakeWorld(members=3, **config)
    w.elect(0)
    w.settle()
    return w, MemNet(w)


def applied(w, member):
    return w.services(member)[0].messages


def test_connect_through_a_follower_and_request():
    w, net = cluster()
    client = net.client(endpoints=net.endpoints([2, 1, 0]))
    assert client.is_connected and client.leader_endpoint == "m0:9000"
    assert client.counters["redirects"] == 1
    assert client.request(b"ping") == b"re:ping"
    got = []
    assert client.poll_egress(lambda cid, p: got.append(bytes(p))) == 0 and got == []


def test_offer_and_poll_egress_carry_correlation_ids():
    w, net = cluster()
    client = net.client()
    cids = [client.offer(b"%d" % i) for i in range(5)]
    got = []
    for _ in range(20):
        client.poll_egress(lambda cid, p: got.append((cid, bytes(p))))
    assert got == [(cid, b"re:%d" % i) for i, cid in enumerate(cids)]


def test_request_survives_leader_failover_with_the_original_reply():
    w, net = cluster()
    client = net.client()
    assert client.request(b"warm") == b"re:warm"
    # the leader applies the next message, then dies before its reply leaves

    def crash_after_apply():
        if applied(w, 0)[-1:] == [b"x"] and 0 not in net.down:
            net.fail_over(0, 1)
    net.before_delivery = crash_after_apply
    assert client.request(b"x", timeout_s=2.0) == b"re:x"
    assert 0 in net.down
    assert client.leader_endpoint == "m1:9000"
    assert w.modules[1].counters["replies_from_cache"] == 1
    for member in (1, 2):
        assert applied(w, member) == [b"warm", b"x"]
    assert client.request(b"after", timeout_s=1.0) == b"re:after"


def test_window_full_back_pressures_and_request_times_out():
    w, net = cluster()
    client = net.client(config=ClientConfig(window_messages=2, resend_timeout_ns=10 ** 12))
    net.auto_settle = False
    assert client.offer(b"a") > 0 and client.offer(b"b") > 0
    assert client.offer(b"c") == BACK_PRESSURED
    with pytest.raises(ClusterTimeoutError):
        client.request(b"d", timeout_s=0.01)


def test_timed_out_request_reply_is_never_returned_to_another_request():
    w, net = cluster()
    client = net.client()
    net.auto_settle = False
    with pytest.raises(ClusterTimeoutError):
        client.request(b"slow", timeout_s=0.005)
    net.auto_settle = True
    assert client.request(b"next") == b"re:next"
    assert applied(w, 0) == [b"slow", b"next"]        # late, but applied exactly once
    assert client.counters["late_replies_dropped"] == 1


def test_authentication_rejected_raises_at_connect():
    w, net = cluster(authenticator=SecretAuthenticator(b"k"))
    with pytest.raises(AuthenticationError):
        net.client(credentials=b"nope")
    assert net.client("c2:1", credentials=b"k").is_connected


def test_connect_timeout_when_no_member_answers():
    w, net = cluster()
    net.down.update({0, 1, 2})
    with pytest.raises(NotConnectedError):
        net.client(timeout_s=0.05)


def test_oversized_offer_raises_and_sends_nothing():
    w, net = cluster()
    client = net.client(config=ClientConfig(max_message_bytes=16))
    before = len(net.transports["c1:7000"].sent)
    with pytest.raises(MessageTooLargeError):
        client.offer(b"x" * 17)
    with pytest.raises(MessageTooLargeError):
        client.request(b"x" * 17)
    assert len(net.transports["c1:7000"].sent) == before


def test_session_timeout_closes_the_client():
    # a client of protocol 1 is not told the timeout, so it does not lower its keepalive
    # interval to fit it (test_session_terms.py): the cluster times its session out
    w, net = cluster(session_timeout_ns=50_000_000)
    client = net.client(config=ClientConfig(keepalive_interval_ns=10 ** 12, protocol_version=1))
    net.step_ns = 10_000_000
    for _ in range(10):
        client.poll_egress(lambda c, p: None)
    with pytest.raises(ClusterClosedError, match="TIMEOUT"):
        client.request(b"y")


def test_keepalives_keep_the_session_open():
    w, net = cluster(session_timeout_ns=50_000_000)
    client = net.client(config=ClientConfig(keepalive_interval_ns=20_000_000))
    net.step_ns = 10_000_000
    for _ in range(20):
        client.poll_egress(lambda c, p: None)
    assert client.request(b"still here") == b"re:still here"


def test_close_closes_the_session_in_the_cluster():
    w, net = cluster()
    client = net.client()
    sid = client.session_id
    client.close()
    for _ in range(3):
        net.pump()
    assert sid not in w.modules[0].sessions
    assert client.offer(b"x") < 0
    with pytest.raises(ClusterClosedError):
        client.request(b"x")


def test_async_client_request_and_failover():
    w, net = cluster()

    async def main():
        transport = net.transports["a:1"] = MemTransport(net, "a:1")
        client = await AsyncClusterClient.connect(net.endpoints([1, 0, 2]), transport=transport,
                                                  config=ClientConfig(resend_timeout_ns=20_000_000),
                                                  clock=net.clock, poll_interval_s=0)
        assert client.is_connected and isinstance(client._client, ClusterClient)
        replies = await asyncio.gather(*(client.request(b"%d" % i, timeout_s=5) for i in range(5)))
        assert replies == [b"re:%d" % i for i in range(5)]
        net.fail_over(0, 2)
        assert await client.request(b"after", timeout_s=5) == b"re:after"
        await client.close()
        with pytest.raises(ClusterClosedError):
            await client.request(b"closed")

    asyncio.run(main())
    assert applied(w, 2) == [b"%d" % i for i in range(5)] + [b"after"]


class _WaitingTransport(MemTransport):
    """A transport that, like the UDP one, can block until a datagram arrives."""

    def __init__(self, net, local_endpoint):
        super().__init__(net, local_endpoint)
        self.waits = []

    def wait_readable(self, timeout_ns: int) -> bool:
        self.waits.append(timeout_ns)
        return bool(self.inbox)


def test_request_parks_on_the_transport_instead_of_spinning_or_sleeping(monkeypatch):
    import aeronpy.client as client_mod

    w, net = cluster()
    transport = net.transports["c9:7000"] = _WaitingTransport(net, "c9:7000")
    client = ClusterClient.connect(net.endpoints(), timeout_s=1.0, transport=transport,
                                   config=ClientConfig(connect_attempt_timeout_ns=5_000_000,
                                                       resend_timeout_ns=20_000_000),
                                   clock=net.clock)
    assert client.request(b"a") == b"re:a"

    def no_sleep(_s):
        raise AssertionError("a client whose transport can wait must not sleep blind")
    monkeypatch.setattr(client_mod.time, "sleep", no_sleep)
    net.down.update({0, 1, 2})
    waits_before = len(transport.waits)
    with pytest.raises(ClusterTimeoutError):
        client.request(b"b", timeout_s=0.005)
    parked = transport.waits[waits_before:]
    assert parked and all(t == client_mod._Backoff.PARK_NS for t in parked)


def test_udp_client_transport_wait_readable_times_out_without_input():
    from aeronpy.client import UdpClientTransport

    transport = UdpClientTransport(["127.0.0.1:9"])
    try:
        assert transport.wait_readable(1_000_000) is False
    finally:
        transport.close()


def test_udp_client_transport_flush_sends_what_send_queued():
    """request() puts its message on the wire at once through flush(), before any poll."""
    import socket

    from aeronpy.cluster.protocol import SessionKeepAlive
    from aeronpy.client import UdpClientTransport

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2.0)
    transport = UdpClientTransport([f"127.0.0.1:{rx.getsockname()[1]}"])
    try:
        transport.send(f"127.0.0.1:{rx.getsockname()[1]}", SessionKeepAlive(1, 1))
        assert transport.flush() >= 1
        assert len(rx.recv(2048)) > 0
        assert transport.flush() == 0          # nothing left queued
    finally:
        transport.close()
        rx.close()


@pytest.mark.parametrize("timeout_s", [0, -1, float("nan"), float("inf")])
def test_a_request_timeout_must_be_positive_and_nothing_is_sent(timeout_s):
    """It was accepted: the message went out and the wait ended at once (it could then be
    applied with its reply lost to the caller)."""
    w, net = cluster()
    client = net.client()
    before = len(net.transports["c1:7000"].sent)
    with pytest.raises(ValueError, match="timeout_s must be a finite number of seconds > 0"):
        client.request(b"x", timeout_s=timeout_s)
    assert len(net.transports["c1:7000"].sent) == before
    assert client.request(b"ping") == b"re:ping"
