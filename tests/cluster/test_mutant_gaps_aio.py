"""Gaps found by mutation testing (round 2, /work/notes/trials/mutants2): each test here failed
with one mutant of aeronpy/aio.py applied, and passes on the real code. The cluster is the
one-member stand-in of test_review2_aio behind a real socket pair."""
from __future__ import annotations

import asyncio

import pytest

from aeronpy.cluster import protocol as P
from aeronpy.errors import ClusterClosedError, ClusterTimeoutError, MessageRejectedError
from tests.cluster.test_review2_aio import SESSION_ID, SocketTransport, _connect, _run


def _sent(transport: SocketTransport) -> list:
    return [int(bytes(m.payload)) for _, m in transport.sent if type(m) is P.SessionMessage]


def test_a_requests_timeout_counts_its_wait_in_line_for_window_room():
    """(mutant W01: the timer started when the request was sent.) timeout_s bounds the whole
    request(): 0.4 s in line plus a reply 0.4 s after the send is past a 0.6 s timeout."""
    async def main():
        transport = SocketTransport(latency_s=0.4)
        client = await _connect(transport, window_messages=1)
        try:
            first = asyncio.create_task(client.request(b"0", timeout_s=5.0))
            await asyncio.sleep(0)
            with pytest.raises(ClusterTimeoutError):
                await client.request(b"1", timeout_s=0.6)
            assert await first == b"re:0"
        finally:
            await client.close()

    _run(main())


class RefusingTransport(SocketTransport):
    """Refuses every message for service 9 as the cluster does a service it lacks."""

    def send(self, endpoint: str, message) -> None:
        if type(message) is P.SessionMessage and message.service_id == 9:
            self.sent.append((endpoint, message))
            refusal = P.SessionEvent(message.correlation_id, SESSION_ID, P.EVENT_ERROR, 0, 1,
                                     P.DETAIL_UNKNOWN_SERVICE)
            asyncio.get_running_loop().call_later(self.latency_s, self._arrive, refusal)
            return
        super().send(endpoint, message)


def test_a_request_the_cluster_refuses_fails_at_once_with_the_refusal():
    """(mutant W11: the refusal not handed to the waiting request.) No reply ever comes to a
    refused message: the request raises MessageRejectedError, not a timeout 3 s later."""
    async def main():
        transport = RefusingTransport(latency_s=0.01)
        client = await _connect(transport)
        try:
            with pytest.raises(MessageRejectedError, match="unknown service"):
                await client.request(b"1", service_id=9, timeout_s=3.0)
            assert await client.request(b"2", timeout_s=3.0) == b"re:2"
        finally:
            await client.close()

    _run(main())


def test_a_request_let_go_that_finds_the_room_taken_by_an_offer_stays_first_in_line():
    """(mutant W15: it went to the back.) The reply to 0 lets 1 go; before 1 runs, the task
    that got the reply offers 100 (the application's own offer takes the room). 1 then waits
    at the head of the line: it is sent before 2, which came after it."""
    async def main():
        transport = SocketTransport(latency_s=0.01)
        client = await _connect(transport, window_messages=1)
        try:
            async def then_offer():
                reply = await client.request(b"0", timeout_s=5.0)
                assert client.offer(b"100") > 0       # same step: before 1's task runs
                return reply
            first = asyncio.create_task(then_offer())
            await asyncio.sleep(0)
            second = asyncio.create_task(client.request(b"1", timeout_s=5.0))
            await asyncio.sleep(0)
            third = asyncio.create_task(client.request(b"2", timeout_s=5.0))
            assert await asyncio.gather(first, second, third) == [b"re:0", b"re:1", b"re:2"]
            return _sent(transport)
        finally:
            await client.close()

    assert _run(main()) == [0, 100, 1, 2]


def test_wait_for_egress_after_close_reports_responses_still_queued_then_raises():
    """(mutant W17: a closed client raised at once.) Responses queued before close() can
    still be polled: wait_for_egress says True while there are some, then raises."""
    async def main():
        transport = SocketTransport(latency_s=0.01)
        client = await _connect(transport)
        assert client.offer(b"5") > 0
        assert await client.wait_for_egress(3.0) is True
        await client.close()
        assert await client.wait_for_egress(0.1) is True
        got = []
        assert client.poll_egress(lambda cid, payload: got.append(bytes(payload))) == 1
        assert got == [b"re:5"]
        with pytest.raises(ClusterClosedError):
            await client.wait_for_egress(0.1)

    _run(main())
