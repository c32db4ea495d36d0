"""``AsyncClusterClient``: the cluster client for asyncio applications.

``await client.request(...)`` suspends only the calling task; one background task runs the
client's duty cycle (poll the network, keepalives, re-sends) and completes the futures of
waiting requests. Same session logic and guarantees as :class:`aeronpy.ClusterClient`.

Between cycles with nothing to do the task waits on the event loop for the client's socket to
become readable, or ``TICK_S`` for the client's timers, like the blocking client's
``backoff()``: an idle client costs about 1,000 wake-ups a second, and a reply is handled
when it arrives. A transport without a socket (the in-memory ones), or an event loop without
socket readers (Windows' proactor loop), is polled every ``poll_interval_s`` instead.
"""
from __future__ import annotations

import asyncio
from typing import Callable, Optional

from aeronpy.client import ClusterClient
from aeronpy.cluster.client_core import ClientState, check_timeout
from aeronpy.cluster.codes import BACK_PRESSURED, CLOSED, NOT_CONNECTED
from aeronpy.errors import ClusterClosedError, ClusterTimeoutError, NotConnectedError

__all__ = ["AsyncClusterClient"]

TICK_S = 0.001      # longest wait between duty cycles with no datagram (the client's timers)


class AsyncClusterClient:
    """The cluster client for asyncio: ``client = await AsyncClusterClient.connect(...)``, then
    ``await client.request(...)``. The same session logic and guarantees as `ClusterClient`
    (docs/programming.md section 7), driven from the event loop."""

    def __init__(self, client: ClusterClient, poll_interval_s: float = 0.0002):
        self._client = client
        self._core = client._core
        self._poll_interval_s = poll_interval_s
        self._waiting: dict[int, asyncio.Future] = {}
        self._task: Optional[asyncio.Task] = None
        self._closed = False
        self._wake: Optional[asyncio.Event] = None   # ends the background task's wait
        self._watchers: set = set()      # events of wait_for_egress/wait_for_window callers
        self._failure: Optional[str] = None   # why the background task ended, if not by close()
        self._closed_event: Optional[asyncio.Event] = None   # set once close() has finished

    @classmethod
    async def connect(cls, endpoints, timeout_s: float = 5.0, *, poll_interval_s: float = 0.0002,
                      **options) -> "AsyncClusterClient":
        """Connect without blocking the event loop; options as ClusterClient.connect."""
        loop = asyncio.get_running_loop()        # no loop: refused before a socket is open
        client = ClusterClient.open(endpoints, **options)
        deadline = loop.time() + timeout_s
        try:
            while client._core.state is ClientState.CONNECTING:
                if loop.time() >= deadline:
                    raise NotConnectedError(client._no_session_why(endpoints, timeout_s))
                if not client.do_work():
                    await asyncio.sleep(poll_interval_s)
        except BaseException:
            # cancelled (asyncio.wait_for, a task's cancel) or failed while waiting: the
            # transport, a socket for a real client, is closed, not left to the collector
            client._transport.close()
            raise
        if client._core.state is not ClientState.CONNECTED:
            client._transport.close()
            raise client._core.error or NotConnectedError("connect failed")
        self = cls(client, poll_interval_s)
        self._task = asyncio.create_task(self._run(), name="aeronpy-client")
        self._task.add_done_callback(self._task_done)
        return self

    def _task_done(self, task: asyncio.Task) -> None:
        """The background task ended: unless by close(), nothing completes requests any more,
        so the waiting ones fail now (not at their timeouts) and later ones at once."""
        if task.cancelled():
            cause = None
            why = "the client's background task was cancelled (its event loop ended?)"
        else:
            cause = task.exception()      # retrieved: no "exception was never retrieved"
            why = f"the client's background task failed: {cause!r}"
        if self._closed:
            return
        self._failure = why
        for future in self._waiting.values():
            if not future.done():
                error = ClusterClosedError(why)
                error.__cause__ = cause
                future.set_exception(error)
        self._tell_watchers()

    async def _run(self) -> None:
        fileno = getattr(self._client._transport, "fileno", None)
        fd = -1 if fileno is None else fileno()
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        if fd >= 0:
            try:
                loop.add_reader(fd, readable.set)   # level-triggered: set again while data waits
            except NotImplementedError:            # a loop without readers (Windows' proactor)
                fd = -1
        if fd < 0:
            while not self._closed:
                work = self._client.do_work()
                self._complete_waiting()
                if work:
                    self._tell_watchers()
                await asyncio.sleep(0 if work else self._poll_interval_s)
            return
        self._wake = readable
        try:
            while not self._closed:
                work = self._client.do_work()
                self._complete_waiting()
                if work:
                    self._tell_watchers()
                    await asyncio.sleep(0)    # let other tasks run between busy cycles
                    continue
                readable.clear()
                tick = loop.call_later(TICK_S, readable.set)
                try:
                    await readable.wait()
                finally:
                    tick.cancel()
        finally:
            loop.remove_reader(fd)

    def _tell_watchers(self) -> None:
        for event in self._watchers:
            event.set()

    async def _wait_until(self, ready: Callable[[], bool], timeout_s: float) -> bool:
        check_timeout(timeout_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            event = asyncio.Event()
            self._watchers.add(event)         # before the check: a cycle after it sets it
            try:
                if ready():
                    return True
                if self._closed or self._failure or self._core.state is ClientState.CLOSED:
                    return False
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except asyncio.TimeoutError:
                    return ready()
            finally:
                self._watchers.discard(event)

    async def wait_for_egress(self, timeout_s: float) -> bool:
        """Wait, without blocking the event loop, until a response no ``request`` claimed is
        queued for ``poll_egress``, or ``timeout_s`` passes; True when one is. For a
        windowed sender: ``offer`` ..., then ``await wait_for_egress``, then ``poll_egress``."""
        inbox = self._core._inbox
        return await self._wait_until(lambda: len(inbox) > 0, timeout_s)

    async def wait_for_window(self, timeout_s: float) -> bool:
        """Wait until ``offer`` would not return BACK_PRESSURED (the cluster acknowledged
        enough of the send window), or ``timeout_s`` passes; True when there is room."""
        return await self._wait_until(self._window_has_room, timeout_s)

    def _window_has_room(self) -> bool:
        # the window offer() keeps to, which connect may have lowered to the cluster's reply cache
        return len(self._core._window) < self._core._window_messages

    def _complete_waiting(self) -> None:
        if not self._waiting:
            return
        core = self._core
        closed = core.state is ClientState.CLOSED
        for correlation_id, future in list(self._waiting.items()):
            reply = core.take_reply(correlation_id)
            error = None if reply is not None else core.take_error(correlation_id)
            if reply is not None:
                del self._waiting[correlation_id]
                if not future.done():
                    future.set_result(reply)
            elif error is not None:     # the cluster refused the message (e.g. too large)
                del self._waiting[correlation_id]
                if not future.done():
                    future.set_exception(error)
            elif closed:
                del self._waiting[correlation_id]
                if not future.done():
                    future.set_exception(ClusterClosedError(str(core.error or "closed")))

    @property
    def session_id(self) -> int:
        return self._client.session_id

    @property
    def is_connected(self) -> bool:
        return self._client.is_connected

    def offer(self, payload, service_id: int = 0) -> int:
        """As ClusterClient.offer; the background task sends what was offered in its next
        cycle, which the offer starts at once (offers made together go out together)."""
        result = self._client.offer(payload, service_id)
        if result > 0 and self._wake is not None:
            self._wake.set()
        return result

    def take_rejections(self) -> list:
        """As ClusterClient.take_rejections."""
        return self._core.take_rejections()

    @property
    def leader_endpoint(self):
        return self._client.leader_endpoint

    @property
    def counters(self):
        return self._client.counters

    def poll_egress(self, on_message: Callable[[int, memoryview], None], limit: int = 1 << 30) -> int:
        """Responses not claimed by a request (the background task already polls the network)."""
        return self._core.poll(on_message, limit)

    async def request(self, payload, service_id: int = 0, timeout_s: float = 1.0) -> bytes:
        """Offer and await the reply; raises as ClusterClient.request does."""
        check_timeout(timeout_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if self._failure is not None:
                raise ClusterClosedError(self._failure)
            correlation_id = self._core.offer(payload, service_id, self._client._clock(), expect_reply=True)
            if correlation_id != BACK_PRESSURED:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ClusterTimeoutError(f"send window full for {timeout_s}s")
            # woken when the background task's cycle frees window room (or close), not a
            # sleep-poll; a wait that ends at once still yields, never a spin on the loop
            if await self._wait_until(self._window_has_room, remaining):
                await asyncio.sleep(0)
        if correlation_id == NOT_CONNECTED:
            raise NotConnectedError("not connected to the cluster")
        if correlation_id == CLOSED:
            raise ClusterClosedError(str(self._core.error or "closed"))
        self._client.flush()          # on the wire now, not at the background task's next cycle
        future = loop.create_future()
        self._waiting[correlation_id] = future
        try:
            return await asyncio.wait_for(future, max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise ClusterTimeoutError(
                f"no reply to correlation id {correlation_id} within {timeout_s}s "
                "(it may still be applied, never twice)") from None
        finally:
            if self._waiting.pop(correlation_id, None) is not None:
                self._core.abandon(correlation_id)

    async def close(self) -> None:
        if self._closed:
            if self._closed_event is not None:    # another task's close(): wait for its end
                await self._closed_event.wait()
            return
        self._closed = True
        self._closed_event = asyncio.Event()
        self._tell_watchers()                     # wait_for_egress/wait_for_window end now
        try:
            if self._task is not None:
                self._task.cancel()
                # asyncio.wait: a cancellation of close()'s caller propagates (the finally
                # below still closes), where catching CancelledError swallowed it
                if not self._task.done():
                    await asyncio.wait([self._task])
                if not self._task.cancelled() and self._task.exception() is not None:
                    raise self._task.exception()
        finally:                                  # whatever the task died of, let go of it all
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ClusterClosedError("the client was closed"))
            self._waiting.clear()
            try:
                self._client.close()
            finally:
                self._closed_event.set()

    async def __aenter__(self) -> "AsyncClusterClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
