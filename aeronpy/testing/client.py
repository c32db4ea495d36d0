"""The simulated client: the real ``ClientCore`` (the session logic ``ClusterClient`` uses)
over a ``ClientTransport`` on the simulated network.

``SimClient`` has ``ClusterClient``'s surface (docs/programming.md section 5): ``offer``, ``poll_egress``,
``request``, ``close``, with the same return codes and exceptions; ``request`` (and connecting,
in ``SimCluster.client()``) run the *simulation* until the reply arrives or the simulated
timeout passes. The client is driven like an application that polls it in its own duty cycle:
a tick every ``tick_ms`` of simulated time (keepalives, re-sends, connect retries) and a poll
whenever egress arrives, so it keeps working while a test only calls ``sim.run_for``.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from aeronpy.cluster.client_core import ClientCore, ClientState, check_service_id, check_timeout
from aeronpy.cluster.codes import BACK_PRESSURED, CLOSED, NOT_CONNECTED
from aeronpy.errors import ClusterClosedError, ClusterTimeoutError, NotConnectedError

MS = 1_000_000


class SimClientTransport:
    """``aeronpy.client.ClientTransport`` over ``SimNetwork``: ingress to a member's endpoint
    is scheduled with the network's drop/duplicate/delay/partition model; egress lands in
    ``inbox`` (the simulator delivers it) until :meth:`poll` hands it over."""

    def __init__(self, sim, client_id: int, local_endpoint: str):
        self._sim = sim
        self.client_id = client_id
        self.local_endpoint = local_endpoint
        self.inbox: deque = deque()
        self.closed = False
        self.sent = 0

    def send(self, endpoint: str, message: object) -> None:
        if self.closed:
            return
        self.sent += 1
        self._sim.send_ingress(self.client_id, endpoint, message)

    def poll(self, handler: Callable[[object], None], limit: int = 64) -> int:
        inbox = self.inbox
        n = 0
        while inbox and n < limit:
            handler(inbox.popleft())
            n += 1
        return n

    def close(self) -> None:
        self.closed = True
        self.inbox.clear()


class SimClient:
    """A client session in the simulation (see the module docstring)."""

    def __init__(self, sim, client_id: int, core: ClientCore, transport: SimClientTransport, tick_ns: int):
        self._sim = sim
        self.client_id = client_id
        self.core = core
        self.transport = transport
        self._tick_ns = tick_ns
        self._closed = False
        # (correlation id, reply) handed to the application: a service may answer a message
        # several times (ModuleConfig.reply_cache_replies_per_message), so only the same reply
        # handed over twice is a duplicate delivery
        self.delivered: set = set()
        self.duplicate_deliveries = 0

    # ------------------------------------------------------------------ the client's duty cycle
    def start(self) -> None:
        self.core.connect(self._sim.now_ns)
        self._flush()
        self._sim._schedule_in(self._tick_ns, self._on_tick)

    def _flush(self) -> int:
        out = self.core.take_outgoing()
        send = self.transport.send
        for endpoint, message in out:
            send(endpoint, message)
        return len(out)

    def do_work(self) -> int:
        now_ns = self._sim.now_ns
        core = self.core
        work = self.transport.poll(lambda message: core.on_egress(message, now_ns), 1 << 30)
        core.tick(now_ns)
        return work + self._flush()

    def _on_tick(self) -> None:
        if self._closed:
            return
        self.do_work()
        self._sim._schedule_in(self._tick_ns, self._on_tick)

    def on_egress_arrived(self, message) -> None:
        """The simulator delivered an egress message: poll at once, as a busy client would."""
        if self._closed:
            return
        self.transport.inbox.append(message)
        self.do_work()

    def _note_delivery(self, correlation_id: int, payload) -> None:
        delivery = (correlation_id, bytes(payload))
        if delivery in self.delivered:
            self.duplicate_deliveries += 1
            self._sim.checker.fail(f"client {self.client_id} got a second reply to correlation id "
                                   f"{correlation_id} equal to one it was handed before: "
                                   f"{delivery[1][:40]!r}")
        self.delivered.add(delivery)

    # ------------------------------------------------------------------ ClusterClient's API
    @property
    def session_id(self) -> int:
        return self.core.session_id

    @property
    def is_connected(self) -> bool:
        return self.core.is_connected

    @property
    def leader_endpoint(self):
        return self.core.leader_endpoint

    @property
    def counters(self) -> dict:
        return dict(self.core.counters)

    @property
    def pending(self) -> int:
        """Messages offered but not yet acknowledged by the cluster (the resend window)."""
        return self.core.unacknowledged

    def offer(self, payload, service_id: int = 0) -> int:
        """> 0: correlation id; < 0: aeronpy.BACK_PRESSURED, NOT_CONNECTED or CLOSED."""
        service_id = check_service_id(service_id)        # as ClusterClient.offer
        result = self.core.offer(payload, service_id, self._sim.now_ns)
        if result > 0:
            self._flush()
        return result

    def take_rejections(self) -> list:
        """As ClusterClient.take_rejections."""
        return self.core.take_rejections()

    def poll_egress(self, on_message: Callable[[int, memoryview], None], limit: int = 1 << 30) -> int:
        self.do_work()

        def deliver(correlation_id, payload):
            if correlation_id:
                self._note_delivery(correlation_id, payload)
            on_message(correlation_id, payload)
        return self.core.poll(deliver, limit)

    def request(self, payload, service_id: int = 0, timeout_s: float = 1.0) -> bytes:
        """Offer and run the simulation until the reply, or raise after ``timeout_s`` simulated."""
        check_timeout(timeout_s)
        service_id = check_service_id(service_id)        # as ClusterClient.request
        sim = self._sim
        core = self.core
        deadline_ns = sim.now_ns + int(timeout_s * 1e9)
        while True:
            correlation_id = core.offer(payload, service_id, sim.now_ns, expect_reply=True)
            if correlation_id != BACK_PRESSURED:
                break
            if sim.now_ns >= deadline_ns:
                raise ClusterTimeoutError(f"send window full for {timeout_s}s of simulated time ({sim.describe()})")
            sim.run_for(min(self._tick_ns, deadline_ns - sim.now_ns) / MS)
        if correlation_id == NOT_CONNECTED:
            raise NotConnectedError(f"not connected to the cluster ({sim.describe()})")
        if correlation_id == CLOSED:
            raise ClusterClosedError(f"{core.error or 'closed'} ({sim.describe()})")
        self._flush()
        sim.run_until(lambda: not core.is_awaiting(correlation_id), (deadline_ns - sim.now_ns) / MS)
        reply = core.take_reply(correlation_id)
        if reply is not None:
            self._note_delivery(correlation_id, reply)
            return reply
        error = core.take_error(correlation_id)
        if error is not None:           # refused unapplied (too large, unknown service id)
            raise error
        core.abandon(correlation_id)
        if core.state is ClientState.CLOSED:
            raise ClusterClosedError(f"{core.error or 'closed'} ({sim.describe()})")
        raise ClusterTimeoutError(f"no reply to correlation id {correlation_id} within {timeout_s}s of "
                                  f"simulated time; it may still be applied, never twice ({sim.describe()})")

    def close(self) -> None:
        if self._closed:
            return
        self.core.close(self._sim.now_ns)
        self._flush()
        self._closed = True
        self.transport.close()
