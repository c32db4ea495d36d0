"""close() of a ClusterNode against its own duty cycle (node-level review).

- close() from another thread while the duty cycle is busy past the join timeout (a long
  service callback or on_take_snapshot) went on closing beside the running cycle: the
  hand-over met a core awaiting advance(rd) and close() raised RuntimeError, leaving sockets,
  files and the data dir's lock open.
- Two threads closing one node at once both handed over (two threads driving one core) and
  both ran every closer: one raised, and on_terminate ran twice.
- close() from a service callback ran the hand-over inside the apply: RuntimeError into the
  service (a leader); the node kept running.
- A failure during the hand-over (a service raising in on_role_change as the leader steps
  down) propagated out of close() with nothing closed: the counters read "running", the pid
  file and lock stayed.
Every wait is bounded.
"""
from __future__ import annotations

import os
import threading
import time

import pytest

from aeronpy import ClusterClient, Role
from aeronpy.cluster import node as node_module
from aeronpy.cluster.config import NodeConfig
from aeronpy.cluster.counters import CountersReader
from aeronpy.cluster.node import ClusterNode
from aeronpy.cluster.nodefiles import read_errors
from aeronpy.service import ClusteredService
from aeronpy.testing.process_cluster import free_udp_ports
from aeronpy.testing.services import EchoService
from tests.ops.opsfiles import one_member_node


def _wait(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def _three(tmp_path, services=EchoService):
    ports = free_udp_ports(6)
    members = [{"id": i, "host": "127.0.0.1", "consensus_port": ports[2 * i],
                "ingress_port": ports[2 * i + 1]} for i in range(3)]
    nodes = []
    try:
        for i in range(3):
            cfg = NodeConfig.from_dict({"cluster_id": 7, "data_dir": str(tmp_path / f"n{i}"),
                                        "log_level": "WARNING", "members": members},
                                       member_id=i)
            nodes.append(ClusterNode(cfg, [services()]))
        for n in nodes:
            n.start()

        def one_leader():
            leaders = [n for n in nodes if n.role == Role.LEADER]
            return len(leaders) == 1 and all(n.leader_id == leaders[0].member_id for n in nodes)
        assert _wait(one_leader), "no leader"
    except BaseException:
        for n in nodes:
            n.close()
        raise
    return nodes, next(n for n in nodes if n.role == Role.LEADER)


class _Events(ClusteredService):
    """Echo; b"slow" holds the callback; b"close" closes the node from the callback."""

    def __init__(self):
        self.events: list = []
        self.node = None
        self.slow_s = 0.0
        self.inside = threading.Event()
        self.close_errors: list = []

    def on_session_message(self, session, timestamp_ns, message):
        data = bytes(message)
        if data == b"slow":
            self.inside.set()
            time.sleep(self.slow_s)
            self.events.append("slow done")
        elif data == b"close":
            try:
                self.node.close()
            except Exception as exc:  # noqa: BLE001 - what the test checks
                self.close_errors.append(exc)
            self.events.append("close returned")
        if session is not None:
            session.offer(message)

    def on_terminate(self, cluster):
        self.events.append("terminate")


def test_close_waits_for_a_duty_cycle_busy_past_the_join_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(node_module, "_DUTY_THREAD_JOIN_S", 0.2, raising=False)
    svc = _Events()
    node = one_member_node(tmp_path, svc)
    svc.slow_s = 5.5                 # past the 5 s join timeout close() had (now patched lower)
    node.start()
    client = ClusterClient.connect(node.config.ingress_endpoints, timeout_s=5)
    try:
        assert client.request(b"a") == b"a"
        client.offer(b"slow")
        client.flush()
        assert svc.inside.wait(5)
        node.close()                 # raised RuntimeError before the fix
    finally:
        client.close()
        node.close()
    assert node.closed and node.failure is None
    assert svc.events == ["slow done", "terminate"]
    assert not os.path.exists(os.path.join(node.config.data_dir, "node.pid"))
    assert CountersReader(node.config.data_dir).status().state == "stopped"


def test_two_threads_closing_one_leader_at_once(tmp_path):
    nodes, leader = _three(tmp_path)
    try:
        svc = leader.module.container.services[0]
        calls = []

        def on_terminate(cluster):
            calls.append(threading.current_thread().name)
            time.sleep(0.3)
        svc.on_terminate = on_terminate
        barrier = threading.Barrier(2)
        errors = []

        def close():
            barrier.wait(5)
            try:
                leader.close()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            errors.append(None if leader.closed else "returned before the node was closed")

        threads = [threading.Thread(target=close) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        assert errors == [None, None]
        assert leader.failure is None
        assert len(calls) == 1
        assert CountersReader(leader.config.data_dir).status().state == "stopped"
        others = [n for n in nodes if n is not leader]
        assert _wait(lambda: any(n.role == Role.LEADER for n in others))
    finally:
        for n in nodes:
            n.close()


def test_close_from_a_service_callback_of_a_leader(tmp_path):
    nodes, leader = _three(tmp_path, services=_Events)
    client = None
    try:
        svc = leader.module.container.services[0]
        svc.node = leader
        client = ClusterClient.connect(leader.config.ingress_endpoints, timeout_s=5)
        client.offer(b"close")
        client.flush()
        assert _wait(lambda: leader.closed or leader.failure is not None)
        assert svc.close_errors == []            # RuntimeError before the fix
        assert leader.failure is None and leader.closed
        assert svc.events[:2] == ["close returned", "terminate"]
        others = [n for n in nodes if n is not leader]
        assert _wait(lambda: any(n.role == Role.LEADER for n in others))
        assert all(n.failure is None for n in others)
    finally:
        if client is not None:
            client.close()
        for n in nodes:
            n.close()


def test_close_from_a_service_callback_in_invoker_mode(tmp_path):
    svc = _Events()
    node = one_member_node(tmp_path, svc)
    svc.node = node
    stop = threading.Event()
    raised = []

    def drive():
        while not stop.is_set() and not node.closed:
            try:
                if node.do_work() == 0:
                    time.sleep(0.0005)
            except Exception as exc:  # noqa: BLE001
                raised.append(exc)
                return
    driver = threading.Thread(target=drive)
    driver.start()
    client = None
    try:
        client = ClusterClient.connect(node.config.ingress_endpoints, timeout_s=5)
        client.offer(b"close")
        client.flush()
        assert _wait(lambda: node.closed or raised or svc.close_errors)
    finally:
        stop.set()
        driver.join(10)
        if client is not None:
            client.close()
        node.close()
    assert svc.close_errors == [] and raised == []
    assert node.failure is None
    assert svc.events == ["close returned", "terminate"]


def test_a_failure_during_the_hand_over_still_closes_the_node(tmp_path):
    nodes, leader = _three(tmp_path)
    try:
        svc = leader.module.container.services[0]

        def on_role_change(role):
            if role != Role.LEADER:
                raise ValueError("role change bug")
        svc.on_role_change = on_role_change
        leader.close()                            # raised ServiceError before the fix
        assert leader.closed
        assert type(leader.failure).__name__ == "ServiceError"
        assert not os.path.exists(os.path.join(leader.config.data_dir, "node.pid"))
        assert CountersReader(leader.config.data_dir).status().state == "failed"
        assert any("role change bug" in e.text for e in read_errors(leader.config.data_dir))
    finally:
        for n in nodes:
            n.close()


def test_close_twice_and_close_from_on_terminate_return_at_once(tmp_path):
    node = one_member_node(tmp_path)
    svc = node.module.container.services[0]
    svc.on_terminate = lambda cluster: node.close()    # re-entrant close
    t0 = time.monotonic()
    node.close()
    node.close()
    assert time.monotonic() - t0 < 5.0 and node.closed and node.failure is None


@pytest.mark.parametrize("mode", ["thread", "invoker"])
def test_do_work_from_another_thread_after_close_does_nothing(tmp_path, mode):
    node = one_member_node(tmp_path)
    if mode == "thread":
        node.start()
    node.close()
    assert node.do_work() == 0
    with pytest.raises(RuntimeError, match="closed"):
        node.start()
