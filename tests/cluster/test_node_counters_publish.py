"""While busy, the node publishes its counters at most every ``_COUNTERS_INTERVAL_NS`` instead
of after every duty cycle with work; the first empty cycle after work publishes at once, as
does a role or leader change. What a reader is promised
(docs/operations.md: figures updated by the duty cycle, duty_cycles counts every cycle) must
hold: a role change is visible after the cycle that made it, and after the interval every
figure, duty_cycles included, is current. Each check has a negative control."""
from __future__ import annotations

import random
import time

import pytest

from aeronpy.client import ClusterClient
from aeronpy.cluster import node as node_module
from aeronpy.cluster.config import NodeConfig
from aeronpy.cluster.counters import CountersReader
from aeronpy.cluster.node import ClusterNode
from aeronpy.cluster.timers import TimerTable
from aeronpy.service import ClusteredService, Role
from aeronpy.testing.process_cluster import free_udp_ports

INTERVAL_S = node_module._COUNTERS_INTERVAL_NS / 1e9     # the real one, whatever a test patches


def _lead(node) -> float:
    """Run a one-member node's duty cycle until it leads; returns the deadline (10 s from the
    start), which the caller's later waits share."""
    deadline = time.monotonic() + 10.0
    while node.role != Role.LEADER and time.monotonic() < deadline:
        node.do_work()
    return deadline


def _single_member(tmp_path, node_class=ClusterNode):
    ports = free_udp_ports(2)       # distinct: two port-0 binds in a row may return one port
    raw = {"cluster_id": 1, "data_dir": str(tmp_path / "m0"),
           "members": [{"id": 0, "host": "127.0.0.1", "consensus_port": ports[0],
                        "ingress_port": ports[1]}]}
    return node_class(NodeConfig.from_dict(raw, member_id=0), [ClusteredService()])


def _role_seen_at_once(tmp_path, node_class=ClusterNode) -> bool:
    """Drive a one-member node until it leads; True if the counters say so right after the
    cycle that made it leader."""
    node = _single_member(tmp_path, node_class)
    try:
        reader = CountersReader(node.config.data_dir)
        _lead(node)
        assert node.role == Role.LEADER
        values = reader.read()
        return values["role"] == int(Role.LEADER) and values["leader_id"] == 0
    finally:
        node.close()


class _RoleChangeNotPublished(ClusterNode):
    """Mutant: the role-change reset of the publish deadline is lost."""

    @property
    def _counters_due_ns(self):
        return self.__dict__.get("_due", 0)

    @_counters_due_ns.setter
    def _counters_due_ns(self, value):
        if value:
            self.__dict__["_due"] = value


def test_role_change_is_published_by_the_cycle_that_made_it(tmp_path):
    assert _role_seen_at_once(tmp_path)


def test_negative_control_role_change_without_publish_is_caught(tmp_path, monkeypatch):
    monkeypatch.setattr(node_module, "_COUNTERS_INTERVAL_NS", 60 * 1_000_000_000)
    assert not _role_seen_at_once(tmp_path, _RoleChangeNotPublished)


def _figures_current_after_interval(tmp_path) -> bool:
    node = _single_member(tmp_path)
    try:
        reader = CountersReader(node.config.data_dir)
        deadline = time.monotonic() + 10.0
        while node.commit_index < 1 and time.monotonic() < deadline:
            node.do_work()
        cycles = 0
        for _ in range(50):
            cycles += 1
            node.do_work()
        before = reader.read()["duty_cycles"]
        time.sleep(2 * INTERVAL_S + 0.002)
        node.do_work()
        values = reader.read()
        return (values["commit_index"] == node.commit_index and values["max_duty_cycle_ns"] > 0
                and values["duty_cycles"] >= before + 1 and values["last_update_ns"] > 0
                and values["duty_cycles"] >= cycles)
    finally:
        node.close()


def _figures_current_when_idle(tmp_path, node_class=ClusterNode) -> bool:
    """With the interval out of reach, a node that did work and then found none (the first
    empty cycle) has published what the work changed."""
    node = _single_member(tmp_path, node_class)
    try:
        reader = CountersReader(node.config.data_dir)
        deadline = _lead(node)
        member = node.config.members[0]
        client = ClusterClient.open(f"{member.host}:{member.ingress_port}")
        try:
            while not client.is_connected and time.monotonic() < deadline:
                node.do_work()
                client.do_work()
            committed = node.commit_index
            assert client.offer(b"work") > 0
            while node.commit_index == committed and time.monotonic() < deadline:
                node.do_work()
                client.do_work()
            while node.do_work() and time.monotonic() < deadline:
                pass                    # until the first empty cycle
            values = reader.read()
            return node.commit_index > committed and values["commit_index"] == node.commit_index
        finally:
            client.close()
    finally:
        node.close()


class _IdleCycleDoesNotPublish(ClusterNode):
    """Mutant: the first empty cycle after work does not publish."""

    @property
    def _work_unpublished(self):
        return False

    @_work_unpublished.setter
    def _work_unpublished(self, value):
        pass


def test_first_empty_cycle_after_work_publishes(tmp_path, monkeypatch):
    monkeypatch.setattr(node_module, "_COUNTERS_INTERVAL_NS", 60 * 1_000_000_000)
    assert _figures_current_when_idle(tmp_path)


def test_negative_control_idle_cycle_without_publish_is_caught(tmp_path, monkeypatch):
    monkeypatch.setattr(node_module, "_COUNTERS_INTERVAL_NS", 60 * 1_000_000_000)
    assert not _figures_current_when_idle(tmp_path, _IdleCycleDoesNotPublish)


def test_figures_are_current_after_the_publish_interval(tmp_path):
    assert _figures_current_after_interval(tmp_path)


def test_duty_cycles_counts_every_cycle(tmp_path):
    node = _single_member(tmp_path)
    try:
        reader = CountersReader(node.config.data_dir)
        start = reader.read()["duty_cycles"]
        for _ in range(200):
            node.do_work()
        time.sleep(2 * INTERVAL_S + 0.002)
        node.do_work()
        assert reader.read()["duty_cycles"] - start == 201
    finally:
        node.close()


def test_negative_control_stale_figures_are_caught(tmp_path, monkeypatch):
    monkeypatch.setattr(node_module, "_COUNTERS_INTERVAL_NS", 60 * 1_000_000_000)
    assert not _figures_current_after_interval(tmp_path)


# ---- TimerTable.has_due: the leader's tick skips due() when it says False ----------------
@pytest.mark.parametrize("seed", range(5))
def test_has_due_is_true_whenever_due_would_yield(seed):
    rng = random.Random(seed)
    table = TimerTable()
    for _ in range(300):
        op = rng.random()
        if op < 0.5:
            table.schedule(rng.randrange(3), rng.randrange(10), rng.randrange(1_000))
        elif op < 0.7:
            table.cancel(rng.randrange(3), rng.randrange(10))
        else:
            now = rng.randrange(1_200)
            if not table.has_due(now):
                assert list(table.due(now)) == []
            else:
                list(table.due(now))       # pop what is due, as the leader does


def test_has_due_at_the_deadline():
    table = TimerTable()
    assert not table.has_due(10**18)
    table.schedule(0, 1, 500)
    assert not table.has_due(499) and table.has_due(500)
