"""Idle strategies for the duty cycle, in the manner of Agrona's `IdleStrategy`.

The agent loop is ``while running: idle.idle(agent.do_work())``. A strategy sees how much work
the last cycle did: any work resets it; a run of empty cycles makes it wait harder. The choice
trades latency against CPU: ``busy-spin`` answers fastest and burns a core; ``backoff`` (the
default) spins, yields, then parks with growing sleeps capped at 1 ms, so a 3-node cluster plus
a client can share 2 cores.

Parking need not be blind: give `BackoffIdleStrategy` a ``waiter(timeout_s)`` (for example
`select_waiter` over some sockets; a node uses its own, which also notes which sockets were
readable so the cycle after the park polls only those) and a parked node wakes as soon as a
datagram arrives.
``idle_strategy_from_name("backoff", waiter=...)`` then parks at once, for the whole 1 ms,
without spinning, yielding or short parks first: the wait ends at the next datagram anyway,
and on shared cores the CPU a node burns on empty cycles is what its peers need to produce
that datagram. What is not a datagram waits at most 1 ms, as in a backoff's longest park
(timers, the client's resend), unless ``park_s`` names another length: a node passes its own
(``ClusterNode._idle_park_s``), which parks until its next timer is due once it has been idle
for a millisecond. A node with file_sync data or full adds a pipe to the sockets, which its
sync thread writes when a sync is done (writes it advanced past then count), and one that
close() writes.

Every strategy counts what it did (``spins``, ``yields``, ``parks``) and takes its sleep and
yield functions as arguments, so tests check the behaviour, never the timing.
"""
from __future__ import annotations

import os
import select
import time
from typing import Callable, Iterable, Optional

from aeronpy.errors import ConfigError

__all__ = [
    "IdleStrategy", "BusySpinIdleStrategy", "YieldingIdleStrategy", "SleepingIdleStrategy",
    "BackoffIdleStrategy", "idle_strategy_from_name", "select_waiter", "IDLE_STRATEGY_NAMES",
]


def _default_yield() -> None:
    time.sleep(0)  # releases the GIL and, on every OS, lets another runnable thread in


_sched_yield: Callable[[], None] = getattr(os, "sched_yield", _default_yield)


class IdleStrategy:
    """What a duty-cycle loop does after a cycle: ``idle(work_count)`` then loop again."""

    name = "abstract"

    def __init__(self) -> None:
        self.spins = 0
        self.yields = 0
        self.parks = 0

    def idle(self, work_count: int) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget any backoff state (called when work arrives by another route)."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(spins={self.spins}, yields={self.yields}, "
                f"parks={self.parks})")


class BusySpinIdleStrategy(IdleStrategy):
    """Never gives the CPU away: lowest latency, one core per node. For pinned, dedicated cores."""

    name = "busy-spin"

    def idle(self, work_count: int) -> None:
        if work_count <= 0:
            self.spins += 1


class YieldingIdleStrategy(IdleStrategy):
    """Yields the CPU on every empty cycle: near-spin latency, but lets others run."""

    name = "yield"

    def __init__(self, yield_fn: Callable[[], None] = _sched_yield) -> None:
        super().__init__()
        self._yield = yield_fn

    def idle(self, work_count: int) -> None:
        if work_count <= 0:
            self.yields += 1
            self._yield()


class SleepingIdleStrategy(IdleStrategy):
    """Sleeps a fixed period on every empty cycle: cheapest on CPU, adds up to that latency."""

    name = "sleep"

    def __init__(self, period_s: float = 0.001,
                 sleep_fn: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        if period_s <= 0:
            raise ValueError("period_s must be positive")
        self.period_s = period_s
        self._sleep = sleep_fn

    def idle(self, work_count: int) -> None:
        if work_count <= 0:
            self.parks += 1
            self._sleep(self.period_s)


_NOT_IDLE, _SPINNING, _YIELDING, _PARKING = 0, 1, 2, 3


class BackoffIdleStrategy(IdleStrategy):
    """Spin ``max_spins`` times, yield ``max_yields`` times, then park with doubling periods.

    Parks start at ``min_park_s`` and double up to ``max_park_s`` (1 ms by default). A park calls
    ``waiter(timeout_s)`` when one is given (it may return early when input is ready), else
    ``sleep_fn(timeout_s)``. Any cycle with work returns the strategy to the start.
    ``park_s()``, when given, names each park's length instead (a node that knows when its
    next timer is due parks until then: ``ClusterNode._idle_park_s``).
    """

    name = "backoff"

    def __init__(self, max_spins: int = 10, max_yields: int = 5,
                 min_park_s: float = 16e-6, max_park_s: float = 0.001,
                 waiter: Optional[Callable[[float], object]] = None,
                 yield_fn: Callable[[], None] = _sched_yield,
                 sleep_fn: Callable[[float], None] = time.sleep,
                 park_s: Optional[Callable[[], float]] = None) -> None:
        super().__init__()
        if max_spins < 0 or max_yields < 0:
            raise ValueError("max_spins and max_yields must be >= 0")
        if not 0 < min_park_s <= max_park_s:
            raise ValueError("need 0 < min_park_s <= max_park_s")
        self.max_spins = max_spins
        self.max_yields = max_yields
        self.min_park_s = min_park_s
        self.max_park_s = max_park_s
        self._park = waiter if waiter is not None else sleep_fn
        self._park_s_fn = park_s
        self._yield = yield_fn
        self._state = _NOT_IDLE
        self._spun = 0
        self._yielded = 0
        self._park_s = min_park_s

    def idle(self, work_count: int) -> None:
        if work_count > 0:
            if self._state != _NOT_IDLE:
                self.reset()
            return
        state = self._state
        if state == _NOT_IDLE:
            state = self._state = (_SPINNING if self.max_spins else
                                   _YIELDING if self.max_yields else _PARKING)
        if state == _SPINNING:
            self.spins += 1
            self._spun += 1
            if self._spun >= self.max_spins:
                self._state = _YIELDING if self.max_yields else _PARKING
            return
        if state == _YIELDING:
            self.yields += 1
            self._yielded += 1
            if self._yielded >= self.max_yields:
                self._state = _PARKING
            self._yield()
            return
        self.parks += 1
        if self._park_s_fn is not None:
            self._park(self._park_s_fn())
            return
        period = self._park_s
        self._park_s = min(period * 2, self.max_park_s)
        self._park(period)

    def reset(self) -> None:
        self._state = _NOT_IDLE
        self._spun = 0
        self._yielded = 0
        self._park_s = self.min_park_s

    @property
    def park_period_s(self) -> float:
        """The length of the next park (for tests and the describe tool)."""
        return self._park_s


_FD_SETSIZE = 1024     # select() refuses descriptors from here up (Linux, macOS)


def select_waiter(sockets: Iterable,
                  note: Optional[Callable[[list], object]] = None) -> Callable[[float], bool]:
    """A ``waiter`` that parks until one of ``sockets`` (objects with ``fileno()`` or fds)
    is readable, or for ``timeout_s``.

    Returns True when one became readable; ``note(readable)``, when given, is told which
    (the objects given, in their order) after every park: a node polls only those in the
    cycle that follows. Parks in ``select``, to the microsecond; where a descriptor is 1024
    or more, which ``select`` refuses (an application holding many files or connections
    hands such ones to a node it embeds: its duty cycle died at the first park), in ``poll``,
    which waits in whole milliseconds: a timeout is rounded up, so a timer may be served up
    to 1 ms late, never early.
    """
    objs = list(sockets)
    fds = [o if isinstance(o, int) else o.fileno() for o in objs]
    if not hasattr(select, "poll") or max(fds, default=0) < _FD_SETSIZE:
        def wait_select(timeout_s: float) -> bool:
            readable, _, _ = select.select(objs, (), (), timeout_s)
            if note is not None:
                note([o for o in objs if o in readable])
            return bool(readable)
        return wait_select

    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    by_fd = dict(zip(fds, objs))

    def wait(timeout_s: float) -> bool:
        ms = max(1, -(-int(timeout_s * 1e6) // 1000)) if timeout_s > 0 else 0   # ceil: never early
        events = poller.poll(ms)
        if note is not None:
            # POLLERR/POLLHUP/POLLNVAL count as readable, as select reports them: the next
            # receive finds the error and handles it
            note([by_fd[fd] for fd, _ in events if fd in by_fd])
        return bool(events)

    return wait


IDLE_STRATEGY_NAMES = ("busy-spin", "yield", "backoff", "sleep")
_WAIT_PARK_S = 0.001     # a park that ends at the next datagram: the longest backoff park


def idle_strategy_from_name(name: str, *, waiter: Optional[Callable[[float], object]] = None,
                            park_s: Optional[Callable[[], float]] = None) -> IdleStrategy:
    """The strategy for a config's ``idle_strategy``; ``waiter`` is used by ``backoff`` only,
    and ``park_s`` (each park's length, see BackoffIdleStrategy) only with a waiter: a blind
    sleep cannot end early, so it keeps the 1 ms bound."""
    if name == "busy-spin":
        return BusySpinIdleStrategy()
    if name == "yield":
        return YieldingIdleStrategy()
    if name == "backoff":
        if waiter is not None:
            # A waiter wakes on input, so spinning first only takes the CPU the other nodes
            # and the client need for their share of the request: parking at once cut the
            # one-at-a-time p50 of a 3-process cluster on 2 busy cores to 0.81-0.89x of
            # 10 spins + 5 yields (bench/results/perf.md, "single-request latency").
            # Nor do short parks pay: a node that parked for 16, 32, 64 ... us ran ~4 empty
            # duty cycles between one-at-a-time requests; one 1 ms park cut a follower's CPU
            # per request from 113-117 to 70-80 us (bench/results/perf.md).
            return BackoffIdleStrategy(max_spins=0, max_yields=0, min_park_s=_WAIT_PARK_S,
                                       max_park_s=_WAIT_PARK_S, waiter=waiter, park_s=park_s)
        return BackoffIdleStrategy()
    if name == "sleep":
        return SleepingIdleStrategy()
    raise ConfigError("idle_strategy", f"must be one of {', '.join(map(repr, IDLE_STRATEGY_NAMES))}, "
                                       f"got {name!r}")
