"""Second review of AsyncClusterClient: what close() and ``async with`` raise after the
background task died, connect() waiting on the socket instead of polling, closed clients'
waits, cancellation, and use from another event loop.

The cluster here is a one-member stand-in behind a real socket pair: what it answers arrives
``latency_s`` later and makes the client's socket readable, as a datagram would. No FakeWorld:
these tests are about the adapter, not the session logic."""
from __future__ import annotations

import asyncio
import socket
from collections import deque

import pytest

from aeronpy.aio import AsyncClusterClient
from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientConfig
from aeronpy.cluster.codes import CLOSED
from aeronpy.errors import ClusterClosedError, NotConnectedError

SESSION_ID = 7
BOUND_S = 10.0           # every test's whole run is bounded by this


class SocketTransport:
    """A client transport whose replies arrive on a real socket (loopback socket pair)."""

    local_endpoint = "c:1"

    def __init__(self, answer: bool = True, latency_s: float = 0.0):
        self._rx, self._tx = socket.socketpair()
        self._rx.setblocking(False)
        self.answer = answer              # answer connects and messages at all
        self.latency_s = latency_s
        self.inbox: deque = deque()
        self.sent: list = []
        self.polls = 0                    # the client's duty cycles (each polls once)
        self.fail_polls = 0               # the next polls that raise OSError
        self.fail_flushes = 0             # the next flushes that raise OSError
        self.closed = False

    def fileno(self) -> int:
        return -1 if self.closed else self._rx.fileno()

    def send(self, endpoint: str, message) -> None:
        self.sent.append((endpoint, message))
        if not self.answer or self.closed:
            return
        kind = type(message)
        if kind is P.SessionConnect:
            reply = P.SessionEvent(message.correlation_id, SESSION_ID, P.EVENT_OK, 0, 1,
                                   P.format_session_terms("m0:9000", {
                                       "session_timeout_ms": 60_000, "reply_cache_messages": 256,
                                       "max_message_bytes": 1 << 16}))
        elif kind is P.SessionMessage:
            reply = P.EgressMessage(SESSION_ID, message.correlation_id, message.seq,
                                    b"re:" + bytes(message.payload))
        else:
            return
        asyncio.get_running_loop().call_later(self.latency_s, self._arrive, reply)

    def _arrive(self, message) -> None:
        if not self.closed:
            self.inbox.append(message)
            self._tx.send(b"!")

    def flush(self) -> int:
        if self.fail_flushes:
            self.fail_flushes -= 1
            raise OSError("no buffer space available")
        return 0

    def poll(self, handler, limit: int = 64) -> int:
        self.polls += 1
        if self.fail_polls:
            self.fail_polls -= 1
            raise OSError("network is unreachable")
        try:
            while self._rx.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        n = 0
        while self.inbox and n < limit:
            handler(self.inbox.popleft())
            n += 1
        return n

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._rx.close()
            self._tx.close()


def _config(**overrides) -> ClientConfig:
    return ClientConfig(**{"connect_attempt_timeout_ns": 100_000_000, **overrides})


async def _connect(transport: SocketTransport, timeout_s: float = 5.0, **config) -> AsyncClusterClient:
    return await AsyncClusterClient.connect("m0:9000", timeout_s=timeout_s, transport=transport,
                                            config=_config(**config))


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, BOUND_S))


async def _kill_background_task(client: AsyncClusterClient, transport: SocketTransport) -> None:
    """The task's next cycle raises OSError (as a send to an unresolvable endpoint would);
    only that one: the client's own close() can poll again."""
    transport.fail_polls = 1
    transport._tx.send(b"!")              # wake the task now
    await asyncio.wait([client._task], timeout=2.0)
    assert client._task.done() and isinstance(client._task.exception(), OSError)
    await asyncio.sleep(0)                # its done callback has run


# ---- 1. close() and async with after the background task died ---------------------------

def test_async_with_raises_the_body_exception_not_the_dead_tasks():
    """A body raising X, with the task dead of OSError: X came out of ``async with`` (the
    user's own error), not the OSError (which close() used to re-raise over it)."""
    async def main():
        transport = SocketTransport()
        client = await _connect(transport)
        with pytest.raises(ValueError, match="the body's own error") as caught:
            async with client:
                await _kill_background_task(client, transport)
                raise ValueError("the body's own error")
        assert transport.closed                       # closed all the same
        return caught.value

    error = _run(main())
    notes = getattr(error, "__notes__", None)
    if notes is not None:                             # Python 3.11+: the failure is a note on it
        assert any("background task failed" in note and "network is unreachable" in note
                   for note in notes), notes


def test_a_cancelled_async_with_body_stays_cancelled_when_the_task_died():
    """asyncio.timeout / TaskGroup / task.cancel() rely on the CancelledError coming out; a
    dead task's OSError replaced it."""
    async def main():
        transport = SocketTransport()
        client = await _connect(transport)
        entered = asyncio.Event()

        async def body():
            async with client:
                await _kill_background_task(client, transport)
                entered.set()
                await asyncio.sleep(30)

        task = asyncio.create_task(body())
        await asyncio.wait_for(entered.wait(), 2.0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=2.0)
        assert done, "the body did not end"
        return task.cancelled(), None if task.cancelled() else task.exception(), transport.closed

    cancelled, other, closed = _run(main())
    assert cancelled, f"the cancelled body ended with {other!r}"
    assert closed


def test_close_after_the_failure_reached_a_request_does_not_raise_it_again():
    """The failure was the cause of the pending request's ClusterClosedError: close() is
    quiet (it re-raised the OSError, so `finally: await client.close()` replaced the
    request's error)."""
    async def main():
        transport = SocketTransport()
        client = await _connect(transport)
        transport.answer = False                      # the request stays pending
        pending = asyncio.create_task(client.request(b"x", timeout_s=5.0))
        await asyncio.sleep(0.01)
        await _kill_background_task(client, transport)
        with pytest.raises(ClusterClosedError) as caught:
            await asyncio.wait_for(pending, 2.0)
        assert isinstance(caught.value.__cause__, OSError)
        await client.close()                          # nothing raised
        return transport.closed

    assert _run(main())


def test_close_raises_a_failure_nothing_else_reported_once_as_cluster_closed_error():
    """Nobody was told (no request pending or made): close() is the only place left to say
    it, as a ClusterClosedError caused by the task's exception; a second close() is quiet."""
    async def main():
        transport = SocketTransport()
        client = await _connect(transport)
        await _kill_background_task(client, transport)
        with pytest.raises(ClusterClosedError, match="background task failed") as caught:
            await client.close()
        assert isinstance(caught.value.__cause__, OSError)
        await client.close()
        return transport.closed

    assert _run(main())


def test_async_with_whose_body_succeeded_raises_an_unreported_failure():
    async def main():
        transport = SocketTransport()
        client = await _connect(transport)
        with pytest.raises(ClusterClosedError, match="background task failed"):
            async with client:
                await _kill_background_task(client, transport)
        return transport.closed

    assert _run(main())


# ---- 2. connect() waits on the socket ---------------------------------------------------

def test_connect_waits_on_the_socket_not_a_poll():
    """The OK arrives 100 ms after the connect: connect used to run a duty cycle every
    poll_interval_s (0.2 ms asked, ~1 ms in practice: the selector waits whole ms), ~100 of
    them; now it waits for the socket (or the next connect attempt's timer)."""
    async def main():
        transport = SocketTransport(latency_s=0.1)
        loop = asyncio.get_running_loop()
        start = loop.time()
        client = await _connect(transport)
        took = loop.time() - start
        polls = transport.polls
        assert client.is_connected
        await client.close()
        return took, polls

    took, polls = _run(main())
    assert 0.09 <= took < 0.5, took
    assert polls <= 5, f"connect ran {polls} duty cycles in {took:.3f}s waiting for one reply"


def test_a_connect_nobody_answers_times_out_on_time_without_polling():
    """Nothing answers: connect re-sends at each connect_attempt_timeout (100 ms here) and
    gives up at timeout_s, neither early nor a poll late, and wakes about once per attempt."""
    async def main():
        transport = SocketTransport(answer=False)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(NotConnectedError):
            await _connect(transport, timeout_s=0.35)
        return loop.time() - start, transport.polls, transport.sent, transport.closed

    took, polls, sent, closed = _run(main())
    assert 0.35 <= took < 0.45, took
    assert [type(m) for _, m in sent] == [P.SessionConnect] * 4, sent   # at 0, 0.1, 0.2, 0.3 s
    assert polls <= 12, f"connect ran {polls} duty cycles in {took:.3f}s"
    assert closed


class _ReaderTrackingLoop(asyncio.SelectorEventLoop):
    def __init__(self):
        super().__init__()
        self.readers: set = set()

    def add_reader(self, fd, callback, *args):
        self.readers.add(fd)
        return super().add_reader(fd, callback, *args)

    def remove_reader(self, fd):
        self.readers.discard(fd)
        return super().remove_reader(fd)


def test_a_cancelled_connect_removes_its_reader_and_closes_the_socket():
    transport = SocketTransport(answer=False)
    fd = transport.fileno()

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_connect(transport, timeout_s=30), 0.05)

    loop = _ReaderTrackingLoop()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), BOUND_S))
        assert fd not in loop.readers, "the cancelled connect left its reader on the loop"
    finally:
        loop.close()
    assert transport.closed


# ---- 3. the rest of the review ----------------------------------------------------------

def test_waits_on_a_dead_client_raise_the_cause_instead_of_returning_false_at_once():
    """wait_for_window/wait_for_egress returned False at once, without ever yielding, on a
    client whose task died: ``while not await client.wait_for_window(1.0): pass`` hung the
    event loop, and the cause was never said."""
    async def main():
        transport = SocketTransport()
        client = await _connect(transport)
        await _kill_background_task(client, transport)
        with pytest.raises(ClusterClosedError) as window:
            await client.wait_for_window(1.0)
        with pytest.raises(ClusterClosedError) as egress:
            await client.wait_for_egress(1.0)
        await client.close()                          # reported: quiet
        return window.value, egress.value

    window, egress = _run(main())
    assert isinstance(window.__cause__, OSError) and isinstance(egress.__cause__, OSError)


@pytest.mark.parametrize("closed_by", ["close", "cluster"])
def test_waits_on_a_closed_client_raise_not_return_false_without_yielding(closed_by):
    """Closed by close() or by the cluster: ``while not await client.wait_for_window(1.0)``
    never yielded to the event loop (False at once), so nothing else ever ran again."""
    async def main():
        transport = SocketTransport()
        client = await _connect(transport)
        if closed_by == "close":
            await client.close()
        else:
            transport._arrive(P.SessionEvent(0, SESSION_ID, P.EVENT_CLOSED, 0, 1, "closed by an operator"))
            for _ in range(100):
                if not client.is_connected:
                    break
                await asyncio.sleep(0.005)
        with pytest.raises(ClusterClosedError):
            await client.wait_for_window(1.0)
        with pytest.raises(ClusterClosedError):
            await client.wait_for_egress(1.0)
        await client.close()

    _run(main())


def test_offer_after_the_background_task_died_sends_nothing():
    """offer() used to send (the message could be applied) with nobody left to poll its
    response; now it returns CLOSED as on a closed client."""
    async def main():
        transport = SocketTransport()
        client = await _connect(transport)
        await _kill_background_task(client, transport)
        before = len(transport.sent)
        result = client.offer(b"x")
        sent = transport.sent[before:]
        with pytest.raises(ClusterClosedError):      # unreported until close()
            await client.close()
        return result, sent

    result, sent = _run(main())
    assert result == CLOSED and sent == []


def test_offer_and_request_while_close_is_under_way_send_nothing():
    """close() awaits the background task before it closes the session: an offer or a
    request made meanwhile (another task of a TaskGroup) was sent, possibly applied, and
    its response dropped."""
    async def main():
        transport = SocketTransport()
        client = await _connect(transport)
        closing = asyncio.create_task(client.close())
        await asyncio.sleep(0)                        # close() awaits the background task
        before = len(transport.sent)
        result = client.offer(b"x")
        with pytest.raises(ClusterClosedError):
            await client.request(b"y", timeout_s=1.0)
        sent = [m for _, m in transport.sent[before:] if type(m) is P.SessionMessage]
        await asyncio.wait_for(closing, 2.0)
        return result, sent

    result, sent = _run(main())
    assert result == CLOSED and sent == []


def test_a_request_whose_send_fails_leaves_no_correlation_awaited():
    """flush() raising (ENOBUFS) after the offer left the correlation id awaited in the core
    for ever: its reply would have been kept in the core's reply map, never taken."""
    async def main():
        transport = SocketTransport()
        client = await _connect(transport)
        transport.fail_flushes = 1
        with pytest.raises(OSError):
            await client.request(b"x", timeout_s=1.0)
        awaited, waiting = set(client._core._awaiting), dict(client._waiting)
        reply = await client.request(b"y", timeout_s=2.0)    # the client still works
        await asyncio.sleep(0.02)                              # x's reply has come too
        replies = dict(client._core._replies)
        await client.close()
        return awaited, waiting, reply, replies

    awaited, waiting, reply, replies = _run(main())
    assert awaited == set() and waiting == {} and replies == {}
    assert reply == b"re:y"


def test_cancelled_requests_and_waits_leave_nothing_behind():
    async def main():
        transport = SocketTransport()
        client = await _connect(transport)
        transport.answer = False
        request = asyncio.create_task(client.request(b"x", timeout_s=5.0))
        egress = asyncio.create_task(client.wait_for_egress(5.0))
        await asyncio.sleep(0.02)
        assert client._waiting and client._watchers
        correlation_id = next(iter(client._waiting))
        request.cancel()
        egress.cancel()
        await asyncio.wait([request, egress], timeout=2.0)
        state = (request.cancelled(), egress.cancelled(), dict(client._waiting), set(client._watchers),
                 client._core.is_awaiting(correlation_id), correlation_id in client._core._abandoned)
        await client.close()
        return state

    assert _run(main()) == (True, True, {}, set(), False, True)


def test_a_client_used_from_another_event_loop_raises_a_clear_error():
    """Connected in one loop (a fixture's), used in another (the test's): request() timed
    out after its whole timeout (no task of this loop completes it), offer() sent."""
    transport = SocketTransport()
    first = asyncio.new_event_loop()
    try:
        client = first.run_until_complete(asyncio.wait_for(_connect(transport), BOUND_S))

        async def elsewhere():
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(RuntimeError, match="event loop"):
                await client.request(b"x", timeout_s=1.0)
            with pytest.raises(RuntimeError, match="event loop"):
                await client.wait_for_egress(1.0)
            with pytest.raises(RuntimeError, match="event loop"):
                async with client:
                    pass
            before = len(transport.sent)
            with pytest.raises(RuntimeError, match="event loop"):
                client.offer(b"y")
            assert transport.sent[before:] == []
            return loop.time() - start

        took = asyncio.run(asyncio.wait_for(elsewhere(), BOUND_S))
        assert took < 0.5, took
        first.run_until_complete(asyncio.wait_for(client.close(), BOUND_S))   # its own loop: fine
        assert transport.closed
    finally:
        first.close()


def test_a_client_whose_loop_closed_can_still_be_closed_from_another_loop():
    """The loop it was connected in was closed without closing the client: request() from a
    new loop timed out after its whole timeout (offer() sent, then raised 'Event loop is
    closed'); now a clear RuntimeError at once, and close() from there just closes (it raised
    'Event loop is closed')."""
    transport = SocketTransport()
    first = asyncio.new_event_loop()
    client = first.run_until_complete(asyncio.wait_for(_connect(transport), BOUND_S))
    first.close()

    async def elsewhere():
        with pytest.raises(RuntimeError, match="closed"):
            await client.request(b"x", timeout_s=1.0)
        await client.close()

    asyncio.run(asyncio.wait_for(elsewhere(), BOUND_S))
    assert transport.closed


def test_close_from_another_loop_while_its_own_is_idle_closes_at_once():
    """close() awaited the background task, which only its own (idle) loop could run: it hung.
    Now it closes the socket at once and cancels the task, which ends (dropping its reader)
    when its loop runs again."""
    transport = SocketTransport()
    first = _ReaderTrackingLoop()
    try:
        client = first.run_until_complete(asyncio.wait_for(_connect(transport), BOUND_S))
        fd = transport.fileno()
        asyncio.run(asyncio.wait_for(client.close(), 2.0))
        assert transport.closed
        first.run_until_complete(asyncio.wait_for(asyncio.wait([client._task]), BOUND_S))
        assert client._task.cancelled() and fd not in first.readers
    finally:
        first.close()
