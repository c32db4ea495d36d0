"""etcd-style scenarios on SimCluster: dueling candidates, a disruptive follower held off by
the canvass, step-down on quorum loss, leadership transfer."""
from __future__ import annotations

from aeronpy.core import Role

from .helpers import converge, make_sim, states, wait_leader


def test_dueling_candidates_resolve_to_one_leader():
    """Without canvass, members partitioned away keep raising their terms; when they meet,
    the higher term wins the ballot but only an up-to-date log can be elected."""
    sim = make_sim(3, seed=31, pre_vote=False, check_quorum=False)
    leader = wait_leader(sim)
    client = sim.client()
    assert client.request(b"a") == b"ok:a"
    sim.partition({0}, {1}, {2})
    sim.run_for(1500)                       # everybody times out, again and again
    terms = [sim.core(m).term for m in range(3)]
    followers = [m for m in range(3) if m != leader]
    assert all(terms[m] > 2 for m in followers), terms    # the old leader (no check-quorum) stays put
    sim.heal()

    def one_leader_one_term():
        cores = [sim.core(m) for m in range(3)]
        return sum(c.role == Role.LEADER for c in cores) == 1 and len({c.term for c in cores}) == 1
    assert sim.run_until(one_leader_one_term, 3000), states(sim)
    new = sim.leader()
    sim.run_for(500)
    assert sim.leader() == new
    assert client.request(b"b", timeout_s=2.0) == b"ok:b"
    converge(sim)


def test_disruptive_follower_held_off_by_canvass():
    """A follower cut off for a long time comes back: with canvass it never raised its term,
    so the leader and the term stay as they were."""
    sim = make_sim(3, seed=32)
    leader = wait_leader(sim)
    term = sim.core(leader).term
    lonely = (leader + 1) % 3
    sim.isolate(lonely)
    sim.run_for(3000)
    assert sim.core(lonely).term == term, "a canvass must not raise the term"
    assert sim.core(lonely).election.transition_count >= 5, "it did canvass, again and again"
    sim.heal()
    sim.run_for(1000)
    assert sim.leader() == leader and all(sim.core(m).term == term for m in range(3)), states(sim)


def test_disruptive_follower_without_canvass_forces_an_election():
    """Control for the test above: without canvass the same history does disrupt."""
    sim = make_sim(3, seed=32, pre_vote=False, check_quorum=False)
    leader = wait_leader(sim)
    term = sim.core(leader).term
    lonely = (leader + 1) % 3
    sim.isolate(lonely)
    sim.run_for(3000)
    assert sim.core(lonely).term > term
    sim.heal()
    sim.run_for(1000)
    assert sim.core(sim.leader()).term > term


def test_leader_steps_down_on_quorum_loss():
    sim = make_sim(5, seed=33)
    leader = wait_leader(sim)
    others = {m for m in range(5) if m != leader}
    sim.partition({leader, min(others)}, others - {min(others)})
    start = sim.now_ns
    assert sim.run_until(lambda: sim.core(leader).role != Role.LEADER, 1000)
    elapsed_ms = (sim.now_ns - start) / 1e6
    assert 380 <= elapsed_ms <= 450, elapsed_ms      # leader_heartbeat_timeout 400 ms, ticks of 10 ms
    wait_leader(sim, among=others - {min(others)})


def test_leadership_transfer_to_named_member():
    sim = make_sim(3, seed=34)
    leader = wait_leader(sim)
    client = sim.client()
    assert client.request(b"x") == b"ok:x"
    target = (leader + 2) % 3
    start = sim.now_ns
    assert sim.transfer_leadership(target)
    assert sim.run_until(lambda: sim.leader() == target, 100)
    assert (sim.now_ns - start) / 1e6 < 20, "a transfer takes a few round trips, not an election timeout"
    assert client.request(b"y", timeout_s=1.0) == b"ok:y"
    converge(sim)
    assert sim.service(target).applied == [b"x", b"y"]


def test_leadership_transfer_to_lagging_member():
    sim = make_sim(3, seed=35)
    leader = wait_leader(sim)
    target = (leader + 1) % 3
    client = sim.client()
    sim.cut(leader, target)
    for i in range(20):
        assert client.offer(b"p%d" % i) > 0
    sim.run_for(50)
    assert sim.core(target).log.last_index < sim.core(leader).log.last_index
    sim.heal()
    assert sim.transfer_leadership(target)
    assert sim.run_until(lambda: sim.leader() == target, 300), states(sim)
    converge(sim)
    assert len(sim.service(target).applied) == 20
