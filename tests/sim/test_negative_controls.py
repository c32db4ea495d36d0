"""Negative controls: each deliberate bug in the core (switched on here only) is caught by the
simulator's invariant checker, so a green swarm means something."""
from __future__ import annotations

import pytest

from aeronpy.core import Role, _BUGS
from aeronpy.testing import InvariantViolation
from aeronpy.testing.swarm import run_seed

from .helpers import make_sim, propose, wait_leader


@pytest.fixture
def bug():
    def switch_on(name):
        _BUGS.add(name)
    yield switch_on
    _BUGS.clear()


def _double_vote_scenario(seed: int) -> None:
    """X wins term 1 with Y's vote while B is down, but its entries never reach Y; Y restarts;
    X is cut off; B restarts, as up to date as Y, and asks Y for a vote in term 1. Y must
    remember that it already voted in term 1."""
    sim = make_sim(3, seed=seed, pre_vote=False)
    b = 2
    sim.crash(b)
    assert sim.run_until(lambda: any(sim.core(m).role == Role.CANDIDATE for m in (0, 1)), 1000)
    leader = 0 if sim.core(0).role == Role.CANDIDATE else 1
    voter = 1 - leader
    sim.run_for(1.5)                    # the ballot reached Y, Y's vote is on its way back
    sim.cut(leader, voter)
    sim.run_for(5)
    assert sim.core(leader).role == Role.LEADER and sim.core(leader).term == 1
    assert sim.core(voter).log.last_index == 0
    sim.partition({leader}, {voter, b})
    sim.crash(voter)
    sim.restart(b)
    sim.run_for(100)
    sim.restart(voter)
    sim.run_for(1000)
    sim.check()


def test_vote_not_persisted_is_caught(bug):
    for seed in range(10):        # the correct core survives the scenario on every seed
        _double_vote_scenario(seed)
    bug("vote_not_persisted")
    caught = []
    for seed in range(10):
        try:
            _double_vote_scenario(seed)
        except InvariantViolation as exc:
            caught.append(str(exc))
    assert caught, "the double vote went unnoticed"
    assert all("voted twice in term" in c and "seed=" in c for c in caught)


def _old_term_commit_scenario(seed: int) -> None:
    """Entry e is on the old leader O and on L only (L's acknowledgement is lost, so O never
    commits it); O crashes; L wins with F's vote and sends F the entries one per append. F
    acknowledges e before L's own term entry: e sits on a majority but is of an earlier term."""
    sim = make_sim(3, seed=seed, max_append_bytes=1)
    old = wait_leader(sim)
    sim.run_for(100)
    successor, lagger = (old + 1) % 3, (old + 2) % 3
    sim.partition({old, successor}, {lagger})
    sim.cut(successor, old)
    assert propose(sim, b"e", member=old) > 0
    sim.run_for(20)
    sim.crash(old)
    sim.heal()
    sim.run_until(lambda: sim.leader() is not None, 2000)
    sim.run_for(200)
    sim.check()


def test_commit_of_earlier_term_by_counting_is_caught(bug):
    for seed in range(10):
        _old_term_commit_scenario(seed)
    bug("commit_old_term_by_counting")
    caught = []
    for seed in range(10):
        try:
            _old_term_commit_scenario(seed)
        except InvariantViolation as exc:
            caught.append(str(exc))
    assert caught, "the figure-8 commit went unnoticed"
    assert all("figure 8" in c for c in caught)


def test_truncating_matching_entries_is_caught_by_the_swarm(bug):
    results = [run_seed(seed, bugs=("truncate_matching_entries",)) for seed in range(10)]
    failed = [r for r in results if not r.ok]
    assert len(failed) >= 3, results
    assert all("seed=" in r.error for r in failed)


def test_swarm_catches_vote_bug_within_few_seeds():
    failed = [r for r in (run_seed(s, bugs=("vote_not_persisted",)) for s in (61, 116, 220)) if not r.ok]
    assert failed and "voted twice" in failed[0].error


def test_sim_check_names_the_seed(bug):
    bug("truncate_matching_entries")
    sim = make_sim(3, seed=4242, max_append_bytes=1)
    sim.network(duplicate=0.3, delay_ms=(0, 30))
    with pytest.raises(AssertionError) as excinfo:
        for _ in range(40):
            propose(sim, b"d")
            sim.run_for(20)
    assert "seed=4242" in str(excinfo.value)
    with pytest.raises(AssertionError, match="seed=4242"):
        sim.check()
