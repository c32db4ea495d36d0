"""`BackgroundRemover`: deletes files the archive no longer needs, and frees big memory
blocks the in-memory log replaced, on a thread of its own.

Why: after a snapshot the duty cycle purges whole log segments below it (and old snapshot
files). Unlinking a 64 MiB segment took 12-24 ms each on the development VM, and more when
the kernel was still writing its pages back (unlink waits for that); four in a row stalled a
node's duty cycle for tens of milliseconds, and the open-loop benchmark's worst request with
it (bench/results/perf.md, "Archive deletes off the duty cycle"). Nothing waits on a deletion:
the archive forgets the files at once and recovery already treats segment files below its
start as stale (a crash in the middle of a purge leaves exactly that), so the unlink itself
can happen later, in the order submitted (oldest first, so what remains after a crash is
always a contiguous suffix).

The same thread releases the payload blocks the log index replaces (``release``): freeing a
block of hundreds of MiB is an munmap of every page it touched, tens of ms, which the block's
``__dealloc__`` does with the GIL released.

Bounded: the queue holds at most ``max_pending`` paths; a submit that finds it full waits for
the queue to empty and removes inline (the duty cycle pays, nothing is dropped, the order
holds). Failures are counted and logged, never raised into
the duty cycle: a file that could not be deleted costs disk space, not correctness.
"""
from __future__ import annotations

import collections
import logging
import threading
from typing import Callable, Optional

_log = logging.getLogger("aeronpy.archive")
MAX_PENDING = 4096


class _Release:
    """A queued object to drop (not a path)."""
    __slots__ = ("obj",)

    def __init__(self, obj: object):
        self.obj = obj


class BackgroundRemover:
    def __init__(self, remove: Callable[[str], None], max_pending: int = MAX_PENDING,
                 name: str = "aeronpy-archive-remover"):
        self._remove = remove
        self.max_pending = max_pending
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._busy = False          # the thread is removing a path it took off the queue
        self._stopping = False
        self.removed = 0            # files deleted
        self.inline = 0             # submits that found the queue full and removed inline
        self.failed = 0             # deletions that raised (logged)
        self.last_error: Optional[BaseException] = None
        self._name = name
        self._thread: Optional[threading.Thread] = None   # started by the first item queued

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0)

    def submit(self, path: str) -> None:
        """Delete ``path`` soon, after every path submitted before it."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("the archive's remover is closed")
            if len(self._queue) < self.max_pending:
                self._enqueue(path)
                return
            self.inline += 1
        self.drain()
        self._remove_one(path)

    def release(self, obj: object) -> None:
        """Drop this reference to ``obj`` on the thread (so its deallocation runs there)."""
        with self._cond:
            if self._stopping:
                return                  # closing: dropped here, as without a remover
            if len(self._queue) < self.max_pending:
                self._enqueue(_Release(obj))
                return
        # full (a flood of files): dropped by the caller

    def _enqueue(self, item) -> None:
        """Queue ``item`` (the condition's lock held); the thread starts with the first one, so
        an archive that never deletes anything (a tool reading it) never has one."""
        self._queue.append(item)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._cond.notify()

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every submitted path was handled; False if that took over ``timeout_s``."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout_s)

    def close(self, timeout_s: float = 30.0) -> bool:
        """Finish the queue (bounded wait) and stop the thread. True when nothing is left."""
        done = self.drain(timeout_s)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=1.0 if done else 0.1)
        if not done:
            _log.warning("archive remover: %d file(s) still to delete after %.0f s; recovery "
                         "treats leftover segments below the log's start as stale", self.pending,
                         timeout_s)
        return done

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                cond.wait_for(lambda: self._queue or self._stopping)
                if not self._queue:
                    return              # stopping, and nothing left
                item = self._queue.popleft()
                self._busy = True
            try:
                if type(item) is _Release:
                    item.obj = None     # the last reference, dropped here
                else:
                    self._remove_one(item)
                item = None
            finally:
                with cond:
                    self._busy = False
                    cond.notify_all()

    def _remove_one(self, path: str) -> None:
        try:
            self._remove(path)
        except FileNotFoundError:
            pass                        # gone already: what was asked
        except Exception as exc:       # OSError mostly; never into the duty cycle
            with self._cond:
                self.failed += 1
                self.last_error = exc
            _log.warning("could not delete %s: %r", path, exc)
            return
        with self._cond:
            self.removed += 1
