"""Review: the scripted service of tests/cluster/test_review_module_divergence.py (every call
of the Cluster facade from every log-ordered callback) on SimCluster, under crashes, restarts,
partitions, snapshots and install-snapshot: the invariant checker (state digests at every
snapshot index, restore fidelity, exactly once) holds, and live members end with the same
service records. Bounded in simulated time."""
from __future__ import annotations

import json
import random

import pytest

from aeronpy.testing import SimCluster
from tests.cluster.test_review_module_divergence import COMMANDS, Scripted


class OneReply(Scripted):
    single_reply = True


def services():
    return [OneReply(), OneReply()]


def records(sim, m):
    return [json.dumps(sim.service(m, service_id=i).record) for i in (0, 1)]


@pytest.mark.parametrize("seed", range(4))
def test_scripted_service_under_faults_keeps_every_member_alike(seed):
    rng = random.Random(seed)
    sim = SimCluster(members=3, seed=seed, service=services, snapshot_log_bytes=3000,
                     session_timeout_ms=1500,
                     module_options=dict(reply_cache_messages=4, max_timers=12,
                                         service_message_queue_max=6, proposals_per_tick_max=4))
    clients = [sim.client() for _ in range(3)]
    down = None
    for step in range(120):
        c = rng.randrange(len(clients))
        if not clients[c].is_connected and rng.random() < 0.3:
            clients[c].close()
            clients[c] = sim.client()
        text = ";".join(rng.choice(COMMANDS).format(
            a=rng.randint(1, 20), b=rng.randint(0, 300), c=rng.randint(0, 300),
            sid=rng.randint(1, 60)) for _ in range(rng.randint(1, 3)))
        clients[c].offer(text.encode(), service_id=rng.choice((0, 0, 1)))
        sim.run_for(rng.choice((1, 5, 20)))
        for cl in clients:
            cl.poll_egress(lambda cid, p: None)
        roll = rng.random()
        if roll < 0.04 and down is None:
            down = rng.randrange(3)
            sim.crash(down)
        elif roll < 0.10 and down is not None:
            sim.restart(down)
            down = None
        elif roll < 0.12:
            sim.snapshot()
        elif roll < 0.14:
            sim.partition({rng.randrange(3)}, set())
            sim.run_for(300)
            sim.heal()
    if down is not None:
        sim.restart(down)
    sim.heal()
    sim.run_for(3000)
    for cl in clients:
        cl.poll_egress(lambda cid, p: None)
    sim.run_until(lambda: sim.leader() is not None and len({
        sim.core(m).applied_index for m in range(3)}) == 1, 5000)
    sim.check()
    assert not sim.stopped
    ends = {sim.core(m).applied_index for m in range(3)}
    assert len(ends) == 1, ends
    assert records(sim, 0) == records(sim, 1) == records(sim, 2)
    assert sim.snapshot_totals["snapshots_recorded"] > 0
