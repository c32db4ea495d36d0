"""Tests tied to sentences of the Raft paper (Ongaro and Ousterhout, "In Search of an
Understandable Consensus Algorithm", extended version), in the spirit of etcd's
raft_paper_test.go. Each test quotes the sentence it checks."""
from __future__ import annotations

import pytest

from aeronpy.core import HardState, NEW_LEADERSHIP_TERM, Role, _BUGS
from aeronpy.core.messages import (AppendEntries, AppendResponse, Heartbeat, RequestVote, Vote)

from .harness import PaperNet, make_log


def test_term_update_from_any_message():
    """5.1: "If one server's current term is smaller than the other's, then it updates its
    current term to the larger value. If a candidate or leader discovers that its term is out
    of date, it immediately reverts to follower state." """
    for kind, msg in (("append", AppendEntries(5, 0, 0, 0, b"", 0)), ("heartbeat", Heartbeat(5, 0)),
                      ("reply", AppendResponse(5, False, 0, 0, 0)), ("vote", Vote(5, False))):
        net = PaperNet(3)
        net.elect(0)
        assert net[0].role == Role.LEADER and net[0].term == 1
        net.step(0, 1, msg)
        assert net[0].term == 5, kind
        assert net[0].role == Role.FOLLOWER, kind
        assert net.persisted_hard_state[0] == HardState(5), kind


def test_stale_term_rejected():
    """5.1: "If a server receives a request with a stale term number, it rejects the request." """
    net = PaperNet(3, terms=[4, 4, 4])
    net.step(1, 0, AppendEntries(2, 0, 0, 0, b"", 0))
    [(src, dst, reply)] = net.take()
    assert (dst, type(reply), reply.success, reply.term) == (0, AppendResponse, False, 4)
    assert net[1].leader_id is None
    net.step(1, 2, RequestVote(3, 0, 0))
    [(_, _, vote)] = net.take()
    assert (vote.granted, vote.term) == (False, 4)
    assert net[1].counters["dropped_stale_term"] == 2


def test_follower_times_out_and_starts_election():
    """5.2: "If a follower receives no communication over a period of time called the election
    timeout, then it assumes there is no viable leader and begins an election". "To begin an
    election, a follower increments its current term and transitions to candidate state. It
    then votes for itself and issues RequestVote RPCs in parallel to each of the other
    servers in the cluster." (We canvass first; the ballot then follows these rules.)"""
    net = PaperNet(5)
    net.tick(0)
    net.tick(0, 399)          # the randomized timeout is below 2 * 200 ms
    canvass = net.take(src=0)
    assert sorted(d for _, d, _ in canvass) == [1, 2, 3, 4]
    assert net[0].term == 0, "a canvass must not raise the term"
    for _, dst, msg in canvass:
        net.step(dst, 0, msg)
    net.deliver_all()
    for _ in range(10):
        net.tick(0, 10)
        if net[0].role == Role.CANDIDATE:
            break
    assert net[0].role == Role.CANDIDATE and net[0].term == 1 and net[0].voted_for == 0
    ballots = net.take(src=0, kind=RequestVote)
    assert sorted(d for _, d, _ in ballots) == [1, 2, 3, 4]
    ready = net.readies[0][-1]
    assert ready.hard_state == HardState(1, 0), "the self-vote is persisted before the requests go out"


@pytest.mark.parametrize("grants, expected", [(5, Role.LEADER), (3, Role.LEADER), (2, Role.CANDIDATE),
                                              (1, Role.CANDIDATE)])
def test_election_outcome_in_one_round(grants, expected):
    """5.2: "A candidate wins an election if it receives votes from a majority of the servers in
    the full cluster for the same term." (grants counts the candidate's own vote)"""
    net = PaperNet(5, pre_vote=False)
    net.tick(0)
    net.tick(0, 400)
    assert net[0].role == Role.CANDIDATE
    net.take()
    for voter in range(1, 5):
        net.step(0, voter, Vote(1, voter < grants))
    net.take()
    assert net[0].role == (expected if grants > 2 else Role.FOLLOWER)


def test_split_vote_times_out_into_new_election():
    """5.2: "if many followers become candidates at the same time, votes could be split so that
    no candidate obtains a majority. When this happens, each candidate will time out and start
    a new election by incrementing its term"."""
    net = PaperNet(4, pre_vote=False)
    for i in (0, 1):
        net.tick(i)
    net.tick(0, 400)
    net.tick(1, 0)
    assert net[0].role == net[1].role == Role.CANDIDATE
    for voter, candidate in ((2, 0), (3, 1)):
        for _, dst, msg in net.take(src=candidate, dst=voter):
            net.step(voter, candidate, msg)
    net.take(src=0)
    net.take(src=1)
    net.deliver_all()
    assert net[0].role == net[1].role == Role.CANDIDATE  # 2 of 4 each: no majority
    net.tick(0, 400)
    assert net[0].term == 2 and net[0].role == Role.CANDIDATE


def test_one_vote_per_term_first_come_first_served():
    """5.2: "Each server will vote for at most one candidate in a given term, on a
    first-come-first-served basis"."""
    net = PaperNet(3)
    net.step(2, 0, RequestVote(1, 0, 0))
    net.step(2, 1, RequestVote(1, 0, 0))
    votes = [(d, m.granted) for _, d, m in net.take(src=2)]
    assert votes == [(0, True), (1, False)]
    net.step(2, 0, RequestVote(1, 0, 0))      # a repeated request from the same candidate
    assert [m.granted for _, _, m in net.take(src=2)] == [True]


def test_vote_persisted_before_reply():
    """Figure 2: "Persistent state on all servers: (Updated on stable storage before responding
    to RPCs)" - the Ready that carries the Vote also carries the hard state naming it."""
    net = PaperNet(3)
    net.step(2, 0, RequestVote(1, 0, 0))
    ready = net.readies[2][-1]
    assert any(type(m) is Vote and m.granted for _, m in ready.messages)
    assert ready.hard_state == HardState(1, 0)


def test_vote_not_persisted_negative_control():
    _BUGS.add("vote_not_persisted")
    try:
        net = PaperNet(3)
        net.step(2, 0, RequestVote(1, 0, 0))
        ready = net.readies[2][-1]
        assert ready.hard_state == HardState(1, -1)   # the deliberate bug: the vote is not on disk
    finally:
        _BUGS.discard("vote_not_persisted")


def test_candidate_falls_back_to_follower_on_leader_append():
    """5.2: "If the leader's term (included in its RPC) is at least as large as the candidate's
    current term, then the candidate recognizes the leader as legitimate and returns to
    follower state." """
    net = PaperNet(3, pre_vote=False)
    net.tick(0)
    net.tick(0, 400)
    assert net[0].role == Role.CANDIDATE
    net.step(0, 1, AppendEntries(1, 0, 0, 0, b"", 0))
    assert net[0].role == Role.FOLLOWER and net[0].leader_id == 1 and net[0].term == 1


def test_randomized_election_timeouts_spread():
    """5.2: "Raft uses randomized election timeouts to ensure that split votes are rare". The
    timeouts of members with different generators cover [T, 2T) and rarely coincide."""
    fire_ms = []
    for seed in range(40):
        net = PaperNet(1, seed=seed, pre_vote=False)
        net.tick(0)
        for step in range(1, 60):
            net.tick(0, 10)
            if net[0].role != Role.FOLLOWER:
                fire_ms.append(step * 10)
                break
    assert len(fire_ms) == 40
    assert min(fire_ms) >= 200 and max(fire_ms) <= 400
    assert len(set(fire_ms)) >= 10, f"timeouts not spread: {sorted(fire_ms)}"


def test_leader_replicates_in_parallel_and_commits_on_majority():
    """5.3: "The leader appends the command to its log as a new entry, then issues AppendEntries
    RPCs in parallel to each of the other servers to replicate the entry." "A log entry is
    committed once the leader that created the entry has replicated it on a majority of the
    servers"."""
    net = PaperNet(5)
    net.elect(0)
    index = net[0].propose(16, b"cmd")
    net.flush(0)
    appends = net.take(src=0, kind=AppendEntries)
    assert sorted(d for _, d, _ in appends) == [1, 2, 3, 4], "one ready, all followers at once"
    for _, dst, msg in appends[:1]:
        net.step(dst, 0, msg)
    net.deliver_all()
    assert net[0].commit_index < index, "2 of 5 is no majority"
    for _, dst, msg in appends[1:2]:
        net.step(dst, 0, msg)
    net.deliver_all()
    assert net[0].commit_index == index
    assert (index, 1) in net.applied[0]


def test_leader_commit_reaches_followers_in_heartbeats():
    """5.3: "The leader keeps track of the highest index it knows to be committed, and it
    includes that index in future AppendEntries RPCs (including heartbeats) so that the other
    servers eventually find out." """
    net = PaperNet(3)
    net.elect(0)
    index = net[0].propose(16, b"cmd")
    net.flush(0)
    net.deliver_all()
    assert net[0].commit_index == index and net[1].commit_index < index
    net.tick(0, 60)
    heartbeats = net.take(src=0, kind=Heartbeat)
    assert {m.commit_index for _, _, m in heartbeats} == {index}
    for _, dst, msg in heartbeats:
        net.step(dst, 0, msg)
    assert net[1].commit_index == net[2].commit_index == index
    assert (index, 1) in net.applied[1]


def test_first_entry_of_a_term_is_new_leadership_term():
    net = PaperNet(3)
    net.elect(1)
    assert net[1].log.type_at(net[1].log.last_index) == NEW_LEADERSHIP_TERM
    assert net[1].log.last_term == net[1].term


def test_follower_refuses_append_without_matching_prev():
    """5.3: "If the follower does not find an entry in its log with the same index and term,
    then it refuses the new entries." The refusal names the conflicting term and its first
    index (the optimisation of 5.3)."""
    net = PaperNet(3, logs=[make_log([1, 1]), make_log([1, 1, 2, 2, 2]), make_log([1])], terms=[3, 3, 3])
    net.step(1, 0, AppendEntries(3, 4, 3, 0, b"", 0))       # member 1 has term 2 at index 4
    [(_, _, reply)] = net.take(src=1)
    assert (reply.success, reply.conflict_term, reply.conflict_index) == (False, 2, 3)
    net.step(2, 0, AppendEntries(3, 4, 3, 0, b"", 0))       # member 2's log is too short
    [(_, _, reply)] = net.take(src=2)
    assert (reply.success, reply.conflict_term, reply.conflict_index) == (False, 0, 2)


def test_follower_truncates_only_conflicting_entries():
    """Figure 2: "If an existing entry conflicts with a new one (same index but different terms),
    delete the existing entry and all that follow it". A matching entry is never deleted."""
    leader_log = make_log([1, 1, 1, 1])
    net = PaperNet(2, logs=[leader_log, make_log([1, 1, 1, 1])], terms=[1, 1])
    blob, count = leader_log.pack(2, 3, 1 << 20)            # a stale, delayed AppendEntries for 2
    net.step(1, 0, AppendEntries(1, 1, 1, 0, blob, count))
    assert net[1].log.last_index == 4, "a delayed append must not cut acknowledged entries"
    net2 = PaperNet(2, logs=[make_log([1, 3, 3]), make_log([1, 2, 2, 2])], terms=[3, 3])
    blob, count = net2[0].log.pack(2, 4, 1 << 20)
    net2.step(1, 0, AppendEntries(3, 1, 1, 0, blob, count))
    assert [net2[1].log.term_at(i) for i in range(1, net2[1].log.last_index + 1)] == [1, 3, 3]
    assert net2.readies[1][-1].truncate_from == 2


def test_follower_commit_clamped_to_verified_entries():
    """Figure 2: "If leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index of last
    new entry)". Entries beyond what this leader verified may be stale and are not committed."""
    net = PaperNet(2, logs=[make_log([1, 1]), make_log([1, 1, 1, 1])], terms=[2, 2])
    net.step(1, 0, AppendEntries(2, 1, 1, 10, b"", 0))
    assert net[1].commit_index == 1
    net.step(1, 0, Heartbeat(2, 10))
    assert net[1].commit_index == 1


def _figure7_logs():
    # Figure 7: the leader of term 8 and followers (a)-(f).
    leader = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
    followers = {
        "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
        "b": [1, 1, 1, 4],
        "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        "e": [1, 1, 1, 4, 4, 4, 4],
        "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    }
    return leader, followers


@pytest.mark.parametrize("name", list("abcdef"))
def test_figure7_follower_logs_repaired(name):
    """5.3: "In Raft, the leader handles inconsistencies by forcing the followers' logs to
    duplicate its own." With conflict hints the leader backs up one term per round trip."""
    leader_terms, followers = _figure7_logs()
    follower_terms = followers[name]
    net = PaperNet(3, logs=[make_log(leader_terms), make_log(follower_terms), make_log(leader_terms)],
                   terms=[7, 7, 7])
    net.elect(0)       # member 2 (same log as the leader) votes; member 1 may refuse
    assert net[0].term == 8
    rejects = sum(1 for rd in net.readies[1] for _, m in rd.messages if type(m) is AppendResponse and not m.success)
    distinct_terms = len(set(follower_terms))
    assert rejects <= distinct_terms + 1, f"{rejects} rejections for a log of {distinct_terms} terms"
    log0, log1 = net[0].log, net[1].log
    assert log1.last_index == log0.last_index
    assert [log1.term_at(i) for i in range(1, log1.last_index + 1)] == \
        [log0.term_at(i) for i in range(1, log0.last_index + 1)]


@pytest.mark.parametrize("cand_last_term, cand_last_index, granted", [
    (2, 3, True), (2, 2, False), (2, 4, True), (3, 1, True), (1, 9, False)])
def test_voter_up_to_date_rule(cand_last_term, cand_last_index, granted):
    """5.4.1: "If the logs have last entries with different terms, then the log with the later
    term is more up-to-date. If the logs end with the same term, then whichever log is longer
    is more up-to-date." "the voter denies its vote if its own log is more up-to-date than
    that of the candidate." """
    net = PaperNet(3, logs=[make_log([]), make_log([1, 2, 2]), make_log([])], terms=[2, 2, 2])
    net.step(1, 0, RequestVote(3, cand_last_term, cand_last_index))
    [(_, _, vote)] = net.take(src=1)
    assert vote.granted is granted


def _figure8_prefix():
    """Figure 8 (c): S1 (member 0) wins term 4 holding entry 2 of term 2, which S2 also has; S5
    (member 4) holds entry 2 of term 3. S1 replicates entry 2 to S3 and S4, one entry per
    AppendEntries, and they acknowledge it before its term-4 entry reaches any of them."""
    logs = [make_log([1, 2]), make_log([1, 2]), make_log([1]), make_log([1]), make_log([1, 3])]
    net = PaperNet(5, logs=logs, terms=[3, 3, 3, 3, 3], max_append_bytes=1, pre_vote=False,
                   check_quorum=False)
    net.tick(0)
    net.tick(0, 400)
    assert net[0].role == Role.CANDIDATE and net[0].term == 4
    for src, dst, msg in net.take(src=0):
        if dst in (1, 2):
            net.step(dst, 0, msg)
    for src, dst, msg in net.take(dst=0):
        net.step(0, src, msg)                # two votes: S1 leads term 4
    leader = net[0]
    assert leader.role == Role.LEADER and leader.log.last_index == 3 and leader.log.term_at(3) == 4
    for src, dst, msg in net.take(src=0, kind=AppendEntries):
        if dst in (2, 3):
            net.step(dst, 0, msg)            # rejected: their logs are too short
    for src, dst, msg in net.take(dst=0):
        net.step(0, src, msg)                # leader backs up and sends entry 2 alone
    probes = net.take(src=0, kind=AppendEntries)
    assert {(d, m.prev_index, m.count) for _, d, m in probes} >= {(2, 1, 1), (3, 1, 1)}
    for src, dst, msg in probes:
        if dst in (2, 3):
            net.step(dst, 0, msg)
    for src, dst, msg in net.take(dst=0):
        net.step(0, src, msg)                # entry 2 is now on S1, S3, S4: a majority
    net.take(src=0)                          # the term-4 entry never leaves S1: it crashes
    return net


def _s5_takes_over(net):
    net.blocked = {(0, m) for m in range(1, 5)} | {(m, 0) for m in range(1, 5)}
    for _ in range(3):
        net.tick(4, 400)
        net.deliver_all()
        if net[4].role == Role.LEADER:
            break
    assert net[4].role == Role.LEADER
    net.deliver_all()


def test_figure8_no_commit_of_earlier_term_by_counting():
    """5.4.2: "Raft never commits log entries from previous terms by counting replicas. Only log
    entries from the leader's current term are committed by counting replicas"."""
    net = _figure8_prefix()
    assert net[0].commit_index < 2, "entry 2 (term 2) is on a majority but must not be committed"
    _s5_takes_over(net)
    assert net[2].log.term_at(2) == 3     # so S5 may overwrite it: it was never committed


def test_figure8_negative_control_loses_a_committed_entry():
    """With the rule broken, S1 commits entry 2, and S5 (legitimately elected) overwrites it."""
    _BUGS.add("commit_old_term_by_counting")
    try:
        net = _figure8_prefix()
        assert net[0].commit_index == 2 and net[0].log.term_at(2) == 2
        _s5_takes_over(net)
        assert net[2].log.term_at(2) == 3, "the 'committed' entry 2 of term 2 is gone"
    finally:
        _BUGS.discard("commit_old_term_by_counting")


def test_truncate_matching_negative_control():
    """With the truncation rule broken, a delayed AppendEntries cuts acknowledged entries."""
    leader_log = make_log([1, 1, 1, 1])
    blob, count = leader_log.pack(2, 3, 1 << 20)
    _BUGS.add("truncate_matching_entries")
    try:
        net = PaperNet(2, logs=[leader_log, make_log([1, 1, 1, 1])], terms=[1, 1])
        net.step(1, 0, AppendEntries(1, 1, 1, 0, blob, count))
        assert net[1].log.last_index == 2
    finally:
        _BUGS.discard("truncate_matching_entries")
