"""``AsyncClusterClient``: the cluster client for asyncio applications.

``await client.request(...)`` suspends only the calling task. The event loop's reader callback
for the client's socket runs a duty cycle as soon as a datagram is there and completes the
futures of the requests it answers in that pass of the loop; one background task runs the
cycles the client's timers need (keepalives, re-sends, the streams' STATUS) and takes a
failure of either as the client's end. Same session logic and guarantees as
:class:`aeronpy.ClusterClient`.

Between cycles with nothing to do the task waits for the client's timers: ``TICK_S`` just
after work or while a request waits, like the blocking client's ``backoff()``, else until the
next timer is due (``ClusterClient.next_due_ns``: a keepalive, a re-send, a stream's STATUS),
at most ``IDLE_WAIT_MAX_S``; ``offer()`` ends the wait at once, and so does a reader's cycle
that did work while more than ``TICK_S`` of the wait was left (a timer may be due sooner
now). A reply is handled when it arrives, and an idle client wakes about 110 times a second
rather than 1,000 (bench/RESULTS.md section 9). ``connect()`` waits the same way, for the socket or its
next connect attempt (a handful of wake-ups a connect). A transport without a socket (the
in-memory ones), or an event loop without socket readers (Windows' proactor loop), is polled
every ``poll_interval_s`` instead.

A client belongs to the event loop it was connected in: used from another one it raises
RuntimeError (``close()`` from another loop still lets go of the socket once its own loop has
stopped).
"""
from __future__ import annotations

import asyncio
import collections
import functools
import logging
import sys
from types import TracebackType
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

from aeronpy.client import (_ZERO, ClusterClient, ConnectOptions, check_connect_options,
                            check_poll)
from aeronpy.cluster.client_core import (BytesLike, ClientState, _seconds, check_service_id,
                                         check_timeout)
from aeronpy.cluster.codes import BACK_PRESSURED, CLOSED, NOT_CONNECTED
from aeronpy.errors import (ClusterClosedError, ClusterTimeoutError, MessageRejectedError,
                            NotConnectedError)

if sys.version_info >= (3, 11):
    from typing import Unpack
elif TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["AsyncClusterClient"]

TICK_S = 0.001      # wait between cycles with no datagram just after work (the client's timers)
IDLE_WAIT_MAX_S = 0.05  # longest wait of an idle client (until its next timer, at most this)
_running_loop = asyncio._get_running_loop     # offer()'s loop check: no exception when none runs
_log = logging.getLogger("aeronpy.client")


def _watch_socket(loop: asyncio.AbstractEventLoop, transport, callback: Callable[[], None]) -> int:
    """Have the loop call ``callback`` while the transport's socket is readable: its fd, or -1
    (no socket, or a loop without readers, such as Windows' proactor loop)."""
    fileno = getattr(transport, "fileno", None)
    fd = -1 if fileno is None else fileno()
    if fd >= 0:
        try:
            loop.add_reader(fd, callback)     # level-triggered: called again while data waits
        except NotImplementedError:
            return -1
    return fd


async def _await_session(client: ClusterClient, loop: asyncio.AbstractEventLoop, deadline: float,
                         poll_interval_s: float) -> None:
    """Run a connecting client's duty cycle until it is connected or refused, or until
    ``deadline`` (loop time) passes: between cycles, wait for its socket or for its next connect
    attempt (the core's one timer while connecting), not a poll."""
    core = client._core
    readable = asyncio.Event()
    fd = _watch_socket(loop, client._transport, readable.set)
    try:
        while core.state is ClientState.CONNECTING:
            now = loop.time()
            if now >= deadline:
                return
            if client.do_work():
                await asyncio.sleep(0)            # let other tasks run between busy cycles
                continue
            if fd < 0:
                wait = poll_interval_s
            else:
                wait = max(0.0, (core._attempt_deadline_ns - client._clock()) / 1e9)
            readable.clear()
            timer = loop.call_at(min(now + wait, deadline), readable.set)
            try:
                await readable.wait()
            finally:
                timer.cancel()
    finally:
        if fd >= 0:
            loop.remove_reader(fd)


def _release(waiter: asyncio.Future) -> None:
    """End a wait_for_egress/wait_for_window wait (work was done, the client closed, or the
    wait's time is up: the waiter checks again which)."""
    if not waiter.done():
        waiter.set_result(None)


_SILENCE_ADVICE = ("an AsyncClusterClient sends them from its background task every "
                   "{keepalive_ms} ms while idle, so its event loop ran nothing else that long "
                   "(a blocking call in a coroutine, or the loop stopped)")


def _give_up_turn(waiter: asyncio.Future) -> None:
    """A request's time is up while it waits in line for window room."""
    if not waiter.done():
        waiter.set_result(False)


def _expire(future: asyncio.Future, correlation_id: int, timeout_s: float) -> None:
    """A request's timeout: its future fails, unless the reply came first."""
    if not future.done():
        future.set_exception(ClusterTimeoutError(
            f"no reply to correlation id {correlation_id} within {timeout_s}s "
            "(it may still be applied, never twice)"))


def _failed(cause: Optional[BaseException]) -> str:
    """What a client whose cycle raised ``cause`` says it died of (the task's or the reader's)."""
    return f"the client's background task failed: {cause!r}"


def _add_note(error: BaseException, note: str) -> None:
    if hasattr(error, "add_note"):                # Python 3.11+
        error.add_note(note)
    else:
        _log.warning("%s (while %r propagated)", note, error)


class AsyncClusterClient:
    """The cluster client for asyncio: ``client = await AsyncClusterClient.connect(...)``, then
    ``await client.request(...)``. The same session logic and guarantees as `ClusterClient`
    (docs/programming.md section 7), driven from the event loop it was connected in."""

    def __init__(self, client: ClusterClient, poll_interval_s: float = 0.0002) -> None:
        self._client = client
        self._core = client._core
        self._poll_interval_s = poll_interval_s
        self._waiting: dict[int, asyncio.Future] = {}
        self._last_work_s = 0.0     # loop time of the background task's last cycle with work
        self._task: Optional[asyncio.Task] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None   # connect()'s: the client's
        self._closed = False
        self._wake: Optional[asyncio.Event] = None   # ends the background task's wait
        self._wait_until_s = 0.0    # loop time the background task's current wait ends
        self._reader_error: Optional[Exception] = None   # a cycle in _on_readable raised it
        self._reader_fd = -1        # the socket _on_readable watches
        self._watchers: set = set()      # futures of wait_for_egress/wait_for_window callers
        # request() callers waiting for window room, oldest first (done ones are skipped when
        # they come to the head), and how many were let go and have not offered yet: room
        # goes to them in order, as much as there is (_pass_turns)
        self._room_queue: collections.deque = collections.deque()
        self._turns_out = 0
        self._failure: Optional[str] = None   # why the background task ended, if not by close()
        self._failure_cause: Optional[BaseException] = None   # what it raised, if it did
        self._failure_reported = False   # a request or a wait has raised it to its caller
        self._closed_event: Optional[asyncio.Event] = None   # set once close() has finished

    @classmethod
    async def connect(cls, endpoints: Union[str, Sequence[str]], timeout_s: float = 5.0, *,
                      poll_interval_s: float = 0.0002,
                      **options: Unpack[ConnectOptions]) -> "AsyncClusterClient":
        """Connect without blocking the event loop; options as ClusterClient.connect. Between
        duty cycles it waits for the client's socket or its next connect attempt, not a poll."""
        loop = asyncio.get_running_loop()        # no loop: refused before a socket is open
        check_connect_options(options, "AsyncClusterClient.connect", "timeout_s, poll_interval_s")
        check_timeout(timeout_s)
        if not 0 <= _seconds(poll_interval_s, "poll_interval_s") < float("inf"):
            raise ValueError(f"poll_interval_s must be a finite number of seconds >= 0, got "
                             f"{poll_interval_s!r}")
        client = ClusterClient.open(endpoints, **options)
        try:
            await _await_session(client, loop, loop.time() + timeout_s, poll_interval_s)
            if client._core.state is ClientState.CONNECTING:
                raise NotConnectedError(client._no_session_why(endpoints, timeout_s))
        except BaseException:
            # cancelled (asyncio.wait_for, a task's cancel) or failed while waiting: the
            # transport, a socket for a real client, is closed, not left to the collector
            client._transport.close()
            raise
        if client._core.state is not ClientState.CONNECTED:
            client._transport.close()
            raise client._core.error or NotConnectedError("connect failed")
        self = cls(client, poll_interval_s)
        client._core.silence_advice = _SILENCE_ADVICE
        self._loop = loop
        self._task = loop.create_task(self._run(), name="aeronpy-client")
        self._task.add_done_callback(self._task_done)
        return self

    # ---- the event loop it belongs to -----------------------------------------------------
    def _own_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop and self._loop is not None:
            raise RuntimeError(self._foreign_loop_why())
        return loop

    def _foreign_loop_why(self) -> str:
        owner = "which is closed" if self._loop.is_closed() else "not the one running here"
        return (f"this AsyncClusterClient belongs to the event loop it was connected in ({owner}); "
                "its futures and background task live there. Connect a client in each event "
                "loop that uses one")

    # ---- the background task --------------------------------------------------------------
    def _task_done(self, task: asyncio.Task) -> None:
        """The background task ended: unless by close(), nothing completes requests any more,
        so the waiting ones fail now (not at their timeouts) and later ones at once."""
        if task.cancelled():
            cause = None
            why = "the client's background task was cancelled (its event loop ended?)"
        else:
            cause = task.exception()      # retrieved: no "exception was never retrieved"
            why = _failed(cause)
        if self._closed or self._failure is not None:   # closed, or failed in the reader
            return
        self._fail(why, cause)

    def _fail(self, why: str, cause: Optional[BaseException]) -> None:
        """Nothing will complete requests any more: the waiting ones fail now, with ``cause``
        (what the task or the reader's cycle raised), and later calls at once."""
        self._failure, self._failure_cause = why, cause
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(self._failure_error())
                self._failure_reported = True
        self._tell_watchers()

    def _failure_error(self) -> ClusterClosedError:
        error = ClusterClosedError(self._failure)
        error.__cause__ = self._failure_cause
        return error

    def _raise_if_closed(self, unsent: bool = False) -> None:
        """ClusterClosedError once the client cannot go on: the background task's failure
        (with what it raised as the cause), close(), or the session's end. ``unsent``: for a
        request that was not sent (close() says so: the caller may send it elsewhere)."""
        if self._failure is not None:
            self._failure_reported = True
            raise self._failure_error()
        if self._closed:
            raise ClusterClosedError("the client was closed before the request was sent: it "
                                     "was not applied" if unsent else "the client was closed")
        if self._core.state is ClientState.CLOSED:
            raise ClusterClosedError(str(self._core.error or "closed"))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        # A readable socket runs a cycle in the reader's own callback (_on_readable), which
        # completes a reply's future in that pass of the loop: waking this task for it first
        # cost the reply two more passes (bench/aio_latency.py). The task runs the timers.
        fd = _watch_socket(loop, self._client._transport, functools.partial(self._on_readable, loop))
        self._reader_fd = fd
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
                if self._reader_error is not None:
                    raise self._reader_error  # a cycle in the reader failed: the task's failure
                work = self._client.do_work()
                self._complete_waiting()
                if work:
                    self._last_work_s = loop.time()
                    self._tell_watchers()
                    await asyncio.sleep(0)    # let other tasks run between busy cycles
                    continue
                readable.clear()
                wait_s = self._idle_wait_s()
                self._wait_until_s = loop.time() + wait_s
                tick = loop.call_later(wait_s, readable.set)
                try:
                    await readable.wait()
                finally:
                    tick.cancel()
        finally:
            loop.remove_reader(fd)

    def _on_readable(self, loop: asyncio.AbstractEventLoop) -> None:
        """The socket is readable: one cycle of the client here. A failure ends the client at
        once (``_fail``; the background task is woken to end with it too); the task is also
        woken when this cycle did work and the task would otherwise sleep past the tick that
        follows work (its timers may be due sooner now)."""
        if self._reader_error is not None or self._closed:
            return
        try:
            work = self._client.do_work()
            self._complete_waiting()
        except Exception as exc:
            # the client's end, now: the waiting requests fail with it, offer() returns
            # CLOSED and close() reports it even if it cancels the task before it raises
            self._reader_error = exc
            loop.remove_reader(self._reader_fd)
            self._fail(_failed(exc), exc)
            if self._wake is not None:
                self._wake.set()              # the task ends with it too
            return
        if work:
            now = loop.time()
            self._last_work_s = now
            self._tell_watchers()
            if self._wait_until_s - now > TICK_S and self._wake is not None:
                self._wake.set()

    def _idle_wait_s(self) -> float:
        """How long the background task waits after a cycle with no work: TICK_S while work
        came in the last TICK_S or a request waits for its reply, else until the client's next
        timer (``ClusterClient.next_due_ns``), at most IDLE_WAIT_MAX_S. An offer ends the wait
        at once, and so does a reader's cycle with work while more than TICK_S is left."""
        if self._waiting or asyncio.get_running_loop().time() - self._last_work_s < TICK_S:
            return TICK_S
        due_s = (self._client.next_due_ns() - self._client._clock()) / 1e9
        return min(max(due_s, TICK_S), IDLE_WAIT_MAX_S)

    def _tell_watchers(self) -> None:
        for waiter in self._watchers:
            _release(waiter)
        if self._room_queue:
            self._pass_turns()

    def _pass_turns(self) -> None:
        """Let the request() callers that waited longest offer, as many as the window has
        room for beside those let go already; every one once the client is closed or failed
        (each then raises). Waking every waiter at each cycle instead let whichever ran first
        take the room: the oldest waited longest, and each slot cost a retry per waiter."""
        queue = self._room_queue
        ending = (self._closed or self._failure is not None
                  or self._core.state is ClientState.CLOSED)
        core = self._core
        room = core._window_messages - len(core._window) - self._turns_out \
            if core.has_window_room() else 0
        while queue and (ending or room > 0):
            waiter = queue.popleft()
            if not waiter.done():         # else it timed out or was cancelled while waiting
                waiter.set_result(True)
                self._turns_out += 1
                room -= 1

    async def _wait_turn(self, loop: asyncio.AbstractEventLoop, deadline: float,
                         again: bool) -> bool:
        """Wait in line for window room (FIFO); True once let go, False at ``deadline``.
        ``again``: it was let go but found the window full (an offer() of the application's
        took the room), so it waits at the head."""
        waiter = loop.create_future()
        if again:
            self._room_queue.appendleft(waiter)
        else:
            self._room_queue.append(waiter)
        self._pass_turns()                # room already and nobody ahead: let go at once
        timer = loop.call_at(deadline, _give_up_turn, waiter)
        try:
            turn = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._turn_used()         # let go, then cancelled before it ran: pass it on
                self._pass_turns()
            raise
        finally:
            timer.cancel()
        if turn:
            self._turn_used()
        return turn

    def _turn_used(self) -> None:
        self._turns_out = max(0, self._turns_out - 1)

    async def _wait_until(self, ready: Callable[[], bool], timeout_s: float,
                          ready_first: bool = False) -> bool:
        """True once ``ready()``, False at ``timeout_s``; ClusterClosedError once the client is
        closed, never a False at once (a caller's retry loop would then never yield).
        ``ready_first``: a closed client that is ready still returns True (queued egress)."""
        check_timeout(timeout_s)
        loop = self._own_loop()
        deadline = loop.time() + timeout_s
        while True:
            # a bare future and a timer, as request() has: an Event's wait() under
            # asyncio.wait_for took the waiter two more passes of the event loop
            waiter = loop.create_future()
            self._watchers.add(waiter)        # before the check: a cycle after it sets it
            timer = None
            try:
                if ready_first and ready():
                    return True
                self._raise_if_closed()
                if ready():
                    return True
                if deadline - loop.time() <= 0:
                    return False
                timer = loop.call_at(deadline, _release, waiter)
                await waiter                  # then checked once more: ready, closed, or False
            finally:
                if timer is not None:
                    timer.cancel()
                self._watchers.discard(waiter)

    async def wait_for_egress(self, timeout_s: float) -> bool:
        """Wait, without blocking the event loop, until a response no ``request`` claimed is
        queued for ``poll_egress``, or ``timeout_s`` passes; True when one is. For a
        windowed sender: ``offer`` ..., then ``await wait_for_egress``, then ``poll_egress``.
        Once the client is closed (or its background task died) True while responses are
        still queued, then ClusterClosedError."""
        inbox = self._core._inbox
        return await self._wait_until(lambda: len(inbox) > 0, timeout_s, ready_first=True)

    async def wait_for_window(self, timeout_s: float) -> bool:
        """Wait until ``offer`` would not return BACK_PRESSURED (the cluster acknowledged
        enough of the send window), or ``timeout_s`` passes; True when there is room.
        ClusterClosedError once the client is closed (or its background task died)."""
        return await self._wait_until(self._window_has_room, timeout_s)

    def _window_has_room(self) -> bool:
        # the window offer() keeps to: its count, which connect may have lowered to the
        # cluster's reply cache, and its bytes (ClientCore.has_window_room)
        return self._core.has_window_room()

    def _complete_waiting(self) -> None:
        if self._room_queue and self._core.state is ClientState.CLOSED:
            self._pass_turns()      # the session ended (perhaps in a cycle that did no work)
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

    # ---- public API ---------------------------------------------------------------------
    @property
    def session_id(self) -> int:
        return self._client.session_id

    @property
    def is_connected(self) -> bool:
        return self._client.is_connected

    def offer(self, payload: BytesLike, service_id: int = 0) -> int:
        """As ClusterClient.offer; the background task sends what was offered in its next
        cycle, which the offer starts at once (offers made together go out together).
        CLOSED, with nothing sent, once the client is closing or its background task died
        (nothing would poll the response)."""
        if _running_loop() is not self._loop and self._loop is not None:
            raise RuntimeError(self._foreign_loop_why())
        if self._failure is not None or self._closed:
            return CLOSED
        result = self._client.offer(payload, service_id)
        if result > 0 and self._wake is not None:
            self._wake.set()
        return result

    def take_rejections(self) -> list[tuple[int, MessageRejectedError]]:
        """As ClusterClient.take_rejections."""
        return self._core.take_rejections()

    @property
    def leader_endpoint(self) -> Optional[str]:
        return self._client.leader_endpoint

    @property
    def counters(self) -> dict[str, int]:
        return self._client.counters

    @property
    def session_terms(self) -> dict[str, int]:
        """As ClusterClient.session_terms: what the cluster told this client at connect."""
        return self._client.session_terms

    def poll_egress(self, on_message: Callable[[int, memoryview], object], limit: int = 1 << 30) -> int:
        """Responses not claimed by a request (the socket's reader and the background task
        already poll the network)."""
        if type(limit) is not int or limit < 0 or not callable(on_message):
            check_poll(on_message, limit)
        return self._core.poll(on_message, limit)

    async def request(self, payload: BytesLike, service_id: int = 0, timeout_s: float = 1.0) -> bytes:
        """Offer and await the reply; raises as ClusterClient.request does (ClusterClosedError,
        caused by what it raised, once the background task died)."""
        check_timeout(timeout_s)
        if service_id is not _ZERO and (service_id.__class__ is not int or service_id < 0
                                        or service_id > 2147483647):     # SERVICE_ID_MAX
            service_id = check_service_id(service_id)
        loop = self._own_loop()
        deadline = loop.time() + timeout_s
        turn = False
        try:
            while True:
                if self._failure is not None or self._closed:
                    self._raise_if_closed(unsent=True)    # before the offer: nothing is sent
                # behind others waiting for room it waits its turn (first come, first sent);
                # let go, it offers at once
                if turn or (not self._room_queue and self._turns_out == 0):
                    correlation_id = self._core.offer(payload, service_id, self._client._clock(),
                                                      expect_reply=True)
                    if correlation_id != BACK_PRESSURED:
                        break
                if deadline - loop.time() <= 0:
                    raise ClusterTimeoutError(f"send window full for {timeout_s}s: the request "
                                              "was not sent")
                # let go by the background task's cycle that frees window room (or by close), in
                # the order the requests came: not a sleep-poll, nor a race of every waiter
                turn = await self._wait_turn(loop, deadline, again=turn)
        except BaseException:
            if self._room_queue:
                self._pass_turns()    # room it was let go for (then refused the payload) is not lost
            raise
        if correlation_id == NOT_CONNECTED:
            raise NotConnectedError("not connected to the cluster")
        if correlation_id == CLOSED:
            raise ClusterClosedError(str(self._core.error or "closed"))
        future = loop.create_future()
        self._waiting[correlation_id] = future
        # the timeout is a timer on the future itself, not asyncio.wait_for: its wrapper costs
        # the reply one more pass of the event loop (bench/aio_latency.py)
        timer = loop.call_at(deadline, _expire, future, correlation_id, timeout_s)
        try:
            if self._client._stamp is not None:
                self._client._stamp()     # the transport's time may be the task's last poll
            self._client.flush()      # on the wire now, not at the background task's next cycle
            return await future
        finally:                      # timed out, cancelled, or the send failed: let go of it
            timer.cancel()
            if self._waiting.pop(correlation_id, None) is not None:
                self._core.abandon(correlation_id)

    async def close(self) -> None:
        """Close the session (best effort) and the socket; the requests and waits still
        pending raise ClusterClosedError. Raises the background task's failure (as a
        ClusterClosedError caused by it) only if no request or wait has raised it already."""
        if self._closed:
            if self._closed_event is not None and not self._closed_event.is_set():
                await self._closed_event.wait()   # another task's close(): wait for its end
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop and self._loop is not None:
            self._close_from_another_loop()
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
        finally:                                  # whatever the task died of, let go of it all
            self._fail_waiting()
            try:
                self._client.close()
            finally:
                self._closed_event.set()
        # only if nobody was told: raised again it masks the caller's error; never, it is lost
        failure = self._unreported_failure()
        if failure is not None:
            raise failure

    def _fail_waiting(self) -> None:
        if self._loop is None or not self._loop.is_closed():   # a closed loop's can't complete
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ClusterClosedError(
                        "the client was closed with the request sent and no reply yet: it may "
                        "have been applied, or be applied later (never twice)"))
        self._waiting.clear()

    def _close_from_another_loop(self) -> None:
        """close() awaited in another loop than the client's: possible only once that loop
        has stopped (or closed); its task, if still pending, is cancelled there."""
        owner = self._loop
        if owner.is_running():
            raise RuntimeError(
                "close() of an AsyncClusterClient from another event loop than its own, which "
                "is running (in another thread?): close it there, e.g. "
                "asyncio.run_coroutine_threadsafe(client.close(), loop)")
        self._closed = True
        try:
            task = self._task
            if task is not None and not task.done() and not owner.is_closed():
                if self._reader_fd >= 0:
                    owner.remove_reader(self._reader_fd)
                task.cancel()         # ends if that loop runs again; if it never does, the
                # task is collected pending, which asyncio logs as an error: nothing is lost
                # by it (the client is closed here), so that message is turned off
                try:
                    task._log_destroy_pending = False
                except AttributeError:     # another asyncio: only the message differs
                    pass
            self._fail_waiting()
        finally:
            self._client.close()
        failure = self._unreported_failure()
        if failure is not None:
            raise failure

    def _unreported_failure(self) -> Optional[ClusterClosedError]:
        if self._failure_reported:
            return None
        cause: Optional[BaseException] = self._reader_error   # whatever became of the task
        if cause is None:
            task = self._task
            if task is None or not task.done() or task.cancelled():
                return None
            cause = task.exception()
            if cause is None:
                return None
        self._failure_reported = True
        error = ClusterClosedError(self._failure or _failed(cause))
        error.__cause__ = cause
        return error

    async def __aenter__(self) -> "AsyncClusterClient":
        self._own_loop()
        return self

    async def __aexit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        if exc is None:
            await self.close()
            return
        try:
            await self.close()
        except Exception as error:
            # the body's exception goes on (never masked by the client's); this one as a note
            _add_note(exc, f"closing the AsyncClusterClient raised too: {error}")
