"""A minimal simulated client with the shape of ``aeronpy.ClusterClient``.

It numbers its messages (correlation ids 1, 2, ...), sends them to the member it believes
leads, follows redirects, re-sends everything unanswered when no reply comes within
``retry_ms`` (trying the next member if the current one stays silent), and keeps replies for
``poll_egress``/``request``. The replicated side applies each number once, in order, so a
re-sent message is never applied twice. The real sessions layer replaces this later.
"""
from __future__ import annotations

import aeronpy
from aeronpy.errors import ClusterClosedError, ClusterTimeoutError, NotConnectedError

MS = 1_000_000


class SimClient:
    def __init__(self, sim, client_id: int, retry_ms: float = 100.0):
        self._sim = sim
        self.client_id = client_id
        self._retry_ns = int(retry_ms * MS)
        self._next_correlation_id = 1
        self._pending: dict = {}          # correlation id -> (service_id, body), in offer order
        self._replies: dict = {}          # correlation id -> reply not yet claimed
        self._target = 0
        self._heard_since_retry = False
        self._retry_scheduled = False
        self._closed = False
        self.resends = 0

    # ------------------------------------------------------------------ ClusterClient API
    def offer(self, payload, service_id: int = 0) -> int:
        if self._closed:
            return aeronpy.CLOSED
        correlation_id = self._next_correlation_id
        self._next_correlation_id += 1
        self._pending[correlation_id] = (service_id, bytes(payload))
        self._send(correlation_id)
        self._ensure_retry_timer()
        return correlation_id

    def poll_egress(self, on_message) -> int:
        replies, self._replies = self._replies, {}
        for correlation_id, payload in replies.items():
            on_message(correlation_id, memoryview(payload))
        return len(replies)

    def request(self, payload, service_id: int = 0, timeout_s: float = 1.0) -> bytes:
        if self._closed:
            raise ClusterClosedError("client is closed")
        correlation_id = self.offer(payload, service_id)
        if correlation_id <= 0:
            raise NotConnectedError("client could not offer")
        if not self._sim.run_until(lambda: correlation_id in self._replies, timeout_s * 1000.0):
            raise ClusterTimeoutError(f"no reply to correlation id {correlation_id} within {timeout_s}s "
                                      f"of simulated time ({self._sim.describe()})")
        return self._replies.pop(correlation_id)

    def close(self) -> None:
        self._closed = True
        self._pending.clear()

    @property
    def pending(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ network side
    def _send(self, correlation_id: int) -> None:
        service_id, body = self._pending[correlation_id]
        self._sim._client_send(self.client_id, self._target, correlation_id, service_id, body)

    def _ensure_retry_timer(self) -> None:
        if not self._retry_scheduled:
            self._retry_scheduled = True
            self._sim._schedule_in(self._retry_ns, self._on_retry_timer)

    def _on_retry_timer(self) -> None:
        self._retry_scheduled = False
        if self._closed or not self._pending:
            return
        if not self._heard_since_retry:
            self._target = (self._target + 1) % self._sim.member_count
        self._heard_since_retry = False
        for correlation_id in list(self._pending):
            self.resends += 1
            self._send(correlation_id)
        self._ensure_retry_timer()

    def on_reply(self, member_id: int, correlation_id: int, payload: bytes) -> None:
        self._heard_since_retry = True
        self._target = member_id
        if self._pending.pop(correlation_id, None) is not None and payload is not None:
            self._replies[correlation_id] = payload   # None: applied, reply evicted from the cache

    def on_redirect(self, member_id: int, correlation_id: int, leader_id) -> None:
        if leader_id is None or leader_id == member_id:
            return
        self._heard_since_retry = True
        if leader_id != self._target:
            self._target = leader_id
            if correlation_id in self._pending:
                self._send(correlation_id)
