"""Review s22 of the thread-audit commits (cafc94c, 87b50e3, fa42bf1): interleavings of
close() the audit's tests do not force (each failed before its fix, this session).

- Invoker mode: a close asked from inside a cycle (a service callback, or a cluster shutdown)
  is carried out by do_work() *inside* its drive lock; a close() claimed meanwhile by another
  thread waits for that lock, and the deferred close() waits (now without a bound) for the
  other one to finish: two threads wait for each other for ever (before cafc94c the second
  wait gave up after 30 s).
- A signal handler's close() landing in start() after ``_thread`` is set but before the
  thread has started: close() joins a thread that was never started, which raises
  RuntimeError out of the handler; the claim stays taken, so no later close() closes.
- close() with a *received* snapshot's commit job hung on the disk (the SnapshotReceiver's
  verify_and_commit, on the same BackgroundJobs thread as the node's own snapshots): the
  Snapshotter has nothing in flight, so it joins the jobs thread with no bound.
Every wait is bounded; each test ends whatever the unfixed code leaves hanging.
"""
from __future__ import annotations

import signal
import threading
import time

import pytest

from aeronpy import Role
from aeronpy.cluster import node as node_module
from aeronpy.cluster import snapshotting
from tests.cluster.test_thread_audit import _drive_until, _SignalCloses, _started, _ThreadingWith
from tests.ops.opsfiles import one_member_node


def _wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.001)
    return predicate()


@pytest.mark.parametrize("asked_by", ["service callback", "cluster shutdown"])
def test_deferred_close_in_do_work_and_a_concurrent_close_do_not_deadlock(tmp_path, asked_by):
    node = one_member_node(tmp_path)
    assert _drive_until(node, lambda: node.role == Role.LEADER), "no leader"
    real_do_work = node._do_work
    armed = [True]
    other = threading.Thread(target=node.close, name="other-closer", daemon=True)

    def cycle(now_ns):
        work = real_do_work(now_ns)
        if armed[0]:
            armed[0] = False
            if asked_by == "service callback":
                node.close()                    # deferred: runs once this cycle is done
            else:
                node._stop_by_cluster_action()  # what NodeAdmin calls on a committed shutdown
            other.start()                       # e.g. a SIGTERM handled on another thread
            assert _wait_for(lambda: "closer" in node._close_claim, 5.0), "other close() never claimed"
        return work
    node._do_work = cycle
    errors: list = []

    def drive():
        try:
            node.do_work()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    driver = threading.Thread(target=drive, name="app-driver", daemon=True)
    driver.start()
    try:
        deadline = time.monotonic() + 5     # a one-member node closes in well under 1 s
        for t in (driver, other):
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in (driver, other) if t.is_alive()]
        assert not stuck, f"deadlocked: {stuck} still waiting"
        assert not errors and node.closed and node.failure is None
    finally:
        node._close_done.set()              # unblocks the deferred close's wait, if stuck
        driver.join(20)
        other.join(20)
        node.close()


def test_a_signal_handler_closing_the_node_just_before_the_thread_starts(tmp_path, monkeypatch):
    node = one_member_node(tmp_path)
    made: list = []
    raised: list = []
    try:
        with _SignalCloses(node) as sig:
            class _LateThread(threading.Thread):
                def start(self):
                    sig.arrive()            # start() set node._thread, released the lock
                    super().start()

            def thread_factory(*args, **kwargs):
                made.append(_LateThread(*args, **kwargs))
                return made[-1]
            monkeypatch.setattr(node_module, "threading", _ThreadingWith(thread_factory))
            try:
                node.start()
            except RuntimeError as exc:
                raised.append(exc)          # "cannot join thread before it is started"
            monkeypatch.undo()
            assert sig.fired == 1
        for t in _started(made):
            t.join(5)
            assert not t.is_alive(), "a duty thread still runs on the closed node"
        assert node.closed, f"the signal handler's close() did not close the node: {raised!r}"
        assert node.failure is None
    finally:
        monkeypatch.undo()
        node._stop.set()
        for t in _started(made):
            t.join(5)
        node.close()
        if not node.closed:                 # the claim is stuck: close it for the cleanup
            node._close_claim.clear()
            node._thread = None
            node.close()


def test_close_with_a_hung_received_snapshot_commit_returns(tmp_path, monkeypatch):
    # close()'s waits on snapshot work, made short (as test_thread_audit does)
    monkeypatch.setattr(snapshotting.Snapshotter.wait, "__defaults__", (0.3,))
    monkeypatch.setattr(snapshotting, "SNAPSHOT_CLOSE_TIMEOUT_S", 0.3)
    node = one_member_node(tmp_path)
    hung = threading.Event()
    release = threading.Event()

    def verify_and_commit_on_a_hung_disk():
        hung.set()
        release.wait(20)
    closer = None
    try:
        assert _drive_until(node, lambda: node.role == Role.LEADER), "no leader"
        # the state SnapshotReceiver.on_chunk leaves after a transfer's last chunk
        receiver = node.snapshots.receiver
        receiver._committing = node.snapshots.jobs.submit(verify_and_commit_on_a_hung_disk)
        assert hung.wait(5), "the commit job never started"
        assert node.snapshots.snapshotter._inflight is None
        closer = threading.Thread(target=node.close, name="closer", daemon=True)
        closer.start()
        closer.join(5)
        assert not closer.is_alive(), "close() still waits for the hung commit job"
    finally:
        release.set()
        if closer is not None:
            closer.join(20)
        node.close()
