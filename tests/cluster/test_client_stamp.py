"""``request()`` stamps the client's transport with the time before it sends.

The UDP transport stamps what it sends with the time of its last poll. A request sent after a
quiet spell with that old time looked unacknowledged for the whole spell at the next poll, and
the stream followed it with a needless HEARTBEAT frame, one per request after any pause of
20 ms or more (``UdpClientTransport.stamp``). The control, without the stamp, sees them.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from aeronpy import ClusterClient
from aeronpy.aio import AsyncClusterClient
from aeronpy.client import UdpClientTransport
from aeronpy.cluster.config import NodeConfig
from aeronpy.cluster.node import ClusterNode
from aeronpy.service import Role
from aeronpy.testing.process_cluster import free_udp_ports
from aeronpy.testing.services import EchoService
from aeronpy.testing.waits import wait_until

QUIET_S = 0.06          # over the streams' 20 ms heartbeat interval
REQUESTS = 3


@pytest.fixture
def endpoint(tmp_path):
    ports = free_udp_ports(2)
    cfg = NodeConfig(cluster_id=1, member_id=0, data_dir=str(tmp_path / "n0"), log_level="WARNING",
                     members=[{"id": 0, "host": "127.0.0.1", "consensus_port": ports[0],
                               "ingress_port": ports[1]}])
    node = ClusterNode(cfg, [EchoService()]).start()
    assert wait_until(lambda: node.role == Role.LEADER, 10.0)
    yield f"127.0.0.1:{ports[1]}"
    node.close()


def _heartbeats_after_quiet_requests(endpoint) -> int:
    client = ClusterClient.connect(endpoint, timeout_s=10)
    try:
        assert client.request(b"warm", timeout_s=5) == b"warm"
        counters = client._transport._udp.counters
        before = counters.heartbeats_sent
        for i in range(REQUESTS):
            time.sleep(QUIET_S)
            assert client.request(b"%d" % i, timeout_s=5) == b"%d" % i
        return counters.heartbeats_sent - before
    finally:
        client.close()


def test_a_request_after_a_quiet_spell_draws_no_stream_heartbeat(endpoint):
    assert _heartbeats_after_quiet_requests(endpoint) == 0


def test_negative_control_without_the_stamp_each_request_draws_one(endpoint, monkeypatch):
    monkeypatch.setattr(UdpClientTransport, "stamp", lambda self: None)
    assert _heartbeats_after_quiet_requests(endpoint) >= REQUESTS - 1


def test_the_async_client_stamps_too(endpoint):
    async def main():
        client = await AsyncClusterClient.connect(endpoint, timeout_s=10)
        try:
            await client.request(b"warm", timeout_s=5)
            counters = client._client._transport._udp.counters
            before = counters.heartbeats_sent
            for i in range(REQUESTS):
                await asyncio.sleep(QUIET_S)
                assert await client.request(b"%d" % i, timeout_s=5) == b"%d" % i
            return counters.heartbeats_sent - before
        finally:
            await client.close()
    assert asyncio.run(main()) == 0
