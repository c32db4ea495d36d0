"""Rules of the core that a mutation-testing pass could break without any test failing. Each
test names the mutant it kills (its id in the hand-made mutation pass of 2026-11-28, which
ran 85 mutants of the core, the module and the client against the suite and the swarm).

Four of them guard safety or progress. A leader counts for its own commit vote only what it
has persisted, not what it has appended (C29). A follower that lost its last acknowledged
entry is believed, and the leader lowers its match below that entry (C35). Two truncations in
one Ready are written as the lower one (C21). A follower never cuts an entry it knows is
committed, and does not acknowledge such an append (C23).

The rest pin election behaviour that a mutant changed without breaking the swarm's
invariants. A follower that knows this term's leader gives no vote in that term (C04). A
canvass for the member's own term is refused (C06). A granted pre-vote of an older canvass is
not counted (C08). A refused pre-vote with a higher term makes the member adopt it (C12).
Granting a vote restarts the election timer (C13). A new term forgets what the last leader
verified (C18).
"""
from __future__ import annotations

import random

from aeronpy.core import NO_VOTE, CoreConfig, ElectionState, HardState, RaftCore, Role
from aeronpy.core.messages import (AppendEntries, AppendResponse, CanvassPosition, Heartbeat,
                                   HeartbeatResponse, RequestVote, Vote)

from .harness import MS, LogIndex, PaperNet, make_log


def _terms(log):
    return [log.term_at(i) for i in range(1, log.last_index + 1)]


# ------------------------------------------------------------------ replication and commit
def test_leader_commit_counts_only_its_persisted_entries():
    """C29: a lone leader proposed b while the Ready holding a was being written. When that
    Ready is advanced, only a is on its disk, so only a commits. The mutant counted the
    leader's last index and committed b, which no disk held yet."""
    net = PaperNet(1)
    for _ in range(60):
        net.tick(0, 10)
        if net[0].role == Role.LEADER:
            break
    core = net[0]
    assert core.role == Role.LEADER
    net.flush(0)
    a = core.propose(16, b"a")
    rd = core.ready()
    assert rd.persist_hi - 1 == a
    b = core.propose(16, b"b")          # proposed while rd is being written
    core.advance(rd)
    assert (core.persisted_index, core.log.last_index) == (a, b)
    assert core.commit_index == a, f"committed {core.commit_index}: entry {b} is not on disk yet"
    net.flush(0)
    assert core.commit_index == b, "b commits once its own Ready is advanced"


def test_leader_believes_a_follower_that_lost_its_last_acknowledged_entry():
    """C35: follower 1 acknowledged entry m, then restarted without it (it ran without
    syncing). The leader's probe at m is refused with a gap naming m as the first index it
    lacks. The leader must lower its match for 1 to m - 1 and count the loss. The mutant only
    did so when the gap was below m, so the leader went on counting entry m on member 1."""
    net = PaperNet(3)
    net.elect(0)
    leader = net[0]
    for i in range(3):
        leader.propose(16, b"x%d" % i)
        net.flush(0)
        net.deliver_all()
    pr = leader.leader_state.progress[1]
    m = pr.match
    assert m == leader.log.last_index and net[1].log.last_index == m
    # Member 1 restarts holding entries 1..m-1 only.
    kept = LogIndex()
    kept.append_packed(*leader.log.pack(1, m, 1 << 20))
    net.cores[1] = RaftCore(CoreConfig(1, (0, 1, 2)), random.Random(1), HardState(leader.term), kept)
    assert net[1].log.last_index == m - 1
    net.tick(0, 60)                               # heartbeats
    for src, dst, msg in net.take(src=0, dst=1, kind=Heartbeat):
        net.step(1, 0, msg)
    [(_, _, answer)] = net.take(src=1, dst=0)
    assert type(answer) is HeartbeatResponse and answer.last_index == m - 1
    net.step(0, 1, answer)                        # the leader probes at match
    [(_, _, probe)] = net.take(src=0, dst=1, kind=AppendEntries)
    assert probe.prev_index == m
    net.step(1, 0, probe)
    [(_, _, refusal)] = net.take(src=1, dst=0)
    assert (refusal.success, refusal.match_index, refusal.conflict_index, refusal.conflict_term) == \
        (False, m, m, 0), "a gap refusal naming the acknowledged entry itself"
    net.step(0, 1, refusal)
    assert pr.match == m - 1, f"match {pr.match}: member 1 no longer holds entry {m}"
    assert leader.counters.get("follower_lost_acknowledged_entries", 0) == 1
    net.deliver_all()
    assert net[1].log.last_index == m and pr.match == m, "the entry is sent again"


def test_two_truncations_in_one_ready_keep_the_lower_index():
    """C21: a follower truncated at 8 for the leader of term 2, then at 5 for the leader of
    term 3, before its driver asked for the next Ready. The Ready must say truncate from 5:
    entries 5 to 7 were cut in memory too. The mutant kept the higher index, 8, so the old
    entries 5 to 7 were never cut on disk."""
    follower_log = make_log([1] * 10)
    leader2 = make_log([1] * 7 + [2, 2])
    leader3 = make_log([1] * 4 + [3, 3])
    net = PaperNet(3, logs=[leader2, follower_log, leader3], terms=[2, 1, 3])
    core = net[1]
    assert core.persisted_index == 10
    blob, count = leader2.pack(8, 10, 1 << 20)
    core.step(0, AppendEntries(2, 7, 1, 0, blob, count), net.now)
    assert _terms(core.log) == [1] * 7 + [2, 2]
    blob, count = leader3.pack(5, 7, 1 << 20)
    core.step(2, AppendEntries(3, 4, 1, 0, blob, count), net.now)   # no ready() in between
    assert _terms(core.log) == [1] * 4 + [3, 3]
    rd = core.ready()
    assert rd.truncate_from == 5, f"truncate_from {rd.truncate_from}: entries 5..7 were cut too"
    assert (rd.persist_lo, rd.persist_hi) == (5, 7)
    core.advance(rd)


def test_append_conflicting_below_commit_is_refused():
    """C23: a follower with commit index 5 gets an AppendEntries whose entry 3 has another
    term. An entry it knows is committed is never cut: its log stays as it was, it sends no
    success, and it counts conflict_below_commit_refused. The mutant truncated at 3 and
    acknowledged the append."""
    net = PaperNet(2, logs=[make_log([1] * 6), make_log([1] * 6)], terms=[2, 2])
    net.step(1, 0, AppendEntries(2, 6, 1, 5, b"", 0))
    assert net[1].commit_index == 5
    net.take()
    bad = make_log([1, 1, 2, 2])
    blob, count = bad.pack(3, 5, 1 << 20)
    net.step(1, 0, AppendEntries(2, 2, 1, 5, blob, count))
    assert _terms(net[1].log) == [1] * 6, "committed entries 3..5 must stay"
    assert net[1].commit_index == 5
    replies = [m for _, _, m in net.take(src=1)]
    assert not any(type(m) is AppendResponse and m.success for m in replies), replies
    assert net[1].counters.get("conflict_below_commit_refused", 0) == 1
    assert all(rd.truncate_from is None for rd in net.readies[1])


# ------------------------------------------------------------------ election
def test_follower_of_a_known_leader_refuses_a_same_term_ballot():
    """C04: member 1 follows member 0 in term 2 and has not voted in it. A RequestVote of
    term 2 from member 2 is refused: the term has a leader already. The mutant granted it
    because no vote was recorded (a follower that learned the term from the leader)."""
    net = PaperNet(3, terms=[2, 2, 2])
    net.step(1, 0, Heartbeat(2, 0))
    assert net[1].leader_id == 0 and net[1].voted_for == NO_VOTE
    net.take()
    net.step(1, 2, RequestVote(2, 0, 0))
    [(_, dst, vote)] = net.take(src=1)
    assert (dst, type(vote), vote.granted, vote.term) == (2, Vote, False, 2), \
        f"{vote}: a vote in a term whose leader member 1 follows"
    assert net[1].voted_for == NO_VOTE
    assert net[1].counters["vote_refused"] == 1


def test_canvass_for_the_members_own_term_is_refused():
    """C06: a canvass asks "could I win proposed_term?". A member already in that term may
    have voted in it, so it says no, with its own term. The mutant granted it. A canvass for
    the next term is granted (the control)."""
    net = PaperNet(3, terms=[2, 2, 2])
    net.step(1, 2, CanvassPosition(1, 2, 0, 0))
    [(_, _, vote)] = net.take(src=1)
    assert (vote.pre, vote.granted, vote.term) == (True, False, 2), f"{vote}: a canvass for our own term"
    assert net[1].counters["canvass_refused"] == 1
    net.step(1, 2, CanvassPosition(2, 3, 0, 0))
    [(_, _, vote)] = net.take(src=1)
    assert (vote.pre, vote.granted, vote.term) == (True, True, 3)
    assert net[1].term == 2


def test_late_grant_of_an_older_canvass_is_not_counted():
    """C08: member 0 canvassed for term 2 and member 1's grant was delayed. Member 0 then
    followed a leader of term 3, lost it, and canvasses for term 4. The old grant (term 2)
    arrives now: it says nothing about term 4 and must not count. The mutant counted it, and
    with it member 0 had a quorum and went on to nominate itself."""
    net = PaperNet(3, terms=[1, 1, 1])
    net.tick(0)
    net.tick(0, 400)
    assert net[0].election_state == ElectionState.CANVASS and net[0].term == 1
    for _, dst, msg in net.take(src=0, dst=1):
        net.step(1, 0, msg)
    net.take(src=0)
    [(_, _, late)] = net.take(src=1, dst=0)
    assert (late.pre, late.granted, late.term) == (True, True, 2)
    net.step(0, 2, Heartbeat(3, 0))               # a leader of term 3
    net.take()
    assert net[0].term == 3 and net[0].election_state == ElectionState.FOLLOWER_READY
    for _ in range(50):
        net.tick(0, 10)
        if net[0].election_state == ElectionState.CANVASS:
            break
    assert net[0].election_state == ElectionState.CANVASS and net[0].term == 3
    net.take()                                    # this canvass is lost
    net.step(0, 1, late)
    assert net[0].election_state == ElectionState.CANVASS, \
        f"{net[0].election.history[-1]}: a grant for term 2 counted in the canvass for term 4"
    assert net[0].election.granted == {0}


def test_canvass_refused_with_a_higher_term_adopts_it():
    """C12: member 0 (term 1) canvasses member 1, which is in term 5 and refuses with its term.
    Member 0 adopts term 5 at once, saves it, and waits as a follower. The mutant only counted
    the refusal and stayed in term 1."""
    net = PaperNet(3, terms=[1, 5, 5])
    net.tick(0)
    net.tick(0, 400)
    assert net[0].election_state == ElectionState.CANVASS
    for _, dst, msg in net.take(src=0, dst=1):
        net.step(1, 0, msg)
    net.take(src=0)
    [(_, _, refusal)] = net.take(src=1, dst=0)
    assert (refusal.pre, refusal.granted, refusal.term) == (True, False, 5)
    net.step(0, 1, refusal)
    assert net[0].term == 5, f"term {net[0].term}: the higher term in the refusal was ignored"
    assert net[0].role == Role.FOLLOWER and net[0].election_state == ElectionState.FOLLOWER_READY
    assert net.persisted_hard_state[0] == HardState(5)


def test_granting_a_vote_restarts_the_election_timer():
    """C13: member 1 (term 2, no leader, no vote) grants a same-term RequestVote 1 ms before
    its election deadline. The candidate should get a full timeout to win, so member 1 does
    not canvass at the old deadline. The mutant kept the old deadline and member 1 started a
    campaign of its own a millisecond after voting."""
    net = PaperNet(3, terms=[2, 2, 2])
    net.tick(1)
    deadline = net[1].election.deadline_ns
    assert deadline is not None
    net.now = deadline - MS
    net.step(1, 2, RequestVote(2, 0, 0))
    [(_, _, vote)] = net.take(src=1)
    assert vote.granted and net[1].voted_for == 2
    assert net[1].election.deadline_ns >= net.now + net[1].config.election_timeout_ns, \
        "the election timer was not restarted by the vote"
    net.now = deadline + MS
    net.tick(1)
    assert net[1].election_state == ElectionState.FOLLOWER_READY
    assert net.take(src=1) == [], "no canvass right after a vote"


def test_a_new_term_forgets_what_the_last_leader_verified():
    """C18: member 1 had entries 1 to 4 verified by the leader of term 1 (commit 2). A ballot
    of term 2 moves it to term 2: verified_index goes back to 0, as nothing is yet known to
    match the new term's leader. A heartbeat of term 2 with commit 4 then commits nothing.
    The mutant kept verified_index 4 and committed up to 4 on that heartbeat."""
    net = PaperNet(3, logs=[make_log([1] * 4), make_log([1] * 4), make_log([1] * 4)], terms=[1, 1, 1])
    net.step(1, 0, AppendEntries(1, 4, 1, 2, b"", 0))
    assert (net[1].verified_index, net[1].commit_index) == (4, 2)
    net.now += 500 * MS                           # the leader of term 1 went quiet
    net.step(1, 2, RequestVote(2, 1, 4))
    assert net[1].term == 2 and net[1].voted_for == 2
    assert net[1].verified_index == 0, f"verified_index {net[1].verified_index} kept from term 1"
    net.step(1, 2, Heartbeat(2, 4))
    assert net[1].commit_index == 2, "nothing is verified against the term-2 leader yet"
