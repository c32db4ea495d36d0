"""Thread audit of ClusterNode: interleavings between the duty cycle, an application thread,
a signal handler and the snapshot thread, each forced with wrappers and events (no sleeps).

- A signal handler that calls ``close()`` runs on the main thread between two bytecodes of
  whatever the main thread is doing. In invoker mode that is a ``do_work()``: the drive lock
  is reentrant, so close() ran to the end inside the cycle (sockets, archive and counters
  closed), and the rest of the cycle then raised into the application's loop.
- The same handler landing in ``start()`` (after its checks, before the thread exists): the
  node closed, then start() started a duty thread on it, which parked on closed descriptors
  and recorded a failure on a node that had closed cleanly.
- ``start()`` while a ``do_work()`` runs on another thread: the thread check in do_work()
  happens before the cycle and ``_run`` takes no lock, so two cycles drove one core at once.
- ``close()`` while the snapshot thread is stuck (a hung fsync of the snapshot file) never
  returned: ``BackgroundJobs.close`` is ``ThreadPoolExecutor.shutdown(wait=True)``.
Every wait is bounded; each test cleans up whatever the unfixed code leaves running.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from aeronpy import Role
from aeronpy.cluster import node as node_module
from aeronpy.cluster import snapshotting
from tests.ops.opsfiles import one_member_node


def _drive_until(node, predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        if node.do_work() == 0:
            time.sleep(0.0005)
    return predicate()


class _SignalCloses:
    """SIGUSR1 closes ``node``; ``arrive()`` delivers it on the calling (main) thread at once,
    as a SIGTERM landing at that bytecode would."""

    def __init__(self, node):
        self.node = node
        self.fired = 0
        self._old = None

    def __enter__(self):
        self._old = signal.signal(signal.SIGUSR1, self._handler)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGUSR1, self._old)

    def _handler(self, signum, frame):
        self.fired += 1
        self.node.close()

    def arrive(self) -> None:
        signal.raise_signal(signal.SIGUSR1)     # the handler runs before this returns


@pytest.mark.parametrize("where", ["before the cycle", "after the cycle"])
def test_a_signal_handler_closing_the_node_during_do_work(tmp_path, where):
    node = one_member_node(tmp_path)
    try:
        assert _drive_until(node, lambda: node.role == Role.LEADER), "no leader"
        with _SignalCloses(node) as sig:
            armed = [True]
            if where == "before the cycle":
                # _cycle's first clock read: inside do_work, before _cycle_thread is set
                real_clock = node._clock

                def clock():
                    if armed[0]:
                        armed[0] = False
                        sig.arrive()
                    return real_clock()
                node._clock = clock
            else:
                # _cycle's counters publish: after _cycle_thread is cleared, still in do_work
                real_publish = node._publish_counters

                def publish():
                    if armed[0]:
                        armed[0] = False
                        sig.arrive()
                    return real_publish()
                node._publish_counters = publish
                node._counters_due_ns = 0
            raised = None
            try:
                node.do_work()          # ValueError (released counters memoryview) before a fix
            except Exception as exc:  # noqa: BLE001 - what the test checks
                raised = exc
            assert sig.fired == 1
        assert raised is None, f"do_work() raised after a signal handler closed the node: {raised!r}"
        assert node.closed and node.failure is None
        assert node.do_work() == 0
    finally:
        node.close()


def _started(threads) -> list:
    return [t for t in threads if t.ident is not None]     # a refusing start() starts none


class _ThreadingWith:
    """``threading`` as node.py sees it, with ``Thread`` replaced."""

    def __init__(self, thread_factory):
        self.Thread = thread_factory

    def __getattr__(self, name):
        return getattr(threading, name)


def test_a_signal_handler_closing_the_node_during_start(tmp_path, monkeypatch):
    node = one_member_node(tmp_path)
    made: list = []
    try:
        with _SignalCloses(node) as sig:
            def thread_factory(*args, **kwargs):
                sig.arrive()                # after start()'s checks, before the thread exists
                made.append(threading.Thread(*args, **kwargs))
                return made[-1]
            monkeypatch.setattr(node_module, "threading", _ThreadingWith(thread_factory))
            try:
                node.start()                # returned before a fix: "started" a closed node
            except RuntimeError:
                pass                        # refusing is as good: the node is closed
            monkeypatch.undo()
            assert sig.fired == 1 and node.closed
        for t in _started(made):
            t.join(5)
            assert not t.is_alive(), "a duty thread still runs on the closed node"
        # before a fix the thread parked on the closed descriptors: EBADF became node.failure
        assert node.failure is None, f"a cleanly closed node reports a failure: {node.failure!r}"
    finally:
        monkeypatch.undo()
        node._stop.set()                    # the unfixed code never sets it: end that thread
        for t in _started(made):
            t.join(5)
        node.close()


def test_start_while_do_work_runs_on_another_thread(tmp_path):
    node = one_member_node(tmp_path)
    inside = [0]
    overlap = threading.Event()
    entered = threading.Event()
    release = threading.Event()
    real_do_work = node._do_work

    def counted(now_ns):
        inside[0] += 1
        if inside[0] > 1:
            overlap.set()
        try:
            if threading.current_thread().name == "app-driver" and not entered.is_set():
                entered.set()
                release.wait(10)            # the application's cycle, held open by the test
            return real_do_work(now_ns)
        finally:
            inside[0] -= 1
    node._do_work = counted
    driver_errors: list = []

    def drive():
        try:
            node.do_work()
        except Exception as exc:  # noqa: BLE001
            driver_errors.append(exc)
    driver = threading.Thread(target=drive, name="app-driver")
    driver.start()
    try:
        assert entered.wait(5)
        try:
            node.start()                    # returned before a fix
        except RuntimeError:
            pass                            # refused: a do_work() is running
        # with a fix the duty thread (if any) cannot enter a cycle while the driver is in one
        assert not overlap.wait(2), "two duty cycles ran at once"
    finally:
        release.set()
        driver.join(10)
        node.close()
    assert not driver.is_alive() and not driver_errors


def _is_snapshot_tmp(handle) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{handle}").endswith(".snap.tmp")
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names fds through /proc")
def test_close_with_a_hung_snapshot_job_returns(tmp_path, monkeypatch):
    # the waits close() may spend on the job, made short (the names a fix may use, too)
    monkeypatch.setattr(snapshotting.Snapshotter.wait, "__defaults__", (0.3,))
    monkeypatch.setattr(snapshotting, "SNAPSHOT_CLOSE_TIMEOUT_S", 0.3, raising=False)
    node = one_member_node(tmp_path)
    hung = threading.Event()
    release = threading.Event()
    fs = node.archive.fs
    real_fsync = fs.fsync

    def fsync(handle):
        if _is_snapshot_tmp(handle):
            hung.set()
            release.wait(20)                # a hung disk, ended by the test below
        return real_fsync(handle)
    fs.fsync = fsync
    closer = None
    try:
        assert _drive_until(node, lambda: node.role == Role.LEADER and node.module.applied_index >= 1)
        assert node.snapshots.snapshotter.take(node.module.applied_index, "admin request")
        assert hung.wait(5), "the snapshot job never reached its fsync"
        closer = threading.Thread(target=node.close, name="closer")
        closer.start()
        closer.join(10)
        assert not closer.is_alive(), "close() still waits for the hung snapshot job"
    finally:
        release.set()
        if closer is not None:
            closer.join(20)
        node.close()


def test_a_sync_wake_up_never_writes_to_a_closed_pipe(tmp_path, monkeypatch):
    """The archive's sync thread wakes the duty cycle with a byte on a pipe
    (``_signal_synced``); close() closes that pipe. The sync thread read the pipe's descriptors,
    then wrote: a close in between left it writing to a closed descriptor, or to whatever had
    taken the number by then (a byte into another file or socket)."""
    node = one_member_node(tmp_path, file_sync="data")
    try:
        assert node._sync_pipe is not None
        read_fd, write_fd = node._sync_pipe
        pipe_inode = os.fstat(write_fd).st_ino
        entered = threading.Event()
        proceed = threading.Event()
        seen = []
        real_write = os.write

        def write(fd, data):
            if threading.current_thread().name == "fake-syncer":
                entered.set()
                proceed.wait(5)
                try:
                    seen.append(os.fstat(fd).st_ino == pipe_inode)
                except OSError:
                    seen.append(False)          # closed under the write
            return real_write(fd, data)
        monkeypatch.setattr(node_module.os, "write", write)
        syncer = threading.Thread(target=node._signal_synced, name="fake-syncer")
        syncer.start()
        assert entered.wait(5)
        closer = threading.Thread(target=node._close_sync_pipe, name="closer")
        closer.start()
        closer.join(1.0)                        # a fix holds it until the write is done
        proceed.set()
        syncer.join(5)
        closer.join(5)
        assert not syncer.is_alive() and not closer.is_alive()
        assert seen == [True], "the wake-up byte went to a closed (or reused) descriptor"
        assert node._sync_pipe is None
    finally:
        monkeypatch.undo()
        node.close()


def test_a_signal_handler_closing_the_node_while_close_claims_it(tmp_path):
    """A signal handler's close() landing inside the first close()'s claim, on the same thread:
    the claim was a non-reentrant lock held there, so the handler blocked on it for ever. Now
    it sees the close is its own thread's and returns; the interrupted close finishes."""
    node = one_member_node(tmp_path)
    assert _drive_until(node, lambda: node.role == Role.LEADER), "no leader"
    returned = []

    class _Claim(dict):
        armed = True

        def setdefault(self, key, value):
            won = super().setdefault(key, value)
            if _Claim.armed:
                _Claim.armed = False
                sig.arrive()            # between the claim and the rest of close()
            return won
    with _SignalCloses(node) as sig:
        real_handler = sig._handler

        def handler(signum, frame):
            real_handler(signum, frame)
            returned.append(node.closed)
        signal.signal(signal.SIGUSR1, handler)
        node._close_claim = _Claim()
        node.close()
    assert sig.fired == 1 and returned == [False]     # the handler's call returned at once
    assert node.closed and node.failure is None
