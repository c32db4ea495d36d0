"""A crash right after a vote (``SimCluster.crash_after_vote``).

A member saves its vote before the Vote goes out, so a member that crashes right after voting
and restarts at once still knows whom it voted for in the term, and refuses a second
candidate of that term. The scenario makes the second candidate: the leader hands over to two
caught-up followers at once (neither hears the other), each candidate's links out are cut
once its ballot is out (so no leader's entries reach a voter in between), and every other
member is armed to crash after voting and restart at once. The negative control switches the
rule off (``vote_not_persisted``): the restarted voter votes again in the same term, and the
checker must catch it on every seed. The swarm runs the same window (``vote_window``).
"""
from __future__ import annotations

import pytest

from aeronpy.core import Role, _BUGS
from aeronpy.core.messages import Vote
from aeronpy.testing import InvariantViolation

from .helpers import converge, make_sim, propose, wait_leader

SEEDS = range(6)
SHAPES = [(3, True), (3, False), (5, True), (5, False)]      # (members, pre_vote)


@pytest.fixture
def bug():
    yield _BUGS.add
    _BUGS.clear()


def _two_candidates_one_term(seed: int, members: int, pre_vote: bool, crash: bool = True) -> dict:
    """Returns what happened: the term of the ballots, the two candidates, the voters armed,
    how many crashed after voting, and each voter's vote as its restarted core holds it."""
    sim = make_sim(members, seed=seed, pre_vote=pre_vote)
    leader = wait_leader(sim)
    assert propose(sim, b"e") > 0
    sim.run_for(100)
    lead = sim.core(leader)
    last = lead.log.last_index
    pair = sorted(m for m, pr in lead.leader_state.progress.items() if pr.match == last)[:2]
    assert len(pair) == 2
    term = lead.term + 1
    sim.cut(pair[0], pair[1])
    sim.cut(pair[1], pair[0])
    voters = [m for m in range(members) if m not in pair]
    if crash:
        for m in voters:
            sim.crash_after_vote(m)
    assert sim.transfer_leadership(pair[0]) and sim.transfer_leadership(pair[1])
    waiting = set(pair)
    while waiting:
        assert sim.run_until(lambda: any(sim.core(m).term >= term for m in waiting), 200)
        for m in [m for m in waiting if sim.core(m).term >= term]:
            assert sim.core(m).term == term and sim.core(m).role == Role.CANDIDATE
            waiting.discard(m)
            for other in range(members):           # its ballot is out; nothing else gets out
                if other != m:
                    sim.cut(m, other)
    sim.run_for(150)                               # both ballots reach every voter
    votes = {m: sim.core(m).voted_for for m in voters}
    armed_left = sim.armed_after_vote
    sim.disarm_vote_crashes()
    sim.heal()
    converge(sim)
    sim.check()
    return {"term": term, "pair": pair, "voters": voters, "crashed": sim.crashed_after_vote,
            "armed_left": armed_left, "votes": votes, "leader": sim.leader()}


@pytest.mark.parametrize("members, pre_vote", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_a_voter_crashing_right_after_its_vote_remembers_it(seed, members, pre_vote):
    seen = _two_candidates_one_term(seed, members, pre_vote)
    # every voter voted, crashed, restarted, and still holds its vote for one of the two
    assert seen["crashed"] == len(seen["voters"]) and not seen["armed_left"]
    assert all(v in seen["pair"] for v in seen["votes"].values()), seen
    assert seen["leader"] is not None


@pytest.mark.parametrize("members, pre_vote", SHAPES)
def test_a_vote_never_saved_is_caught_on_every_seed(bug, members, pre_vote):
    bug("vote_not_persisted")
    caught = []
    for seed in SEEDS:
        with pytest.raises(InvariantViolation) as excinfo:
            _two_candidates_one_term(seed, members, pre_vote)
        caught.append(str(excinfo.value))
    assert all("voted twice in term" in c and "seed=" in c for c in caught), caught


def test_without_the_crash_the_unsaved_vote_goes_unnoticed(bug):
    """The window needs the crash: a voter that keeps running remembers its vote in memory,
    so the same contested ballot passes even with the vote never written."""
    bug("vote_not_persisted")
    for seed in SEEDS:
        seen = _two_candidates_one_term(seed, 3, True, crash=False)
        assert seen["crashed"] == 0


def test_crash_after_vote_fires_on_a_granted_ballot_vote_only():
    sim = make_sim(3, seed=1)
    leader = wait_leader(sim)
    sim.run_for(100)
    follower = next(m for m in range(3) if m != leader)
    sent = []
    original = sim.send_member
    sim.send_member = lambda src, dst, msg: (sent.append((src, msg)), original(src, dst, msg))
    sim.crash_after_vote(follower, restart=False)
    assert sim.armed_after_vote == {follower}
    sim.run_for(500)                               # heartbeats, acks: no vote, no crash
    assert sim.alive(follower) and sim.crashed_after_vote == 0
    sim.crash(follower)                            # a crash of another kind drops the arm
    assert not sim.armed_after_vote
    sim.restart(follower)
    sim.crash_after_vote(follower, restart=False)
    sim.disarm_crashes()                           # so does disarming every crash
    assert not sim.armed_after_vote
    sim.crash_after_vote(follower, restart=False)
    assert sim.transfer_leadership(next(m for m in range(3) if m not in (leader, follower)))
    assert sim.run_until(lambda: not sim.alive(follower), 200)
    assert sim.crashed_after_vote == 1 and not sim.armed_after_vote
    votes = [msg for src, msg in sent if src == follower and type(msg) is Vote]
    assert votes and votes[-1].granted and not votes[-1].pre
    assert sim.disks[follower].take_recovered().hard_state.voted_for != -1   # on disk before it went
    with pytest.raises(ValueError, match="not running"):
        sim.crash_after_vote(follower)
