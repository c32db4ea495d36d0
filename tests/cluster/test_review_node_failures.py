"""How a ClusterNode stops on a fault (node-level review).

- In invoker mode, do_work() after the failure ran the duty cycle on: the core, still waiting
  for advance(rd), raised RuntimeError each cycle, and each replaced node.failure (the cause
  was lost) and counted one more error; start() ran a failed node on a thread.
- close() after an archive failure called every service's on_terminate (documented: not
  after a failure).
- An I/O error in close()'s final sync was a log warning only: no node.failure, nothing in
  errors.log, and the counters said the node stopped cleanly.
- A service callback raising SystemExit (a BaseException) ended the duty-cycle thread with
  no failure recorded: the node read "running" then "stale" and ``aeronpy node`` never
  exited.
Every wait is bounded.
"""
from __future__ import annotations

import errno
import sys
import threading
import time

import pytest

from aeronpy import ClusterClient, Role
from aeronpy.archive.errors import ArchiveIOError
from aeronpy.cluster.counters import CountersReader
from aeronpy.cluster.node import ClusterNode
from aeronpy.cluster.nodefiles import read_errors
from aeronpy.service import ClusteredService
from aeronpy.testing.process_cluster import free_udp_ports
from tests.ops.opsfiles import one_member_node

RAW_ENTRY = 15


def _node(tmp_path, service=None, **config) -> ClusterNode:
    return one_member_node(tmp_path, service, **config)


def _settle(node: ClusterNode) -> None:
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and (node.role != Role.LEADER or node.commit_index < 1
                                           or node._unsynced_hi):
        node.do_work()
    assert node.role == Role.LEADER and node.commit_index >= 1 and not node._unsynced_hi


def _eio(*_args, **_kwargs):
    raise OSError(errno.EIO, "injected I/O error")


def _fail_by_write_error(node: ClusterNode) -> BaseException:
    """Invoker mode: make the next append fail, propose, run until do_work raises."""
    node.archive.fs.pwrite = _eio
    node.core.propose(RAW_ENTRY, b"x")
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            node.do_work()
        except Exception as exc:  # noqa: BLE001 - the failure under test
            return exc
    raise AssertionError("the write error never failed the node")


class _Terminations(ClusteredService):
    def __init__(self):
        self.terminated = 0

    def on_session_message(self, session, timestamp_ns, message):
        if bytes(message) == b"exit":
            sys.exit(3)
        if session is not None:
            session.offer(message)

    def on_terminate(self, cluster):
        self.terminated += 1


def test_do_work_after_a_failure_keeps_the_cause_and_does_nothing(tmp_path):
    node = _node(tmp_path)
    try:
        _settle(node)
        raised = _fail_by_write_error(node)
        first = node.failure
        assert isinstance(first, ArchiveIOError) and raised is first
        for _ in range(20):
            with pytest.raises(Exception):
                node.do_work()
        assert node.failure is first                   # a RuntimeError replaced it before
        entries = read_errors(node.config.data_dir)
        assert [e.count for e in entries] == [1] and "ArchiveIOError" in entries[0].text
        with pytest.raises(RuntimeError, match="failed"):
            node.start()                               # ran a failed node on a thread before
        assert node._thread is None
    finally:
        node.close()
    assert CountersReader(node.config.data_dir).status().state == "failed"


def test_no_on_terminate_after_an_archive_failure(tmp_path):
    svc = _Terminations()
    node = _node(tmp_path, svc)
    try:
        _settle(node)
        _fail_by_write_error(node)
    finally:
        node.close()
    assert node.closed and isinstance(node.failure, ArchiveIOError)
    assert svc.terminated == 0


def test_control_on_terminate_on_a_clean_close(tmp_path):
    svc = _Terminations()
    node = _node(tmp_path, svc)
    _settle(node)
    node.close()
    assert svc.terminated == 1 and node.failure is None
    assert CountersReader(node.config.data_dir).status().state == "stopped"


@pytest.mark.parametrize("file_sync,settled", [("none", True), ("data", True), ("data", False)])
def test_an_io_error_in_the_final_sync_fails_the_node(tmp_path, file_sync, settled):
    """settled: the last entry is durable before the disk fails (the marker's sync at close
    fails); else its fsync is still to come, and fails during close()'s hand-over."""
    node = _node(tmp_path, file_sync=file_sync)
    _settle(node)
    node.core.propose(RAW_ENTRY, b"x")
    node.do_work()                  # written; under data its sync may still be running
    if settled:
        _settle(node)
    elif file_sync != "none":
        hold = threading.Event()

        def held(handle):
            hold.wait(5)
            _eio()
        node.archive.fs.fdatasync = held
        node.core.propose(RAW_ENTRY, b"y")
        node.do_work()
        assert node._unsynced_hi            # a leader's write, advanced past: its sync runs
        threading.Timer(0.05, hold.set).start()
    fs = node.archive.fs
    fs.fdatasync = fs.fsync = _eio
    node.close()
    assert node.closed
    assert node.failure is not None                    # only a log warning before
    assert any("injected I/O error" in e.text or "I/O error" in e.text
               for e in read_errors(node.config.data_dir))
    assert CountersReader(node.config.data_dir).status().state == "failed"


def test_system_exit_in_a_service_fails_the_node(tmp_path):
    svc = _Terminations()
    node = _node(tmp_path, svc).start()
    client = None
    try:
        client = ClusterClient.connect(node.config.ingress_endpoints, timeout_s=5)
        assert client.request(b"a") == b"a"
        client.offer(b"exit")
        client.flush()
        deadline = time.monotonic() + 5.0
        while node.failure is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert isinstance(node.failure, SystemExit)    # None before: the thread just ended
        assert not node._thread.is_alive()
        assert any("SystemExit" in e.text for e in read_errors(node.config.data_dir))
    finally:
        if client is not None:
            client.close()
        node.close()
    assert node.closed and svc.terminated == 0
    assert CountersReader(node.config.data_dir).status().state == "failed"


def test_a_failed_thread_mode_node_closes_and_frees_its_threads(tmp_path):
    before = set(threading.enumerate())
    node = _node(tmp_path, file_sync="data", metrics_http_port=free_udp_ports(1)[0]).start()
    client = None
    try:
        client = ClusterClient.connect(node.config.ingress_endpoints, timeout_s=5)
        assert client.request(b"a") == b"a"
        node.archive.fs.fdatasync = _eio
        client.offer(b"b")
        client.flush()
        deadline = time.monotonic() + 5.0
        while node.failure is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert isinstance(node.failure, ArchiveIOError)
    finally:
        if client is not None:
            client.close()
        node.close()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and [t for t in threading.enumerate()
                                           if t not in before and t.is_alive()]:
        time.sleep(0.01)
    assert [t.name for t in threading.enumerate() if t not in before and t.is_alive()] == []
