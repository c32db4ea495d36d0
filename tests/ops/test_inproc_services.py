"""``inproc_cluster(services=...)`` hosts the caller's services (EchoService by default)."""
from __future__ import annotations

import struct
import time

import pytest

from aeronpy.testing.inproc import _services_for_node, inproc_cluster
from aeronpy.testing.services import CounterService, EchoService


def _pumped_reply(pump, client, payload: bytes, timeout_s: float = 10.0) -> bytes:
    replies = []
    assert client.offer(payload) > 0
    deadline = time.monotonic() + timeout_s
    while not replies:
        assert time.monotonic() < deadline, "no reply while pumping"
        pump()
        client.poll_egress(lambda _cid, data: replies.append(bytes(data)))
    return replies[0]


@pytest.mark.parametrize("services", [CounterService, [CounterService], lambda: [CounterService()]])
def test_inproc_cluster_hosts_the_given_service(services):
    with inproc_cluster(services=services) as (nodes, pump, client):
        assert struct.unpack("<q", _pumped_reply(pump, client, struct.pack("<q", 5)))[0] == 5
        assert struct.unpack("<q", _pumped_reply(pump, client, struct.pack("<q", 2)))[0] == 7


def test_the_default_is_still_echo():
    with inproc_cluster() as (_nodes, pump, client):
        assert _pumped_reply(pump, client, b"hello") == b"hello"


def test_each_node_gets_its_own_instances():
    made = [_services_for_node(CounterService) for _ in range(3)]
    assert len({id(m[0]) for m in made}) == 3
    assert [type(s) for s in _services_for_node([EchoService, CounterService])] == [EchoService, CounterService]
    assert isinstance(_services_for_node(None)[0], EchoService)
    with pytest.raises(ValueError):
        _services_for_node([])
