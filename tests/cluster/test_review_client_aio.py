"""Review of AsyncClusterClient: cancelling connect must not leak the client's transport."""
import asyncio

from aeronpy.aio import AsyncClusterClient
from aeronpy.cluster.client_core import ClientConfig

from .fakes import FakeWorld
from .memnet import MemNet, MemTransport


def test_a_cancelled_connect_closes_its_transport():
    w = FakeWorld(members=3)
    w.elect(0)
    w.settle()
    net = MemNet(w)
    net.down.update({0, 1, 2})                       # nobody answers: connect keeps trying
    transport = net.transports["a:1"] = MemTransport(net, "a:1")

    async def main():
        try:
            await asyncio.wait_for(AsyncClusterClient.connect(
                net.endpoints(), timeout_s=30, transport=transport, clock=net.clock,
                config=ClientConfig(connect_attempt_timeout_ns=5_000_000), poll_interval_s=0.001),
                0.05)
        except asyncio.TimeoutError:
            return True
        return False

    assert asyncio.run(main())
    assert transport.closed                          # the socket of a real client: not leaked
