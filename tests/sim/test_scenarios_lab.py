"""Scenario tests on SimCluster after the MIT 6.5840 Raft lab tests, each bounded in
simulated time. Invariants are checked after every event by the simulator itself."""
from __future__ import annotations

import pytest

from aeronpy.core import Role

from .helpers import converge, make_sim, propose, states, wait_leader


def test_initial_election():
    sim = make_sim(3, seed=11)
    leader = wait_leader(sim)
    term = sim.core(leader).term
    sim.run_for(2000)            # no faults: no new election, same leader
    assert sim.leader() == leader and sim.core(leader).term == term
    assert all(sim.core(m).term == term for m in range(3))
    sim.check()


def test_reelection_after_leader_loss_and_old_leader_rejoins():
    sim = make_sim(3, seed=12)
    old = wait_leader(sim)
    sim.isolate(old)
    start = sim.now_ns
    new = wait_leader(sim, among={m for m in range(3) if m != old})
    assert (sim.now_ns - start) / 1e6 < 1000, "a crashed leader must be replaced in well under a second"
    sim.heal()
    sim.run_for(500)
    assert sim.leader() == new and sim.core(old).role == Role.FOLLOWER
    # no quorum: no leader; quorum back: a leader again
    others = [m for m in range(3) if m != new]
    sim.partition({new}, {others[0]}, {others[1]})
    sim.run_for(2000)
    assert sim.leader() is None, states(sim)
    sim.heal()
    wait_leader(sim)
    sim.check()


def test_many_elections_with_seven_members():
    sim = make_sim(7, seed=13)
    wait_leader(sim)
    rng = __import__("random").Random(13)
    for _ in range(10):
        down = set(rng.sample(range(7), 3))
        sim.partition(down, set(range(7)) - down)
        wait_leader(sim, among=set(range(7)) - down)
        sim.heal()
        sim.run_for(100)
    wait_leader(sim)
    sim.check()


def test_basic_agreement():
    sim = make_sim(3, seed=14)
    wait_leader(sim)
    client = sim.client()
    for i in range(3):
        assert client.request(b"x%d" % i, timeout_s=1.0) == b"ok:x%d" % i
    converge(sim)
    assert [sim.service(m).applied for m in range(3)] == [[b"x0", b"x1", b"x2"]] * 3


def test_follower_failure():
    sim = make_sim(3, seed=15)
    leader = wait_leader(sim)
    client = sim.client()
    assert client.request(b"a") == b"ok:a"
    followers = [m for m in range(3) if m != leader]
    sim.crash(followers[0])
    assert client.request(b"b") == b"ok:b", "one follower down: still a majority"
    sim.crash(followers[1])
    index = propose(sim, b"c")
    sim.run_for(1000)
    assert sim.core(leader).commit_index < index, "no majority: nothing commits"
    sim.check()


def test_leader_failure():
    sim = make_sim(3, seed=16)
    old = wait_leader(sim)
    client = sim.client()
    assert client.request(b"a") == b"ok:a"
    sim.crash(old)
    assert client.request(b"b", timeout_s=2.0) == b"ok:b"
    new = sim.leader()
    assert new is not None and new != old
    sim.crash(new)
    index = propose(sim, b"c", member=new) if sim.alive(new) else 0
    sim.run_for(1000)
    assert sim.leader() is None and index == 0
    sim.restart(old)
    sim.restart(new)
    assert client.request(b"d", timeout_s=2.0) == b"ok:d"
    converge(sim)
    assert sim.service(old).applied == [b"a", b"b", b"d"]


def test_fail_agree_disconnected_follower_catches_up():
    sim = make_sim(3, seed=17)
    leader = wait_leader(sim)
    client = sim.client()
    follower = (leader + 1) % 3
    sim.isolate(follower)
    for i in range(5):
        assert client.request(b"v%d" % i) == b"ok:v%d" % i
    sim.heal()
    converge(sim)
    assert sim.service(follower).applied == [b"v%d" % i for i in range(5)]


def test_fail_no_agree_without_majority():
    sim = make_sim(5, seed=18)
    leader = wait_leader(sim)
    sim.run_for(100)
    cut_off = {(leader + k) % 5 for k in (1, 2, 3)}
    sim.partition({leader, (leader + 4) % 5}, cut_off)
    index = propose(sim, b"lonely", member=leader)
    assert index > 0
    sim.run_for(300)
    assert sim.core(leader).commit_index < index
    sim.heal()
    converge(sim)
    new_leader = sim.leader()
    assert all(sim.core(m).log.last_index == sim.core(new_leader).log.last_index for m in range(5))
    sim.check()


def test_concurrent_proposals_from_many_clients():
    sim = make_sim(3, seed=19)
    wait_leader(sim)
    clients = [sim.client() for _ in range(5)]
    for round_ in range(10):
        for n, client in enumerate(clients):
            client.offer(b"c%d-%d" % (n, round_))
    assert sim.run_until(lambda: all(c.pending == 0 for c in clients), 3000)
    converge(sim)
    applied = sim.service(0).applied
    assert len(applied) == 50 and len(set(applied)) == 50, "every message exactly once"
    assert all(sim.service(m).applied == applied for m in range(3))
    for n in range(5):   # each client's messages in its own order
        mine = [a for a in applied if a.startswith(b"c%d-" % n)]
        assert mine == [b"c%d-%d" % (n, r) for r in range(10)]


def test_rejoin_of_partitioned_old_leader():
    sim = make_sim(3, seed=20)
    old = wait_leader(sim)
    client = sim.client()
    assert client.request(b"before") == b"ok:before"
    sim.isolate(old)
    stale = [propose(sim, b"stale%d" % i, member=old) for i in range(3)]
    assert all(stale)
    wait_leader(sim, among={m for m in range(3) if m != old})
    assert client.request(b"after", timeout_s=2.0) == b"ok:after"
    sim.heal()
    converge(sim)
    assert sim.service(old).applied == [b"before", b"after"], "the old leader's uncommitted entries are gone"


def test_backup_over_long_divergent_logs():
    """Leader isolated with one follower accumulates 50 uncommitted entries; the other three
    commit 50 of their own; healed, the losers' logs are repaired with few round trips."""
    sim = make_sim(5, seed=21)
    leader = wait_leader(sim)
    minority = {leader, (leader + 1) % 5}
    majority = set(range(5)) - minority
    client = sim.client()
    sim.partition(minority, majority | {client.client_id})
    for i in range(50):
        propose(sim, b"lost%d" % i, member=leader)
    sim.run_for(50)
    wait_leader(sim, among=majority)
    for i in range(50):
        assert client.offer(b"won%d" % i) > 0
    assert sim.run_until(lambda: client.pending == 0, 3000), states(sim)
    follower = next(iter(minority - {leader}))
    sim.crash(follower)
    sim.restart(follower)
    rejects_before = sim.net.stats()["sent"]
    sim.heal()
    converge(sim, within_ms=3000)
    applied = sim.service(leader).applied
    assert [a for a in applied if a.startswith(b"lost")] == []
    assert [a for a in applied if a.startswith(b"won")] == [b"won%d" % i for i in range(50)]
    assert sim.net.stats()["sent"] - rejects_before < 500


def test_message_count_budgets():
    """An election costs a bounded number of messages, and so does an idle second."""
    sim = make_sim(3, seed=22)
    wait_leader(sim)
    elected_after = sim.net.sent
    assert elected_after <= 3 * 2 * 2 + 2 * 2 + 10, f"election cost {elected_after} messages"
    sim.run_for(200)
    start = sim.net.sent
    sim.run_for(1000)
    idle = sim.net.sent - start
    # 20 heartbeats/s to 2 followers plus their replies = 80
    assert idle <= 90, f"an idle second cost {idle} messages"
    assert idle >= 60, f"heartbeats are missing: {idle}"


@pytest.mark.parametrize("which", ["all", "some"])
def test_persistence_across_crashes(which):
    sim = make_sim(3, seed=23)
    wait_leader(sim)
    client = sim.client()
    for i in range(5):
        assert client.request(b"k%d=%d" % (i, i)) == b"ok:k%d=%d" % (i, i)
    victims = [0, 1, 2] if which == "all" else [sim.leader(), (sim.leader() + 1) % 3]
    for m in victims:
        sim.crash(m)
    for m in victims:
        sim.restart(m)
    assert client.request(b"after", timeout_s=2.0) == b"ok:after"
    converge(sim)
    for m in range(3):
        assert sim.service(m).state == {b"k%d" % i: b"%d" % i for i in range(5)}
        assert sim.service(m).applied[-1] == b"after"


def test_figure8_with_crashes():
    """As the lab's Figure8 test: leaders crash at random moments with entries in flight."""
    sim = make_sim(5, seed=24, max_append_bytes=1)
    rng = __import__("random").Random(24)
    for round_ in range(40):
        leader = sim.leader()
        if leader is not None:
            propose(sim, b"f%d" % round_, member=leader)
        sim.run_for(rng.choice((5, 30, 200)))
        leader = sim.leader()
        if leader is not None and rng.random() < 0.5:
            sim.crash(leader)
        live = [m for m in range(5) if sim.alive(m)]
        if len(live) < 3:
            sim.restart(rng.choice([m for m in range(5) if not sim.alive(m)]))
    for m in range(5):
        if not sim.alive(m):
            sim.restart(m)
    wait_leader(sim, within_ms=2000)
    propose(sim, b"final")
    converge(sim, within_ms=3000)
    sim.check()


def test_unreliable_agreement():
    sim = make_sim(5, seed=25)
    sim.network(drop=0.1, duplicate=0.05, delay_ms=(0, 25))
    wait_leader(sim, within_ms=3000)
    clients = [sim.client() for _ in range(3)]
    for i in range(20):
        for c in clients:
            c.offer(b"u%d" % i)
    assert sim.run_until(lambda: all(c.pending == 0 for c in clients), 20_000), states(sim)
    sim.network()
    converge(sim)
    assert len(sim.service(0).applied) == 60


@pytest.mark.parametrize("unreliable", [False, True])
def test_churn(unreliable):
    sim = make_sim(5, seed=26 + unreliable)
    if unreliable:
        sim.network(drop=0.1, duplicate=0.02, delay_ms=(0, 20))
    rng = __import__("random").Random(26)
    client = sim.client()
    for step in range(30):
        client.offer(b"ch%d" % step)
        sim.run_for(rng.randrange(10, 150))
        live = [m for m in range(5) if sim.alive(m)]
        dead = [m for m in range(5) if not sim.alive(m)]
        roll = rng.random()
        if roll < 0.3 and len(live) > 2:
            sim.crash(rng.choice(live))
        elif roll < 0.6 and dead:
            sim.restart(rng.choice(dead))
        elif roll < 0.8:
            members = list(range(5))
            rng.shuffle(members)
            sim.partition(set(members[:2]), set(members[2:]))
        else:
            sim.heal()
    sim.heal()
    sim.network()
    for m in range(5):
        if not sim.alive(m):
            sim.restart(m)
    assert sim.run_until(lambda: client.pending == 0, 5000), states(sim)
    converge(sim)
    applied = sim.service(0).applied
    assert applied == [b"ch%d" % i for i in range(30)], "each offered message exactly once, in order"
