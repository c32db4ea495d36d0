"""``ClientCore.next_due_ns``: exactly when ``tick`` next sends something.

``AsyncClusterClient``'s background task waits until then when idle (at most
``IDLE_WAIT_MAX_S``) instead of 1 ms at a time, so each case is checked exactly: a tick a
nanosecond before the due time sends nothing, a tick at it sends.
"""
from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientState

from .test_client_core import client, connected, sent


def _nothing_before_something_at(c, due):
    sent(c)
    c.tick(due - 1)
    assert sent(c) == []
    c.tick(due)
    assert sent(c) != []


def test_connecting_is_due_at_the_next_attempt():
    c = client(connect_attempt_timeout_ns=1000)
    assert c.next_due_ns() == 0                       # the first connect waits to be taken
    sent(c)
    assert c.next_due_ns() == 1000
    _nothing_before_something_at(c, 1000)


def test_an_idle_session_is_due_at_its_keepalive():
    c = connected(keepalive_interval_ns=100)
    c.offer(b"a", now_ns=60)
    sent(c)
    c.on_egress(P.SessionAck(42, 3, 1), 60)
    assert c.next_due_ns() == 160
    _nothing_before_something_at(c, 160)
    assert c.next_due_ns() == 260                     # the next keepalive after that one


def test_an_unacknowledged_window_is_due_at_its_resend():
    c = connected(keepalive_interval_ns=10_000, resend_timeout_ns=300)
    c.offer(b"a", now_ns=50)
    sent(c)
    due = c.next_due_ns()
    assert due < 50 + 10_000
    _nothing_before_something_at(c, due)


def test_queued_messages_are_due_at_once_and_a_closed_client_never():
    c = connected()
    c.offer(b"a")
    assert c.next_due_ns() == 0
    sent(c)
    c.close(0)
    sent(c)
    assert c.state is ClientState.CLOSED and c.next_due_ns() == 1 << 62


# ------------------------------------------------------------------ the async client, over UDP
import asyncio  # noqa: E402

import pytest  # noqa: E402

from aeronpy import aio  # noqa: E402
from aeronpy.cluster.config import NodeConfig  # noqa: E402
from aeronpy.cluster.node import ClusterNode  # noqa: E402
from aeronpy.service import Role  # noqa: E402
from aeronpy.testing.process_cluster import free_udp_ports  # noqa: E402
from aeronpy.testing.services import EchoService  # noqa: E402
from aeronpy.testing.waits import wait_until  # noqa: E402


@pytest.fixture
def lone_leader(tmp_path):
    ports = free_udp_ports(2)
    cfg = NodeConfig(cluster_id=1, member_id=0, data_dir=str(tmp_path / "n0"), log_level="WARNING",
                     members=[{"id": 0, "host": "127.0.0.1", "consensus_port": ports[0],
                               "ingress_port": ports[1]}])
    node = ClusterNode(cfg, [EchoService()])
    node.start()
    assert wait_until(lambda: node.role == Role.LEADER, 10.0)
    yield f"127.0.0.1:{ports[1]}"
    node.close()


def _idle_cycles(endpoint, idle_s=0.5):
    """Background cycles of an idle AsyncClusterClient over ``idle_s``; its idle wait; and a
    request after the idle spell (the session is still there)."""
    async def main():
        client = await aio.AsyncClusterClient.connect(endpoint, timeout_s=10)
        try:
            assert await client.request(b"a", timeout_s=5) == b"a"
            await asyncio.sleep(0.05)
            cycles = [0]
            real = client._client.do_work

            def counting():
                cycles[0] += 1
                return real()
            client._client.do_work = counting
            wait_s = client._idle_wait_s()
            await asyncio.sleep(idle_s)
            reply = await client.request(b"b", timeout_s=5)
            return cycles[0], wait_s, reply
        finally:
            await client.close()
    return asyncio.run(main())


def test_an_idle_async_client_waits_for_its_next_timer(lone_leader):
    cycles, wait_s, reply = _idle_cycles(lone_leader)
    assert reply == b"b"
    assert aio.TICK_S < wait_s <= aio.IDLE_WAIT_MAX_S
    assert cycles < 100              # 1 ms ticks run about 500 in 0.5 s: the control below


def test_negative_control_with_a_one_millisecond_cap_it_ticks_each_millisecond(lone_leader, monkeypatch):
    monkeypatch.setattr(aio, "IDLE_WAIT_MAX_S", aio.TICK_S)
    cycles, wait_s, reply = _idle_cycles(lone_leader)
    assert reply == b"b" and wait_s == aio.TICK_S
    assert cycles > 100
