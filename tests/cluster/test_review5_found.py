"""Review 5 (eb29889 window bounded in bytes, 76638b3 member probes): what was found (all
three fixed; each test failed before).

1. AsyncClusterClient knows only the window's message count: wait_for_window() and the
   request() line (_pass_turns) take "fewer than window_messages in flight" for room, while
   offer() also refuses by the window's bytes. wait_for_window() then returns True at once
   with offer() still BACK_PRESSURED, and a request() blocked by the byte bound is let go at
   once, refused, let go ... without ever yielding: the event loop is blocked until its
   timeout, the reply that would free the room cannot be read, and it times out unsent.
2. A UDP client given one endpoint (a single member, or a name in front of the cluster) has
   _probe_interval_ns set but nobody to probe: _probe_members returns before it moves
   _probe_due_ns, so next_due_ns() says "now" (0) for as long as a message is in flight.
3. The probe interval is set from ClientConfig.keepalive_interval_ns (1 s) before connect, not
   from the keepalive interval the session terms lower it to (a third of session_timeout_ms):
   with session_timeout_ms=900 (valid with fast failover settings) each follower hears the
   client every 1 s, while a member forgets a client silent for max(session timeout, 1 s) --
   the probes stop holding the client's place at the member that would announce itself next.
"""
from __future__ import annotations

import asyncio

from aeronpy._codec import decode
from aeronpy.client import WINDOW_BYTES_HEADROOM, ClusterClient
from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientConfig, ClientCore
from aeronpy.cluster.codes import BACK_PRESSURED
from tests.cluster.test_review2_aio import SocketTransport, _connect, _run

MS = 1_000_000
WINDOW_BYTES = 3000            # the byte bound these clients get: one 2,000-byte message fits
PAYLOAD = 2000


class EncodedSocketTransport(SocketTransport):
    """test_review2_aio's stand-in, sending encoded session messages as UdpClientTransport does
    (so ClusterClient bounds the window in bytes: at WINDOW_BYTES)."""

    sends_encoded = True
    send_buffer_bytes = WINDOW_BYTES_HEADROOM + WINDOW_BYTES

    def send(self, endpoint, message):
        super().send(endpoint, decode(message) if type(message) is bytes else message)


def test_wait_for_window_waits_for_room_by_bytes_too():
    async def main():
        transport = EncodedSocketTransport(latency_s=0.2)
        client = await _connect(transport)
        try:
            assert client._core._window_bytes_max == WINDOW_BYTES
            assert client.offer(b"a" * PAYLOAD) > 0
            assert client.offer(b"b" * PAYLOAD) == BACK_PRESSURED      # by bytes: 1 in flight
            room = await client.wait_for_window(5.0)
            return room, client.offer(b"b" * PAYLOAD)
        finally:
            await client.close()

    room, again = _run(main())
    assert room
    assert again != BACK_PRESSURED, "wait_for_window said there was room; offer() refused"


def test_a_request_held_by_the_byte_bound_waits_without_blocking_the_loop():
    async def main():
        transport = EncodedSocketTransport(latency_s=0.2)
        client = await _connect(transport)
        ticks = [0]
        stop = [False]

        async def ticker():
            for _ in range(100_000):          # bounded; each pass yields to the loop
                if stop[0]:
                    return
                ticks[0] += 1
                await asyncio.sleep(0.005)

        try:
            assert client.offer(b"a" * PAYLOAD) > 0
            task = asyncio.create_task(ticker())
            await asyncio.sleep(0)
            before = ticks[0]
            try:
                reply = await client.request(b"b" * PAYLOAD, timeout_s=1.0)
            except Exception as exc:          # the blocked loop: ClusterTimeoutError, unsent
                reply = exc
            during = ticks[0] - before
            stop[0] = True
            await task
            return reply, during
        finally:
            await client.close()

    reply, during = _run(main())
    assert reply == b"re:" + b"b" * PAYLOAD, reply
    assert during > 0, "the event loop did not run another task while request() waited"


class _NoNetwork:
    sends_encoded = True              # as UdpClientTransport: ClusterClient sets the probes

    def send(self, endpoint, message):
        pass

    def poll(self, handler, limit=64):
        return 0


def _connected_client(endpoints, session_timeout_ms=10_000):
    core = ClientCore(endpoints, "me:5", ClientConfig(), encoded_messages=True)
    ClusterClient(core, _NoNetwork(), clock=lambda: 0)
    core.connect(0)
    [(_, connect)] = core.take_outgoing()
    core.on_egress(P.SessionEvent(connect.correlation_id, 42, P.EVENT_OK, 0, 3,
                                  endpoints.split(",")[0] +
                                  f";session_timeout_ms={session_timeout_ms}"), 0)
    assert core.is_connected
    return core


def test_a_busy_client_with_one_endpoint_is_not_due_at_once_for_ever():
    core = _connected_client("m0:1")
    assert core.offer(b"x", 0, 1 * MS) > 0
    for now in (2 * MS, 3 * MS, 4 * MS):      # ticks with nothing due: nothing to send
        core.tick(now)
        core.take_outgoing()
        assert core.next_due_ns() > now, f"due at once ({core.next_due_ns()}) at {now}"


def test_control_a_busy_client_with_three_endpoints_is_due_later():
    core = _connected_client("m0:1,m1:1,m2:1")
    assert core.offer(b"x", 0, 1 * MS) > 0
    for now in (2 * MS, 3 * MS, 4 * MS):
        core.tick(now)
        core.take_outgoing()
        assert core.next_due_ns() > now


def test_each_member_is_probed_once_per_the_sessions_keepalive_interval():
    core = _connected_client("m0:1,m1:1,m2:1", session_timeout_ms=900)
    keepalive_ns = core._keepalive_interval_ns
    assert keepalive_ns == 300 * MS                      # lowered at connect: 900 ms / 3
    step, heard = 10 * MS, {"m1:1": [], "m2:1": []}
    for now in range(1 * MS, 3000 * MS, step):           # 3 s, 300 steps; acked every step
        if not core._window:
            assert core.offer(b"x", 0, now) > 0
        core.tick(now)
        for endpoint, message in core.take_outgoing():
            if type(message) is P.SessionKeepAlive and endpoint in heard:
                heard[endpoint].append(now)
        core._release(core._next_seq - 1, now, 3)        # the leader acknowledges it all
    gaps = {ep: max(b - a for a, b in zip(times, times[1:])) for ep, times in heard.items()}
    assert all(len(times) >= 2 for times in heard.values()), heard
    assert max(gaps.values()) <= keepalive_ns + step, (
        f"a member went {max(gaps.values()) // MS} ms without hearing from the client; its "
        f"keepalive interval is {keepalive_ns // MS} ms")
