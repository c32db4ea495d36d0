"""A duty cycle applies committed entries for a bounded time, then lets the sockets and timers
run: a burst of service callbacks that are each far under the election timeout no longer holds
one cycle for their sum, so heartbeats keep flowing and the leader keeps its term.

Found by a user's trial (2026-11-28): 30 messages of 30 ms each held every member's cycle for
0.9 s and the term went from 1 to 3. Three threaded nodes here (a callback's sleep lets the
other nodes' threads run); the control runs the same burst with the budget switched off and
must see an election. Every wait is bounded."""
from __future__ import annotations

import time

import pytest

from aeronpy import ClusterClient, Role
from aeronpy.cluster.admin_client import admin_request
from aeronpy.cluster.counters import CountersReader
from aeronpy.cluster.node import ClusterNode
from aeronpy.cluster.node_admin import ADMIN_SHUTDOWN
from aeronpy.service import ClusteredService

from .test_review_node_close import _three, _wait

CALLBACK_S = 0.03
MESSAGES = 40          # 1.2 s of callbacks on every member, six election timeouts


class _Slow(ClusteredService):
    def on_session_message(self, session, timestamp_ns, message):
        time.sleep(CALLBACK_S)
        session.offer(bytes(message))


def _published(node, name: str) -> int:
    with CountersReader(node.config.data_dir) as reader:
        return reader.read()[name]


def _burst(tmp_path, budget: bool):
    nodes, leader = _three(tmp_path, services=_Slow)
    try:
        if not budget:
            for n in nodes:
                n._apply_budget_ns = 0           # the control: one cycle applies all it has
        term = leader.term
        client = ClusterClient.connect(f"127.0.0.1:{leader.config.members[leader.member_id].ingress_port}",
                                       timeout_s=10)
        try:
            for i in range(MESSAGES):
                assert client.offer(b"m%d" % i) > 0
            client.flush()
            replies = []
            deadline = time.monotonic() + 30
            while len(replies) < MESSAGES and time.monotonic() < deadline:
                client.poll_egress(lambda _cid, payload: replies.append(bytes(payload)))
                client.wait_for_egress(0.01)
        finally:
            client.close()
        # every member applied the whole burst (followers a moment after the leader)
        assert _wait(lambda: all(n.module.applied_index >= leader.module.applied_index
                                 for n in nodes), 20)
        spent = [n.module.counters["apply_budget_spent"] for n in nodes]
        # published in the counters file too, for describe and the metrics
        assert _wait(lambda: [_published(n, "apply_budget_spent") for n in nodes] == spent, 5)
        terms = [n.term for n in nodes]
        return term, terms, sorted(replies), spent
    finally:
        for n in nodes:
            n.close()


def test_a_burst_of_slow_callbacks_keeps_the_leader_and_its_term(tmp_path):
    term, terms, replies, spent = _burst(tmp_path, budget=True)
    assert replies == sorted(b"m%d" % i for i in range(MESSAGES))
    assert terms == [term] * 3, (term, terms)
    assert all(s > 0 for s in spent), spent      # each member applied it over many cycles


def test_control_without_the_budget_the_same_burst_deposes_the_leader(tmp_path):
    term, terms, replies, spent = _burst(tmp_path, budget=False)
    assert spent == [0, 0, 0]
    assert max(terms) > term, (term, terms)


class _OneSlow(ClusteredService):
    def on_session_message(self, session, timestamp_ns, message):
        if bytes(message) == b"slow":
            time.sleep(0.12)                     # over heartbeat_interval_ms (50)
        session.offer(bytes(message))


def test_a_cycle_longer_than_the_heartbeat_interval_is_logged_once_with_the_cause(tmp_path, caplog):
    caplog.set_level("WARNING", logger="aeronpy")
    nodes, leader = _three(tmp_path, services=_OneSlow)
    try:
        client = ClusterClient.connect(f"127.0.0.1:{leader.config.members[leader.member_id].ingress_port}",
                                       timeout_s=10)
        try:
            assert client.request(b"fast", timeout_s=10) == b"fast"
            quiet = [r for r in caplog.records if "duty cycle took" in r.getMessage()]
            assert client.request(b"slow", timeout_s=10) == b"slow"
            assert client.request(b"slow", timeout_s=10) == b"slow"   # within 10 s: counted only
            assert _wait(lambda: all(n.module.applied_index >= leader.module.applied_index
                                     for n in nodes), 20)
        finally:
            client.close()
    finally:
        for n in nodes:
            n.close()
    slow = [r for r in caplog.records if "duty cycle took" in r.getMessage()]
    assert quiet == []
    by_member = sorted(r.name for r in slow)
    assert by_member == sorted(f"aeronpy.node.{n.member_id}" for n in nodes), by_member
    message = slow[0].getMessage()
    assert "longer than heartbeat_interval_ms (50 ms" in message and "service callback" in message
    took_ms = float(message.split("took ")[1].split(" ms")[0])
    assert took_ms >= 120


class _FollowersSlow(ClusteredService):
    """Slow on followers only: they apply a backlog the leader is long done with."""

    def on_start(self, cluster, snapshot):
        self.cluster = cluster

    def on_session_message(self, session, timestamp_ns, message):
        if self.cluster.role != Role.LEADER:
            time.sleep(0.025)
        session.offer(bytes(message))


def _shutdown_behind(tmp_path, monkeypatch, live_by_term_only: bool):
    """120 messages the leader applies at once and the followers over ~3 s, then a cluster
    shutdown: the leader stops after its quit linger, the followers elect a new term before
    they reach the shutdown entry (a review's reproduction)."""
    if live_by_term_only:      # the control: the check before the fix, the entry's term only
        monkeypatch.setattr(ClusterNode, "committed_in_term",
                            lambda self, index, term: term == self.core.term)
    nodes, leader = _three(tmp_path, services=_FollowersSlow)
    try:
        endpoints = [f"127.0.0.1:{leader.config.members[i].ingress_port}" for i in range(3)]
        client = ClusterClient.connect(endpoints[leader.member_id], timeout_s=10)
        try:
            for i in range(120):
                assert client.offer(b"m%d" % i) > 0
            client.flush()
            replies = []
            deadline = time.monotonic() + 15
            while len(replies) < 120 and time.monotonic() < deadline:
                client.poll_egress(lambda _cid, payload: replies.append(1))
                client.wait_for_egress(0.01)
        finally:
            client.close()
        assert len(replies) == 120
        _endpoint, code, payload = admin_request(endpoints, endpoints[leader.member_id],
                                                 ADMIN_SHUTDOWN, b"", 10)
        assert code == 0, payload
        assert _wait(lambda: leader.closed, 20)
        _wait(lambda: all(n.closed for n in nodes), 8)   # the followers' backlog: ~3 s at most
        return [n.closed for n in nodes], [n._admin.stop_index for n in nodes]
    finally:
        for n in nodes:
            n.close()


def test_a_shutdown_stops_followers_that_reach_it_only_after_their_term_ended(tmp_path, monkeypatch):
    closed, stopped_at = _shutdown_behind(tmp_path, monkeypatch, live_by_term_only=False)
    assert closed == [True] * 3, stopped_at
    assert len(set(stopped_at)) == 1 and stopped_at[0] > 120, stopped_at


def test_control_deciding_by_the_current_term_alone_leaves_the_followers_running(tmp_path, monkeypatch):
    closed, stopped_at = _shutdown_behind(tmp_path, monkeypatch, live_by_term_only=True)
    assert closed.count(True) == 1 and stopped_at.count(0) == 2, (closed, stopped_at)
