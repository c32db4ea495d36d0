"""A gateway author's trial of AsyncClusterClient:

- Requests that found the send window full all woke at every cycle that freed room and raced
  for it: the first to wait were sent last (or timed out unsent while later ones went), and
  each slot cost a failed offer per waiter (30 per request with 16,000 tasks waiting).
- close() under waiting requests told each "the client was closed", whether it had been sent
  (and perhaps applied: resubmitting it would double it) or not.
- close() from another event loop left the background task to be collected pending, which
  asyncio logs as an error.
- A session lost because the event loop was blocked was explained with the blocking
  client's advice (call poll_egress), not the blocked loop.

The cluster is the one-member stand-in of test_review2_aio behind a real socket pair.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest

from aeronpy.aio import AsyncClusterClient
from aeronpy.cluster import protocol as P
from aeronpy.errors import ClusterClosedError, ClusterTimeoutError
from tests.cluster.test_review2_aio import SESSION_ID, SocketTransport, _connect, _run


def _index(message) -> int:
    return int(bytes(message.payload))


async def _burst(window: int, tasks: int, latency_s: float = 0.002):
    transport = SocketTransport(latency_s=latency_s)
    client = await _connect(transport, window_messages=window)
    try:
        replies = await asyncio.gather(*(client.request(b"%d" % i, timeout_s=8.0)
                                         for i in range(tasks)))
        sent = [_index(m) for _, m in transport.sent if type(m) is P.SessionMessage]
        return (replies, sent, client.counters.get("back_pressured", 0),
                getattr(client, "_turns_out", 0))
    finally:
        await client.close()


def test_requests_waiting_for_window_room_are_sent_in_the_order_they_came():
    tasks = 400
    replies, sent, back_pressured, turns_out = _run(_burst(window=4, tasks=tasks))
    assert replies == [b"re:%d" % i for i in range(tasks)]
    assert sent == list(range(tasks))            # first come, first sent (no re-sends here)
    # one refused offer at most per request that had to wait: none per cycle that freed room
    # (the race of every waiter took 1.5 to 30 per request in the trial)
    assert back_pressured <= tasks
    assert turns_out == 0


def test_a_request_whose_time_runs_out_in_line_is_not_sent_and_the_line_goes_on():
    async def main():
        transport = SocketTransport(latency_s=0.3)
        client = await _connect(transport, window_messages=1)
        try:
            first = asyncio.create_task(client.request(b"0", timeout_s=5.0))
            await asyncio.sleep(0)
            impatient = asyncio.create_task(client.request(b"1", timeout_s=0.05))
            patient = asyncio.create_task(client.request(b"2", timeout_s=5.0))
            with pytest.raises(ClusterTimeoutError, match="was not sent"):
                await impatient
            assert await first == b"re:0" and await patient == b"re:2"
            sent = [_index(m) for _, m in transport.sent if type(m) is P.SessionMessage]
            return sent, client._turns_out
        finally:
            await client.close()

    sent, turns_out = _run(main())
    assert sent == [0, 2] and turns_out == 0


def test_a_request_let_go_then_cancelled_passes_its_turn_on():
    """Cancelled after the cycle let it go but before it ran: its room goes to the next in
    line (else that one waits for a cycle that frees more, which may never come)."""
    async def main():
        transport = SocketTransport(latency_s=0.05)
        client = await _connect(transport, window_messages=1)
        try:
            first = asyncio.create_task(client.request(b"0", timeout_s=5.0))
            await asyncio.sleep(0)
            second = asyncio.create_task(client.request(b"1", timeout_s=5.0))
            third = asyncio.create_task(client.request(b"2", timeout_s=5.0))
            await asyncio.sleep(0)
            real = client._pass_turns
            cancelled = []

            def pass_then_cancel_the_one_let_go():
                real()
                if client._turns_out and not cancelled:
                    cancelled.append(second.cancel())
            client._pass_turns = pass_then_cancel_the_one_let_go
            assert await first == b"re:0"
            with pytest.raises(asyncio.CancelledError):
                await second
            reply = await asyncio.wait_for(third, 2.0)
            return cancelled, reply, client._turns_out
        finally:
            await client.close()

    cancelled, reply, turns_out = _run(main())
    assert cancelled == [True] and reply == b"re:2" and turns_out == 0


def test_close_tells_each_waiting_request_whether_it_was_sent():
    async def main():
        transport = _Stand_in(answer_messages=False)  # connects, then never answers
        client = await _connect(transport, window_messages=2)
        requests = [asyncio.create_task(client.request(b"%d" % i, timeout_s=5.0))
                    for i in range(5)]
        await asyncio.sleep(0.02)
        await client.close()
        return [str(e) for e in await asyncio.gather(*requests, return_exceptions=True)]

    errors = _run(main())
    assert all("may have been applied" in e for e in errors[:2]), errors
    assert all("before the request was sent" in e and "not applied" in e
               for e in errors[2:]), errors


class _Stand_in(SocketTransport):
    """The stand-in, telling ``session_timeout_ms`` at connect and answering messages only
    when ``answer_messages``."""

    def __init__(self, session_timeout_ms: int = 60_000, answer_messages: bool = True):
        super().__init__()
        self.session_timeout_ms = session_timeout_ms
        self.answer_messages = answer_messages

    def send(self, endpoint, message):
        if type(message) is P.SessionConnect:
            self.sent.append((endpoint, message))
            reply = P.SessionEvent(message.correlation_id, SESSION_ID, P.EVENT_OK, 0, 1,
                                   P.format_session_terms("m0:9000", {
                                       "session_timeout_ms": self.session_timeout_ms,
                                       "reply_cache_messages": 256,
                                       "max_message_bytes": 1 << 16}))
            asyncio.get_running_loop().call_later(0, self._arrive, reply)
        elif self.answer_messages:
            super().send(endpoint, message)
        else:
            self.sent.append((endpoint, message))


def test_a_session_lost_to_a_blocked_event_loop_says_so():
    async def main():
        client = await _connect(_Stand_in(session_timeout_ms=300))
        try:
            assert await client.request(b"0") == b"re:0"
            time.sleep(0.5)                   # a blocking call in a coroutine
            with pytest.raises(ClusterClosedError) as caught:
                await client.request(b"1")
            return str(caught.value)
        finally:
            await client.close()

    message = _run(main())
    assert "session expired" in message and "event loop" in message
    assert "poll_egress" not in message


def test_close_from_another_loop_leaves_no_pending_task_to_complain(caplog):
    loop = asyncio.new_event_loop()
    client = loop.run_until_complete(_connect(SocketTransport()))
    assert loop.run_until_complete(client.request(b"0")) == b"re:0"
    caplog.set_level(logging.ERROR, logger="asyncio")
    asyncio.run(client.close())               # the client's own loop has stopped, not closed
    loop.close()
    del client, loop
    gc.collect()
    assert not [r for r in caplog.records if "destroyed but it is pending" in r.getMessage()]


# ---- a review of the line (it broke two things) ------------------------------------------

class _ClosingAfterFirst(SocketTransport):
    """Answers message 0, then closes the session (EVENT_CLOSED) instead of answering."""

    def send(self, endpoint, message):
        if type(message) is P.SessionMessage and _index(message) >= 1:
            self.sent.append((endpoint, message))
            if _index(message) == 1:
                event = P.SessionEvent(0, SESSION_ID, P.EVENT_CLOSED, 0, 1, "closed by admin")
                asyncio.get_running_loop().call_later(0.05, self._arrive, event)
            return
        super().send(endpoint, message)


def test_requests_in_line_fail_at_once_when_the_cluster_closes_the_session():
    # they waited out their whole timeout and then said "send window full"
    async def main():
        client = await _connect(_ClosingAfterFirst(), window_messages=1)
        try:
            assert await client.request(b"0") == b"re:0"
            started = time.monotonic()
            tasks = [asyncio.create_task(client.request(b"%d" % i, timeout_s=3.0))
                     for i in range(1, 5)]
            errors = await asyncio.gather(*tasks, return_exceptions=True)
            return errors, time.monotonic() - started
        finally:
            await client.close()

    errors, took = _run(main())
    assert all(isinstance(e, ClusterClosedError) for e in errors), errors
    assert took < 2.0, took


def test_a_request_let_go_keeps_its_place_before_a_new_one():
    """A reply wakes its task before the request its cycle let go runs: that task's next
    request took the room (sent order [0, 2, 1]), and a task sending one after another could
    keep a waiter out until its timeout."""
    async def main():
        transport = SocketTransport(latency_s=0.01)
        client = await _connect(transport, window_messages=1)
        try:
            async def chain():
                await client.request(b"0", timeout_s=5.0)
                return await client.request(b"2", timeout_s=5.0)
            first = asyncio.create_task(chain())
            await asyncio.sleep(0)
            second = asyncio.create_task(client.request(b"1", timeout_s=5.0))
            await asyncio.gather(first, second)
            return [_index(m) for _, m in transport.sent if type(m) is P.SessionMessage]
        finally:
            await client.close()

    assert _run(main()) == [0, 1, 2]


def test_a_waiter_is_not_kept_out_by_a_task_sending_in_a_loop():
    async def main():
        transport = SocketTransport(latency_s=0.002)
        client = await _connect(transport, window_messages=1)
        stop = False

        async def busy():
            i = 1000
            while not stop:
                await client.request(b"%d" % i, timeout_s=5.0)
                i += 1
        loop_task = asyncio.create_task(busy())
        try:
            await asyncio.sleep(0.01)
            return await client.request(b"1", timeout_s=1.0)
        finally:
            stop = True
            await loop_task
            await client.close()

    assert _run(main()) == b"re:1"
