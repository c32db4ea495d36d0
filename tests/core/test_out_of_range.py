"""A consensus message whose term, index or offset no member could reach is a counted drop.

Found by an adversarial review: one forged Heartbeat(term = 2**63 - 1) 'from' the leader, on a
cluster without a secret, was adopted; the follower's next election computed term + 1, which
does not fit an i64, and the node stopped. The huge term was already in node.state, so the
member stopped again at every restart: two such datagrams ended a 3-member cluster for good.
"""
from __future__ import annotations

import time

import pytest

from aeronpy._codec import encode
from aeronpy.core.messages import (MAX_WIRE_VALUE, AppendEntries, CanvassPosition, Heartbeat,
                                   InstallSnapshot, RequestVote, out_of_range)
from aeronpy.service import Role
from aeronpy.testing.inproc import inproc_cluster

I64_MAX = 2 ** 63 - 1


@pytest.mark.parametrize("msg", [
    Heartbeat(I64_MAX, 0),
    Heartbeat(MAX_WIRE_VALUE + 1, 0),
    CanvassPosition(1, I64_MAX, 1, 1),
    RequestVote(I64_MAX, 1, 1, False),
    AppendEntries(1, I64_MAX, 1, 0, b"", 0),
    AppendEntries(1, 3, 1, -1, b"", 0),
    InstallSnapshot(1, 5, 1, I64_MAX, 10, False, b"x"),
])
def test_values_no_member_reaches_are_out_of_range(msg):
    assert out_of_range(msg)


def test_control_values_members_do_reach_are_in_range():
    assert not out_of_range(Heartbeat(MAX_WIRE_VALUE, MAX_WIRE_VALUE))
    assert not out_of_range(AppendEntries(7, 100, 6, 90, b"", 0))
    assert not out_of_range(InstallSnapshot(1, 5, 1, 0, 10, True, b"x"))


def _pump_until(pump, predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pump()
        if predicate():
            return True
    return False


def test_a_forged_huge_term_from_the_leader_is_dropped_and_the_cluster_serves_on():
    with inproc_cluster(timeout_s=20) as (nodes, pump, client):
        replies = []

        def request(payload: bytes) -> bytes:
            assert client.offer(payload) > 0
            n = len(replies)
            assert _pump_until(pump, lambda: client.poll_egress(
                lambda cid, p: replies.append(bytes(p))) >= 0 and len(replies) > n)
            return replies[-1]

        assert request(b"before") == b"before"
        leader = next(n for n in nodes if n.role == Role.LEADER)
        followers = [n for n in nodes if n.role == Role.FOLLOWER]
        term = leader.core.term
        for follower in followers:           # what the attacker's datagrams carried
            for msg in (Heartbeat(I64_MAX, 0), CanvassPosition(I64_MAX, I64_MAX, 1, 1),
                        InstallSnapshot(I64_MAX, 5, 1, 0, 10, False, b"x")):
                follower._on_consensus_message(leader.config.member_id,
                                               memoryview(encode(msg)))
            assert follower.core.term == term and follower.failure is None
            assert follower.core.counters.get("dropped_out_of_range") == 3
        for i in range(5):
            assert request(b"after-%d" % i) == b"after-%d" % i
        assert all(n.failure is None and n.core.term == term for n in nodes)


def test_a_term_far_past_the_members_own_is_dropped_even_under_the_ceiling():
    """A review found the ceiling alone was a trap: a member that adopted a forged term of
    exactly 2**62 campaigned at 2**62 + 1, which every peer dropped, so no leader was ever
    elected again (and node.state kept the term). A peer's term may now run at most
    MAX_TERM_STEP past the member's own; the control: a jump of a thousand elections is taken."""
    from aeronpy.core import CoreConfig, RaftCore
    from aeronpy.core.messages import MAX_TERM_STEP
    core = RaftCore(CoreConfig(0, (0, 1, 2)), rng=__import__("random").Random(1))
    core.step(1, Heartbeat(MAX_WIRE_VALUE, 0), 1_000)
    assert core.term == 0 and core.counters.get("dropped_out_of_range") == 1
    core.step(1, Heartbeat(MAX_TERM_STEP + 1, 0), 2_000)
    assert core.term == 0 and core.counters.get("dropped_out_of_range") == 2
    core.step(1, Heartbeat(1000, 0), 3_000)                 # the control
    assert core.term == 1000 and core.leader_id == 1
