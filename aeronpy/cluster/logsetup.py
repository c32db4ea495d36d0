"""Per-node logging with the standard library, and a rate limiter for bursts of drops.

Each node logs to ``aeronpy.node.<member_id>`` (children such as ``aeronpy.node.0.election``
are fine), at the level of the config's ``log_level``. The library never installs handlers
on its own; `configure_cli_logging` does, for ``aeronpy node`` only.

What to log, once each and with the reason, so an operator can reconstruct an incident:

- every election state transition (``INFO``: "election CANVASS -> NOMINATE: leader heartbeat
  timeout after 400 ms"), and every role change and new leader (``INFO``/``WARNING`` when this
  node lost leadership);
- snapshots taken and loaded (``INFO``: index, term, bytes, duration), snapshot failures
  (``ERROR``);
- each recovery step at start (``INFO``: torn tail repaired at offset N, log rebuilt to index
  N, snapshot loaded, replay from..to);
- dropped frames as bursts through `BurstLogger` (``WARNING``: "dropped 1532 frames
  (bad_mac) in 1.0 s"; ``INFO`` for those a restart leaves behind, see
  `aeronpy.cluster.node_counters.RESTART_DROP_REASONS`), never one line per frame;
- configuration at start (``INFO``, secret hidden) and shutdown reason.

Nothing per message or per duty cycle: on the hot path only counters move (see
`aeronpy.cluster.counters`). Use `log_transition` for the state-machine lines so they all
read alike and can be grepped.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Callable, Optional

LOGGER_PREFIX = "aeronpy.node"
CLI_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def node_logger(member_id: int, level: "str | int | None" = None) -> logging.Logger:
    """The logger of one node; ``level`` (e.g. the config's ``log_level``) is applied if given."""
    logger = logging.getLogger(f"{LOGGER_PREFIX}.{member_id}")
    if level is not None:
        logger.setLevel(level.upper() if isinstance(level, str) else level)
    return logger


def logger_for_config(config: object) -> logging.Logger:
    """`node_logger` for a `NodeConfig`."""
    return node_logger(getattr(config, "member_id"), getattr(config, "log_level", None))


def configure_cli_logging(level: "str | int" = "INFO", stream=None) -> None:
    """Send aeronpy's logs to stderr with timestamps (for ``aeronpy node``; libraries don't)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(CLI_FORMAT))
    root = logging.getLogger("aeronpy")
    for old in list(root.handlers):
        if getattr(old, "_aeronpy_cli", False):
            root.removeHandler(old)
    handler._aeronpy_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


def log_transition(logger: logging.Logger, machine: str, old: object, new: object, reason: str,
                   level: int = logging.INFO) -> None:
    """One uniform line per state change: ``election CANVASS -> NOMINATE: <reason>``."""
    logger.log(level, "%s %s -> %s: %s", machine, getattr(old, "name", old),
               getattr(new, "name", new), reason)


class BurstLogger:
    """Logs a burst of events (dropped frames, rejected sessions) once per interval per reason.

    The first event of a quiet period is logged at once; later ones within ``interval_s`` are
    only counted, and the count is logged when the next event arrives after the interval or
    when `flush` is called (the agent calls it from its slow housekeeping tick and at close).
    The cost per event is one clock read and a dict update; the counters file keeps exact
    totals, this keeps the log readable.
    """

    def __init__(self, logger: logging.Logger, what: str = "dropped frames",
                 interval_s: float = 1.0, level: int = logging.WARNING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.what = what
        self.interval_s = interval_s
        self.level = level
        self._clock = clock
        self._pending: dict = {}      # reason -> events not yet logged
        self._pending_level: dict = {}  # reason -> the highest level they were recorded at
        self._window_start: dict = {}  # reason -> when the current window began

    def record(self, reason: str, count: int = 1, now: Optional[float] = None,
               level: Optional[int] = None) -> None:
        """Count ``count`` events; ``level`` (default: the logger's ``level``) is this record's
        level: a line summing several records takes the highest of theirs."""
        now = self._clock() if now is None else now
        level = self.level if level is None else level
        start = self._window_start.get(reason)
        if start is None:
            self._window_start[reason] = now
            self.logger.log(level, "%s %d (%s)", self.what, count, reason)
            return
        self._pending[reason] = self._pending.get(reason, 0) + count
        self._pending_level[reason] = max(level, self._pending_level.get(reason, level))
        if now - start >= self.interval_s:
            self._emit(reason, now)

    def _emit(self, reason: str, now: float) -> None:
        pending = self._pending.pop(reason, 0)
        level = self._pending_level.pop(reason, self.level)
        start = self._window_start[reason]
        if pending:
            self.logger.log(level, "%s %d (%s) in %.1f s", self.what, pending, reason,
                            max(now - start, 0.0))
            self._window_start[reason] = now
        else:
            del self._window_start[reason]   # quiet for a whole interval: next event logs at once

    def flush(self, now: Optional[float] = None) -> None:
        """Log what is pending for windows older than the interval (or everything at close)."""
        now = self._clock() if now is None else now
        for reason in list(self._window_start):
            if now - self._window_start[reason] >= self.interval_s:
                self._emit(reason, now)

    def close(self) -> None:
        """Log every pending count, whatever its age."""
        now = self._clock()
        for reason in list(self._window_start):
            self._emit(reason, now)
