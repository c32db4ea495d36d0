"""AsyncClusterClient runs a cycle in its socket reader's callback, and times a request out with
a timer on the request's own future (no ``asyncio.wait_for``).

Both take passes of the event loop off a reply's way to its awaiting request: the reader's
callback completes the future in the pass that saw the socket readable, where it used to wake
the background task first (bench/aio_latency.py: asyncio / blocking p50 ratio 1.18-1.37 before,
0.99-1.15 after, alternated in the same minutes). The stand-in cluster behind a real socket pair
is tests/cluster/test_review2_aio.py's."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest

from aeronpy import aio
from aeronpy.cluster import protocol as P
from aeronpy.cluster.codes import CLOSED
from aeronpy.errors import ClusterClosedError, ClusterTimeoutError

from .test_review2_aio import SESSION_ID, SocketTransport, _connect, _run


def _record_completions(client) -> list:
    """(ran inside a task?, requests completed) for every _complete_waiting call."""
    record = []
    real = client._complete_waiting

    def recording():
        before = len(client._waiting)
        real()
        record.append((asyncio.current_task() is not None, before - len(client._waiting)))
    client._complete_waiting = recording
    return record


class _QuietTransport(SocketTransport):
    """Says when its timers are due (in a second), as the UDP transport does: without it the
    client is taken to need a cycle every millisecond, and the task never waits long."""

    def next_due_ns(self) -> int:
        return time.monotonic_ns() + 1_000_000_000


def test_a_reply_completes_its_request_in_the_readers_callback_not_the_background_task(monkeypatch):
    # the task's tick while a request waits made long: only the reader can be first to the
    # reply (with 1 ms ticks the stand-in's reply, put in its inbox before the socket turns
    # readable, now and then meets a tick already queued for that pass)
    monkeypatch.setattr(aio, "TICK_S", 1.0)

    async def main():
        transport = SocketTransport(latency_s=0.005)
        client = await _connect(transport)
        record = _record_completions(client)
        replies = [await client.request(b"x%d" % i, timeout_s=2.0) for i in range(5)]
        await client.close()
        return replies, record

    replies, record = _run(main())
    assert replies == [b"re:x%d" % i for i in range(5)]
    completed_by = [in_task for in_task, completed in record if completed]
    # every reply was completed by the reader's callback (no current task); before, by the
    # background task that the reader's event woke
    assert completed_by == [False] * 5, record


def test_a_request_times_out_by_its_own_timer_and_a_late_reply_is_harmless():
    async def main():
        transport = SocketTransport(latency_s=0.3)      # answers, but after the timeout
        client = await _connect(transport)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ClusterTimeoutError) as caught:
            await client.request(b"late", timeout_s=0.05)
        took = loop.time() - start
        correlation_id = transport.sent[-1][1].correlation_id
        state = (dict(client._waiting), correlation_id in client._core._abandoned)
        await asyncio.sleep(0.4)                        # the late reply arrives and is dropped
        transport.latency_s = 0.0
        after = await client.request(b"next", timeout_s=2.0)
        await client.close()
        return str(caught.value), took, state, after, correlation_id

    message, took, state, after, correlation_id = _run(main())
    assert f"no reply to correlation id {correlation_id} within 0.05s" in message
    assert "may still be applied, never twice" in message
    assert 0.04 <= took < 0.3, took
    assert state == ({}, True)
    assert after == b"re:next"


def test_a_cycle_that_fails_in_the_reader_fails_the_client_as_the_tasks_own_failure(monkeypatch):
    monkeypatch.setattr(aio, "TICK_S", 1.0)     # the reader, not a tick, meets the datagram first

    async def main():
        transport = SocketTransport()
        client = await _connect(transport)
        transport.answer = False
        pending = asyncio.create_task(client.request(b"x", timeout_s=5.0))
        await asyncio.sleep(0.02)
        polls_in_task = []
        real_poll = transport.poll

        def poll(handler, limit=64):
            polls_in_task.append(asyncio.current_task() is not None)
            return real_poll(handler, limit)
        transport.poll = poll
        transport.fail_polls = 1
        transport._tx.send(b"!")                         # readable: the reader's cycle raises
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            await asyncio.wait_for(pending, 2.0)
            outcome = "replied"
        except ClusterClosedError as exc:
            outcome = exc
        took = loop.time() - start
        await asyncio.sleep(0.05)                        # no reader left calling in a loop
        polls = list(polls_in_task)
        try:
            await client.close()
        except ClusterClosedError:
            pass
        return outcome, took, polls, client._task

    outcome, took, polls, task = _run(main())
    assert isinstance(outcome, ClusterClosedError), outcome
    assert isinstance(outcome.__cause__, OSError) and "unreachable" in str(outcome.__cause__)
    assert took < 0.5, took
    assert polls[0] is False, polls                      # the failing cycle ran in the reader
    assert len(polls) <= 2, polls                        # and the reader was then let go
    assert task.done() and isinstance(task.exception(), OSError)


def test_work_done_in_the_reader_wakes_an_idle_background_task_for_its_timers():
    """An idle client's task waits up to IDLE_WAIT_MAX_S; a datagram handled by the reader may
    make a timer due sooner (a STATUS, a keepalive), so the reader wakes the task, which then
    waits no longer than the tick after work. Just after work the task is left asleep."""
    async def main():
        transport = _QuietTransport()
        client = await _connect(transport)
        loop = asyncio.get_running_loop()
        # idle: waits of IDLE_WAIT_MAX_S (50 ms) now, from about connect's end: half-way into one
        await asyncio.sleep(4.5 * aio.IDLE_WAIT_MAX_S)
        long_wait = client._wait_until_s - loop.time()
        client._wake.clear()
        transport.inbox.append(P.EgressMessage(SESSION_ID, 0, 0, b"pushed"))
        transport._tx.send(b"!")
        got = await client.wait_for_egress(1.0)           # told by the reader itself
        woken_idle = client._wake.is_set() or client._wait_until_s - loop.time() <= aio.TICK_S
        pushed = []
        client.poll_egress(lambda _cid, payload: pushed.append(bytes(payload)))
        await client.close()
        return long_wait, got, woken_idle, pushed

    long_wait, got, woken_idle, pushed = _run(main())
    assert long_wait > aio.TICK_S, long_wait
    assert got and pushed == [b"pushed"]
    assert woken_idle


@pytest.mark.parametrize("requests_pending", [True, False])
def test_a_failure_in_the_reader_is_not_lost_to_a_close_that_cancels_the_task_first(requests_pending):
    """The reader's cycle fails and, in the same pass of the loop, another task's close()
    cancels the background task before it could raise the failure (a review's reproduction:
    a second socket's reader releases the closing task). The failure is the client's at once:
    a waiting request fails with it as the cause, and with none waiting close() raises it."""
    async def main():
        transport = SocketTransport()
        client = await _connect(transport)
        loop = asyncio.get_running_loop()
        transport.answer = False
        pending = None
        if requests_pending:
            pending = asyncio.create_task(client.request(b"x", timeout_s=5.0))
        await asyncio.sleep(0.02)
        a, b = socket.socketpair()
        a.setblocking(False)
        go = loop.create_future()

        def other_reader():
            loop.remove_reader(a.fileno())
            a.recv(10)
            if not go.done():
                go.set_result(None)

        async def closer():
            await go
            try:
                await client.close()
                return None
            except ClusterClosedError as exc:
                return exc

        closing = asyncio.create_task(closer())
        await asyncio.sleep(0)
        loop.add_reader(a.fileno(), other_reader)
        transport.fail_polls = 1
        b.send(b"!")
        transport._tx.send(b"!")                     # both readable in the same select
        closed_with = await closing
        request_error = None
        if pending is not None:
            try:
                await pending
            except ClusterClosedError as exc:
                request_error = exc
        later = client.offer(b"later")
        a.close()
        b.close()
        return closed_with, request_error, later

    closed_with, request_error, later = _run(main())
    told = request_error if requests_pending else closed_with
    assert isinstance(told, ClusterClosedError), (closed_with, request_error)
    assert isinstance(told.__cause__, OSError) and "unreachable" in str(told.__cause__)
    if requests_pending:
        assert closed_with is None          # told once, to the request: close() does not repeat it
    assert later == CLOSED
