"""Review of AsyncClusterClient: close, cancellation, back-pressure and a dead background task."""
import asyncio

import pytest

from aeronpy.aio import AsyncClusterClient
from aeronpy.cluster.client_core import ClientConfig
from aeronpy.errors import AeronpyError, ClusterClosedError, ClusterTimeoutError

from .fakes import FakeWorld
from .memnet import MemNet, MemTransport


def _net():
    w = FakeWorld(members=3)
    w.elect(0)
    w.settle()
    return w, MemNet(w)


async def _connect(net, name="a:1", transport=None, **config):
    transport = transport or MemTransport(net, name)
    net.transports[name] = transport
    return await AsyncClusterClient.connect(
        net.endpoints(), timeout_s=5, transport=transport, clock=net.clock,
        config=ClientConfig(connect_attempt_timeout_ns=5_000_000, **config), poll_interval_s=0.001)


def test_close_ends_a_pending_wait_for_egress_and_wait_for_window_at_once():
    w, net = _net()

    async def main():
        client = await _connect(net)
        loop = asyncio.get_running_loop()
        egress = asyncio.create_task(client.wait_for_egress(5.0))
        window = asyncio.create_task(client.wait_for_window(5.0))
        net.down.update({0, 1, 2})                         # nothing answers from now on
        for _ in range(client._core._window_messages):     # fill the window
            client.offer(b"x")
        await asyncio.sleep(0.05)
        assert not egress.done() and not window.done()
        start = loop.time()
        await client.close()
        results = await asyncio.wait_for(asyncio.gather(egress, window, return_exceptions=True), 2.0)
        return results, loop.time() - start

    (got_egress, got_window), took = asyncio.run(main())
    # they raise ClusterClosedError (tests/cluster/test_review2_aio.py): a False at once made
    # `while not await client.wait_for_window(t)` a loop that never yields
    assert isinstance(got_egress, ClusterClosedError) and isinstance(got_window, ClusterClosedError), \
        (got_egress, got_window)
    assert took < 0.5, f"waiters ran on for {took:.2f}s after close"


def test_close_does_not_swallow_the_cancellation_of_its_caller():
    w, net = _net()

    async def main():
        client = await _connect(net)
        closing = asyncio.create_task(client.close())
        await asyncio.sleep(0)          # close() is now awaiting the background task
        closing.cancel()                 # e.g. asyncio.wait_for / a TaskGroup cancelling it
        try:
            await closing
        except asyncio.CancelledError:
            return "cancelled", client._client._closed
        return "returned", client._client._closed

    outcome, transport_closed = asyncio.run(main())
    assert outcome == "cancelled", "close() swallowed its caller's CancelledError"
    assert transport_closed                          # the client is closed all the same


def test_a_back_pressured_request_waits_for_window_room_not_a_sleep_poll():
    w, net = _net()

    async def main():
        client = await _connect(net, window_messages=4)
        net.down.update({0, 1, 2})
        for _ in range(4):
            assert client.offer(b"x") > 0
        core = client._core
        calls = 0
        real_offer = core.offer

        def counting_offer(*args, **kwargs):
            nonlocal calls
            calls += 1
            return real_offer(*args, **kwargs)

        core.offer = counting_offer
        with pytest.raises(ClusterTimeoutError, match="send window full"):
            await client.request(b"y", timeout_s=0.3)
        await client.close()
        return calls

    calls = asyncio.run(main())
    # the background task's cycles (every poll_interval_s here) may wake it; a request that
    # sleep-polls on its own at poll_interval_s retries hundreds of times in 0.3 s
    assert calls < 30, f"a back-pressured request retried offer {calls} times in 0.3 s"


class _FailingTransport(MemTransport):
    """Fails in the background task's poll, once told to (as a send to an endpoint that a
    redirect named and that cannot be resolved raises NotConnectedError from do_work)."""
    fail = False

    def poll(self, handler, limit: int = 64) -> int:
        if self.fail:
            raise OSError("network is unreachable")
        return super().poll(handler, limit)


def test_a_dead_background_task_fails_pending_requests_at_once():
    w, net = _net()

    async def main():
        transport = _FailingTransport(net, "a:1")
        client = await _connect(net, transport=transport)
        net.down.update({0, 1, 2})                           # no reply to the request
        loop = asyncio.get_running_loop()
        pending = asyncio.create_task(client.request(b"x", timeout_s=5.0))
        await asyncio.sleep(0.02)
        transport.fail = True

        async def outcome_of(awaitable):
            """(what ended it, how long it took)."""
            start = loop.time()
            try:
                await awaitable
                what = "replied"
            except ClusterTimeoutError:
                what = "timed out"
            except AeronpyError as exc:
                what = type(exc).__name__
            return what, loop.time() - start
        outcome, took = await outcome_of(asyncio.wait_for(pending, 10.0))
        later, later_took = await outcome_of(client.request(b"later", timeout_s=2.0))
        try:
            await client.close()
        except BaseException:
            pass
        return outcome, took, later, later_took

    outcome, took, later, later_took = asyncio.run(main())
    assert outcome == "ClusterClosedError" and took < 1.0, (outcome, took)
    assert later == "ClusterClosedError" and later_took < 1.0, (later, later_took)


def test_a_second_concurrent_close_returns_only_once_the_client_is_closed():
    w, net = _net()

    async def main():
        client = await _connect(net)
        first = asyncio.create_task(client.close())
        await asyncio.sleep(0)                   # the first close() awaits the background task
        await client.close()                     # a second task's close, meanwhile
        closed_when_second_returned = client._client._closed
        await asyncio.wait_for(first, 2.0)
        return closed_when_second_returned

    assert asyncio.run(main()), "a second close() returned before the client was closed"
