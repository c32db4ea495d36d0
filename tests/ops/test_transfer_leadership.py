"""``aeronpy tool transfer-leadership`` on a real 3-process cluster: the leadership moves to the
follower named (or the most up-to-date one) without stopping anything, a client under load
goes on with nothing lost or applied twice, and bad targets are refused with the reason.

Why it exists: clients that cannot reach the leader's ingress while its peers can (a firewall
change, a broken route) wait for as long as that lasts, since Raft sees a healthy leader
(bench/partition_trial, scenario g); before, only stopping the leader moved its leadership.
"""
from __future__ import annotations

import threading
import time

import pytest

import aeronpy

from tests.ops.test_tool_cluster import add, counters, make_cluster, tool, wait_until  # noqa: F401

pytestmark = pytest.mark.process


def _leader(pc) -> int:
    assert wait_until(lambda: pc.leader(0.1) is not None, 20.0)
    return pc.leader(1.0)


def test_the_leadership_moves_to_the_best_follower_while_a_client_keeps_adding(make_cluster):
    pc = make_cluster(config={"election_timeout_ms": 300, "heartbeat_interval_ms": 50,
                              "leader_heartbeat_timeout_ms": 600})
    old = _leader(pc)
    follower = next(m for m in range(3) if m != old)
    term = counters(pc, old)["leadership_term"]
    acknowledged, problems, stop = [], [], threading.Event()

    def keep_adding():
        with aeronpy.ClusterClient.connect(pc.ingress_endpoints, timeout_s=10.0) as client:
            deadline = time.monotonic() + 30.0
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    acknowledged.append(add(client, 1, timeout_s=5.0))
                except aeronpy.AeronpyError as exc:      # a timeout here is a failure below
                    problems.append(repr(exc))

    worker = threading.Thread(target=keep_adding)
    worker.start()
    try:
        assert wait_until(lambda: len(acknowledged) >= 50, 20.0)
        # through a follower's data dir: the request is followed to the leader
        code, data, err = tool(pc, "transfer-leadership", follower)
        assert code == 0, (data, err)
        assert data["completed"] is True and data["to"] != old and data["leader"] == data["to"]
        assert data["term"] > term
        assert wait_until(lambda: pc.leader(0.1) == data["to"], 10.0)
        settled = len(acknowledged)
        assert wait_until(lambda: len(acknowledged) >= settled + 50, 20.0)   # goes on
    finally:
        stop.set()
        worker.join(40.0)
    assert not worker.is_alive() and problems == []
    # every add applied exactly once, in order: the replies count 1, 2, 3, ...
    assert acknowledged == list(range(1, len(acknowledged) + 1))
    assert counters(pc, old)["role"] == 0          # the old leader follows, still running
    assert all(pc.alive(m) for m in range(3))


def test_a_named_member_takes_it_and_bad_targets_are_refused(make_cluster):
    pc = make_cluster()
    old = _leader(pc)
    target = (old + 2) % 3
    code, data, err = tool(pc, "transfer-leadership", old, "--to", str(target))
    assert code == 0 and data["completed"] and data["leader"] == target, (data, err)
    new = target
    code, data, err = tool(pc, "transfer-leadership", old, "--to", str(new))
    assert code == 2 and f"member {new} leads already" in err, (data, err)
    code, data, err = tool(pc, "transfer-leadership", old, "--to", "9")
    assert code == 2 and "member 9 is not a voting member" in err, (data, err)
    code, data, err = tool(pc, "transfer-leadership", old, "--to", "-1")
    assert code == 2 and "a member id is 0 or more" in err, (data, err)
    assert pc.leader(1.0) == new                   # the refusals changed nothing
