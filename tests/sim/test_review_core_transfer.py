"""Review: leadership transfer picks a follower that can take over.

``transfer_leadership()`` with no target (what a closing node's hand-over and the swarm use)
took the follower with the highest match, the first one on a tie. On an idle cluster every
follower has the same match, so a crashed follower with the lowest id was picked: the
TimeoutNow went nowhere, the leader refused proposals until the transfer aborted an election
timeout later, and a closing leader (ClusterNode._hand_over) then ran out its own deadline and
left, so the cluster waited for a further election timeout without a leader.
"""
from __future__ import annotations

import random

from aeronpy.core import Role
from aeronpy.core.messages import AppendEntries

from tests.core.harness import MS, PaperNet
from .helpers import make_sim, states, wait_leader


def test_the_default_transfer_target_is_a_live_follower_in_the_sim():
    sim = make_sim(5, seed=7)
    leader = wait_leader(sim)
    client = sim.client()
    assert client.request(b"x") == b"ok:x"
    dead = min(m for m in range(5) if m != leader)     # first in the leader's progress order
    sim.run_for(100)
    sim.crash(dead)
    sim.run_for(300)                                   # idle: every follower's match is equal
    lead = sim.core(leader)
    assert len({pr.match for pr in lead.leader_state.progress.values()}) == 1
    assert sim.transfer_leadership()
    # a transfer takes a few round trips; the election timeout is 200 ms
    assert sim.run_until(lambda: sim.leader() not in (None, leader), 100), states(sim)
    assert sim.leader() != dead
    assert client.request(b"y", timeout_s=1.0) == b"ok:y"


def test_best_transfer_target_prefers_a_follower_heard_from_recently():
    net = PaperNet(5, seed=3)
    net.elect(0)
    net[0].propose(16, b"a")
    net.flush(0)
    net.deliver_all()
    net.blocked = {(0, 1), (1, 0)}                     # member 1 dies
    for _ in range(10):                                # heartbeats answered by 2, 3 and 4
        net.tick(0, 50)
        net.deliver_all()
    ls = net[0].leader_state
    assert ls.progress[1].match == ls.progress[2].match == net[0].log.last_index
    assert net[0].transfer_leadership(None, net.now)
    assert ls.transfer_target in (2, 3, 4)


def test_a_live_follower_behind_a_dead_one_still_gets_the_transfer():
    """The dead follower acknowledged one entry more than the live ones had when it died;
    the live ones are then caught up by the transfer itself (it probes the target first)."""
    net = PaperNet(3, seed=5)
    net.elect(0)
    net[0].propose(16, b"a")
    net.flush(0)
    net.deliver_all()
    net.blocked = {(0, 2), (2, 0)}
    net[0].propose(16, b"b")
    net.flush(0)
    net.deliver_all()                                  # 1 acknowledges b, 2 never sees it
    net.blocked = {(0, 1), (1, 0)}                     # then 1 dies; 2 answers heartbeats
    for _ in range(10):
        net.tick(0, 50)
        for _ in range(100):                           # its catch-up appends are all lost
            net.take(src=0, dst=2, kind=AppendEntries)
            if not net.outbox:
                break
            src, dst, msg = net.outbox.pop(0)
            if (src, dst) not in net.blocked:
                net.step(dst, src, msg)
    ls = net[0].leader_state
    assert ls.progress[1].match > ls.progress[2].match
    assert net[0].transfer_leadership(None, net.now)
    assert ls.transfer_target == 2
    for _ in range(10):
        net.tick(0, 10)
        net.deliver_all()
        if net[2].role == Role.LEADER:
            break
    assert net[2].role == Role.LEADER and net[2].log.last_index >= 3
