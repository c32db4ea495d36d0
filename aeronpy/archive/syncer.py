"""A background thread that runs the archive's data syncs, so fsync never blocks the duty cycle.

The duty cycle `submit`s "make everything written up to index N durable" with the handles it
touched; requests that arrive while a sync runs are merged into the next one (group commit
across duty cycles). ``fdatasync`` releases the GIL, so the duty cycle keeps running meanwhile.
The first error stops the thread and is kept for the duty cycle to raise.
"""
from __future__ import annotations

import threading
import time
from typing import Callable


class BackgroundSyncer:
    def __init__(self, sync_batch: Callable[[int, list, bool], None],
                 when_idle: Callable[[], None], name: str = "aeronpy-archive-sync"):
        """``sync_batch(target_index, handles, sync_dir)`` makes the batch durable;
        ``when_idle()`` runs when no request is waiting (cheap housekeeping syncs)."""
        self._sync_batch = sync_batch
        self._when_idle = when_idle
        self._cond = threading.Condition()
        self._target = 0
        self._handles: set = set()
        self._sync_dir = False
        self._has_work = False
        self._busy = False
        self._stopping = False
        self.completed = 0                      # highest index made durable
        # time.monotonic_ns() when the thread last finished a step (a batch, or the idle
        # housekeeping): a caller timing a stall counts from here, not from its own request,
        # which may have waited behind a marker sync it did not ask for
        self.last_step_ns = time.monotonic_ns()
        self.error: BaseException | None = None
        # Called on this thread each time ``completed`` advances (before the idle housekeeping),
        # so a duty cycle parked in select can be woken instead of finding out at its next park.
        self.on_complete: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, target_index: int, handles: list, sync_dir: bool) -> None:
        with self._cond:
            if self.error is not None or self._stopping:
                return
            self._target = max(self._target, target_index)
            self._handles.update(handles)
            self._sync_dir = self._sync_dir or sync_dir
            self._has_work = True
            self._cond.notify_all()

    def drain(self, timeout_s: float = 60.0) -> bool:
        """Wait until every submitted request is done (or failed); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: (not self._has_work and not self._busy)
                                       or self.error is not None, timeout_s)

    def lower_to(self, index: int) -> None:
        """The log was cut to end at ``index`` (a truncated tail, a reset at a snapshot):
        nothing past it is durable any more, whatever was synced before. Call when drained.
        Else the next poll took the old ``completed`` for the new entries written at those
        indexes, and a follower acknowledged them before they were synced."""
        with self._cond:
            self.completed = min(self.completed, index)
            self._target = min(self._target, index)

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Finish what was submitted and end the thread, waiting ``timeout_s`` in all; False
        when the thread is still busy (a hung sync: it is left to end on its own)."""
        deadline = time.monotonic() + timeout_s
        self.drain(timeout_s)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._has_work or self._stopping)
                if not self._has_work:
                    return
                target, handles, sync_dir = self._target, list(self._handles), self._sync_dir
                self._handles, self._sync_dir, self._has_work = set(), False, False
                self._busy = True
            try:
                self._sync_batch(target, handles, sync_dir)
                with self._cond:
                    self.completed = max(self.completed, target)
                    idle = not self._has_work
                self.last_step_ns = time.monotonic_ns()
                notify = self.on_complete
                if notify is not None:
                    notify()
                if idle:
                    self._when_idle()
                    self.last_step_ns = time.monotonic_ns()
            except BaseException as exc:  # kept for the duty cycle; nothing more is synced
                with self._cond:
                    self.error = exc
                    self._busy = False
                    self._cond.notify_all()
                return
            with self._cond:
                self._busy = False
                self._cond.notify_all()
