"""The node's park and close() against its driver (a review of the idle park).

- The park was ``select``, which refuses descriptors from 1024 up: a node embedded in a
  process holding many files got such sockets, and its duty-cycle thread died at the first
  park with nothing recorded (node.failure None, the counters still "LEADER").
- While a Ready waited for its fsync the park still watched the consensus socket, whose
  datagrams the cycle left queued then: every park returned at once, the whole sync long.
  (Since a node steps on while its sync runs, it reads that socket throughout: the park
  watches it always.)
- In invoker mode close() from another thread ran its hand-over and closed sockets and the
  archive beside the application's running do_work().
Every wait is bounded.
"""
from __future__ import annotations

import os
import resource
import select
import socket
import threading
import time

import pytest

from aeronpy import ClusterClient, Role
from aeronpy.cluster import idle as idle_module
from aeronpy.service import ClusteredService
from aeronpy.testing.waits import wait_until
from tests.ops.opsfiles import one_member_node



@pytest.fixture
def high_descriptors():
    """Hold enough descriptors that the next ones opened are numbered 1024 or more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1400
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"the hard limit on open files is {hard}, below {want}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    filler = []
    try:
        while True:
            fd = os.open(os.devnull, os.O_RDONLY)
            filler.append(fd)
            if fd >= 1100:
                break
        yield
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _serve_one_request(node) -> bytes:
    node.start()
    assert wait_until(lambda: node.role == Role.LEADER or node.failure is not None, 10), "no leader"
    assert node.failure is None, node.failure
    client = ClusterClient.connect(node.config.ingress_endpoints, timeout_s=5)
    try:
        time.sleep(0.05)                       # several parks, each on the high descriptors
        return client.request(b"x", timeout_s=5)
    finally:
        client.close()


def test_a_node_whose_sockets_are_numbered_above_1024_serves(tmp_path, high_descriptors):
    node = one_member_node(tmp_path)
    try:
        assert node._consensus_fd >= 1024 and node._wake_pipe[0] >= 1024
        assert _serve_one_request(node) == b"x"
        assert node._thread.is_alive() and node.failure is None
    finally:
        node.close()


def test_a_park_that_fails_is_recorded_as_the_nodes_failure(tmp_path, high_descriptors,
                                                            monkeypatch):
    # control: with select (no poll here) the same node's park raises; that must stop the
    # node as a failed cycle does, recorded, not end the thread in silence
    monkeypatch.delattr(select, "poll")
    node = one_member_node(tmp_path)
    try:
        node.start()
        assert wait_until(lambda: node.failure is not None, 5), "the park's error went unrecorded"
        assert isinstance(node.failure, ValueError)
        node._thread.join(5)
        assert not node._thread.is_alive()      # the duty cycle ended, as after a failed cycle
    finally:
        node.close()


def test_the_park_watches_the_consensus_socket_while_a_sync_runs(tmp_path):
    """A node whose writes wait for their sync steps on (a follower takes the next appends):
    a datagram on the consensus socket ends its park at once, and the cycle reads it."""
    node = one_member_node(tmp_path)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        node._unsynced_hi = 1                  # as while a sync runs
        peer.sendto(b"queued", ("127.0.0.1", node.config.members[0].consensus_port))
        assert node._park(2.0) is True
        assert node._woken_by == [node._consensus_fd]
        node._unsynced_hi = 0
        fd = node._consensus_fd
        assert wait_until(lambda: node.do_work() is not None
                          and select.select([fd], [], [], 0)[0] == [], 2.0), \
            "the queued datagram was not read"
    finally:
        peer.close()
        node.close()


def test_select_waiter_reports_the_objects_it_was_given():
    a, b = socket.socketpair()
    try:
        seen = []
        wait = idle_module.select_waiter([a, b.fileno()], note=seen.append)
        assert wait(0.001) is False and seen[-1] == []
        b.send(b"1")
        assert wait(1.0) is True and seen[-1] == [a]
        a.send(b"2")
        assert wait(1.0) is True and seen[-1] == [a, b.fileno()]
    finally:
        a.close()
        b.close()


class _Slow(ClusteredService):
    """Echo; b"slow" holds the callback until released."""

    def __init__(self):
        self.events: list = []
        self.inside = threading.Event()
        self.release = threading.Event()

    def on_session_message(self, session, timestamp_ns, message):
        if bytes(message) == b"slow":
            self.inside.set()
            self.release.wait(10)
            self.events.append("slow done")
        session.offer(message)

    def on_terminate(self, cluster):
        self.events.append("terminate")


class _NoLock:
    """The drive lock taken away (the control)."""

    def acquire(self, timeout=-1):
        return True

    def release(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("locked", [True, False], ids=["fixed", "control-without-lock"])
def test_close_from_another_thread_waits_for_the_applications_do_work(tmp_path, locked):
    svc = _Slow()
    node = one_member_node(tmp_path, svc)       # never started: the application drives it
    if not locked:
        node._drive_lock = _NoLock()
    driver_errors: list = []
    stop = threading.Event()

    def drive():
        while not stop.is_set() and not node.closed:
            try:
                node.do_work()
            except Exception as exc:  # noqa: BLE001 - what the test checks
                driver_errors.append(exc)
                return
            time.sleep(0.0005)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    client = None
    closer = None
    try:
        assert wait_until(lambda: node.role == Role.LEADER, 10), "no leader"
        client = ClusterClient.connect(node.config.ingress_endpoints, timeout_s=5)
        assert client.request(b"a", timeout_s=5) == b"a"
        client.offer(b"slow")
        client.flush()
        assert svc.inside.wait(5)
        closer = threading.Thread(target=node.close, daemon=True)
        closer.start()
        closer.join(0.3)                        # a close beside the cycle is done by now
        svc.events.append("close returned" if not closer.is_alive() else "close waiting")
        svc.release.set()
        closer.join(10)
        assert not closer.is_alive()
    finally:
        svc.release.set()
        stop.set()
        driver.join(10)
        if client is not None:
            client.close()
        node.close()
    if locked:
        assert svc.events == ["close waiting", "slow done", "terminate"]
        assert driver_errors == [] and node.failure is None and node.closed
    else:
        # the failure the lock prevents: the services closed under the running callback
        assert svc.events[:2] == ["terminate", "close returned"], svc.events


class _ClosesInside(ClusteredService):
    """b"close": waits until told, then closes the node from the callback."""

    def __init__(self):
        self.node = None
        self.inside = threading.Event()
        self.go = threading.Event()
        self.took = None

    def on_session_message(self, session, timestamp_ns, message):
        if bytes(message) == b"close":
            self.inside.set()
            self.go.wait(10)
            started = time.monotonic()
            self.node.close()
            self.took = time.monotonic() - started
        session.offer(message)


def test_close_from_a_callback_while_another_thread_closes_does_not_wait_for_it(tmp_path):
    """Invoker mode: thread B's close() claims the close and waits for the application's
    cycle (the drive lock); a callback in that cycle then calls close() too and waited 30 s
    for B's to finish: each waited for the other (a review of the lock)."""
    svc = _ClosesInside()
    node = one_member_node(tmp_path, svc)
    svc.node = node
    stop = threading.Event()

    def drive():
        while not stop.is_set() and not node.closed:
            try:
                node.do_work()
            except Exception:  # noqa: BLE001 - a closed node's last cycle
                return
            time.sleep(0.0005)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    client = None
    try:
        assert wait_until(lambda: node.role == Role.LEADER, 10), "no leader"
        client = ClusterClient.connect(node.config.ingress_endpoints, timeout_s=5)
        client.offer(b"close")
        client.flush()
        assert svc.inside.wait(5)
        closer = threading.Thread(target=node.close, daemon=True)
        closer.start()
        assert wait_until(lambda: node._close_claimed, 5)
        svc.go.set()
        closer.join(15)
        assert not closer.is_alive() and node.closed
        assert svc.took is not None and svc.took < 5, svc.took
    finally:
        svc.go.set()
        stop.set()
        driver.join(15)
        if client is not None:
            client.close()
        node.close()


def test_select_waiter_parks_in_poll_above_1024_and_never_wakes_early(high_descriptors,
                                                                    monkeypatch):
    asked = []
    real_poll = select.poll

    class Recording:
        def __init__(self):
            self.inner = real_poll()

        def register(self, fd, events):
            self.inner.register(fd, events)

        def poll(self, ms):
            asked.append(ms)
            return self.inner.poll(ms)
    monkeypatch.setattr(select, "poll", Recording)
    a, b = socket.socketpair()
    try:
        assert a.fileno() >= 1024
        seen = []
        wait = idle_module.select_waiter([a, b.fileno()], note=seen.append)
        # poll waits whole milliseconds: rounded up, never down (a timer served early finds
        # itself not due and parks once more, a whole millisecond)
        assert wait(0.0012) is False and seen[-1] == [] and asked[-1] == 2
        assert wait(0.00001) is False and asked[-1] == 1
        assert wait(0) is False and asked[-1] == 0
        b.send(b"1")
        assert wait(1.0) is True and seen[-1] == [a] and asked[-1] == 1000
    finally:
        a.close()
        b.close()
