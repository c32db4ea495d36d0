"""Rules of the core beyond the paper's basics: canvass, lease, check-quorum, transfer,
progress/flow control, batching, snapshots hook, bad input, and the Ready contract."""
from __future__ import annotations

import random

import pytest

from aeronpy.core import NO_VOTE, CoreConfig, ElectionState, HardState, RaftCore, Role
from aeronpy.core.messages import (AppendEntries, AppendResponse, CanvassPosition, Heartbeat,
                                   HeartbeatResponse, InstallSnapshot, RequestVote, TimeoutNow)

from .harness import MS, LogIndex, PaperNet, make_log


# ------------------------------------------------------------------ canvass (pre-vote) and lease
def test_canvass_does_not_raise_anyones_term():
    net = PaperNet(3, terms=[2, 2, 2])
    net.tick(0)
    net.tick(0, 400)
    assert net[0].election_state == ElectionState.CANVASS and net[0].term == 2
    canvass = net.take(src=0)
    assert {type(m) for _, _, m in canvass} == {CanvassPosition}
    assert {m.proposed_term for _, _, m in canvass} == {3}
    for _, dst, msg in canvass:
        net.step(dst, 0, msg)
    assert net[1].term == net[2].term == 2
    assert all(m.granted and m.pre for _, _, m in net.take(dst=0))


def test_canvass_refused_to_a_stale_log():
    net = PaperNet(3, logs=[make_log([1]), make_log([1, 2]), make_log([1, 2])], terms=[2, 2, 2])
    net.tick(0)
    net.tick(0, 400)
    net.deliver_all()
    assert net[0].term == 2 and net[0].role == Role.FOLLOWER
    assert net[0].election_state == ElectionState.FOLLOWER_READY   # quorum refused: back to waiting
    assert net[1].counters["canvass_refused"] == 1


def test_disruptive_follower_held_off_by_lease():
    """Thesis 4.2.3: a server that heard from a current leader within the minimum election
    timeout neither updates its term nor grants its vote."""
    net = PaperNet(3)
    net.elect(0)
    term = net[0].term
    net.step(1, 2, CanvassPosition(term, term + 1, 99, 99))
    [(_, _, vote)] = net.take(src=1)
    assert not vote.granted
    net.step(1, 2, RequestVote(term + 5, 99, 99))
    assert net.take(src=1) == [] and net[1].term == term
    assert net[1].counters["ballot_ignored_in_lease"] == 1
    net.step(0, 2, RequestVote(term + 5, 99, 99))
    assert net[0].role == Role.LEADER, "a leader ignores a disruptive ballot too"
    net.step(1, 2, RequestVote(term + 5, 99, 99, True))
    assert net[1].term == term + 5, "a leadership-transfer ballot is not held off"


def test_lease_expires_after_election_timeout():
    net = PaperNet(3)
    net.elect(0)
    term = net[0].term
    net.now += 250 * MS
    net.step(1, 2, CanvassPosition(term, term + 1, 99, 99))
    [(_, _, vote)] = net.take(src=1)
    assert vote.granted and vote.term == term + 1 and net[1].term == term


def test_a_refused_canvass_names_the_last_leader_but_not_as_heard():
    """A follower cut off from its leader (the others still hear it) canvasses; the quorum
    refuses and it follows that leader again (FOLLOWER_READY, leader_id kept) though it has
    heard nothing from it: heard_leader_since_campaign() says so (no_leader_since_ns keeps the
    time it lost its leader), until the leader's next message reaches it."""
    net = PaperNet(3)
    net.elect(0)
    assert net[2].leader_id == 0 and net[2].heard_leader_since_campaign()
    canvassed = False
    for _ in range(100):                         # 1 s: the leader heartbeats member 1 only
        net.tick(0, 10)
        net.tick(1)
        net.tick(2)
        net.take(src=0, dst=2, kind=Heartbeat)   # lost on the way to member 2
        net.take(src=0, dst=2, kind=AppendEntries)
        canvassed |= net[2].election_state == ElectionState.CANVASS
        net.deliver_all()
    assert canvassed and net[1].counters["canvass_refused"] >= 1
    assert net[2].election_state == ElectionState.FOLLOWER_READY and net[2].leader_id == 0
    assert any(reason == "canvass lost" for *_, reason in net[2].election.history)
    assert not net[2].heard_leader_since_campaign()
    net.tick(0, 60)                              # the next heartbeat gets through
    net.deliver_all()
    assert net[2].leader_id == 0 and net[2].heard_leader_since_campaign()


# ------------------------------------------------------------------ check-quorum
def test_leader_steps_down_without_quorum():
    net = PaperNet(3)
    net.elect(0)
    start = net.now
    while net[0].role == Role.LEADER and net.now - start < 2000 * MS:
        net.tick(0, 10)
        net.take()                               # nobody answers
    waited_ms = (net.now - start) / MS
    assert net[0].role == Role.FOLLOWER
    assert 400 <= waited_ms <= 420, waited_ms
    assert net[0].counters["check_quorum_step_down"] == 1


def test_leader_stays_while_a_quorum_answers():
    net = PaperNet(3)
    net.elect(0)
    for _ in range(100):
        net.tick(0, 10)
        for src, dst, msg in net.take(src=0):
            if dst == 1:
                net.step(1, 0, msg)
        net.deliver_all()
    assert net[0].role == Role.LEADER


# ------------------------------------------------------------------ leadership transfer
def test_transfer_to_up_to_date_target_skips_canvass():
    net = PaperNet(3)
    net.elect(0)
    assert net[0].transfer_leadership(2, net.now)
    net.flush(0)
    [(_, dst, msg)] = net.take(src=0, kind=TimeoutNow)
    assert dst == 2
    net.step(2, 0, msg)
    ballots = net.take(src=2)
    assert {type(m) for _, _, m in ballots} == {RequestVote} and all(m.transfer for _, _, m in ballots)
    for _, dst, m in ballots:
        net.step(dst, 2, m)
    net.deliver_all()
    assert net[2].role == Role.LEADER and net[0].role == Role.FOLLOWER


def test_transfer_catches_a_lagging_target_up_first():
    net = PaperNet(3)
    net.elect(0)
    net.blocked = {(0, 2)}
    for i in range(5):
        net[0].propose(16, b"p%d" % i)
        net.flush(0)
        net.deliver_all()
    assert net[2].log.last_index < net[0].log.last_index
    net.blocked = set()
    assert net[0].transfer_leadership(2, net.now)
    assert net[0].propose(16, b"refused") == 0, "no proposals while handing over"
    net.flush(0)
    net.tick(0, 60)
    net.deliver_all()
    assert net[2].role == Role.LEADER
    assert net[2].log.last_index >= 7


def test_transfer_aborts_after_election_timeout():
    net = PaperNet(3)
    net.elect(0)
    net.blocked = {(0, 2), (2, 0)}
    net[0].propose(16, b"x")
    net.flush(0)
    net.deliver_all()
    assert net[0].transfer_leadership(2, net.now)
    for _ in range(25):
        net.tick(0, 10)
        net.deliver_all()
    assert net[0].role == Role.LEADER and net[0].counters["transfer_aborted"] == 1
    assert net[0].propose(16, b"y") > 0


def test_transfer_refused_when_not_leader():
    net = PaperNet(3)
    assert net[1].transfer_leadership(None, 0) is False


# ------------------------------------------------------------------ replication flow control
def test_natural_batching_one_append_per_follower():
    net = PaperNet(3)
    net.elect(0)
    first = net[0].log.last_index + 1
    for i in range(100):
        net[0].propose(16, b"e%03d" % i)
    net.flush(0)
    appends = net.take(src=0, kind=AppendEntries)
    assert sorted(d for _, d, _ in appends) == [1, 2], "everything waiting goes in one append each"
    assert all(m.count == 100 and m.prev_index == first - 1 for _, _, m in appends)
    ready = net.readies[0][-1]
    assert (ready.persist_lo, ready.persist_hi) == (first, first + 100), "persisted in the same Ready"


def test_max_append_bytes_and_inflight_window():
    net = PaperNet(3, max_append_bytes=100, max_inflight_appends=3)
    net.elect(0)
    for i in range(20):
        net[0].propose(16, b"x" * 40)
    net.flush(0)
    to_one = [m for _, d, m in net.take(src=0, kind=AppendEntries) if d == 1]
    assert len(to_one) == 3, "at most max_inflight_appends unacknowledged appends"
    assert all(m.count == 1 for m in to_one), "each append stays within max_append_bytes"
    net.step(1, 0, to_one[0])
    for src, dst, msg in net.take(dst=0):
        net.step(0, src, msg)
    more = [m for _, d, m in net.take(src=0, kind=AppendEntries) if d == 1]
    assert len(more) == 1, "one acknowledgement frees one slot"


def test_probe_sends_one_append_until_answered():
    net = PaperNet(3)
    net.blocked = {(0, 1)}
    net.elect(0)                                  # the first probe to member 1 is lost
    for i in range(5):
        net[0].propose(16, b"p")
        net.flush(0)
    assert net.take(src=0, dst=1) == [], "a probing follower gets nothing until it answers"
    net.step(0, 1, HeartbeatResponse(net[0].term, 0))
    assert len(net.take(src=0, dst=1, kind=AppendEntries)) == 1, "a heartbeat answer re-opens the probe"


def test_lost_append_is_retransmitted():
    net = PaperNet(3)
    net.elect(0)
    net[0].propose(16, b"lost")
    net.flush(0)
    net.take(src=0)                               # every copy is lost
    for _ in range(15):
        net.tick(0, 10)
        net.deliver_all()
    assert net[1].log.last_index == net[0].log.last_index
    assert net[0].commit_index == net[0].log.last_index


def test_heartbeat_commit_is_min_of_match_and_commit():
    net = PaperNet(3)
    net.elect(0)
    net.blocked = {(0, 2)}
    index = net[0].propose(16, b"x")
    net.flush(0)
    net.deliver_all()
    assert net[0].commit_index == index
    net.blocked = set()
    net.tick(0, 60)
    beats = {d: m.commit_index for _, d, m in net.take(src=0, kind=Heartbeat)}
    assert beats[1] == index and beats[2] < index


def test_stale_duplicate_reply_is_ignored():
    net = PaperNet(3)
    net.elect(0)
    match = net[0].leader_state.progress[1].match
    net.step(0, 1, AppendResponse(net[0].term, True, 0))
    assert net[0].leader_state.progress[1].match == match
    net.step(0, 1, AppendResponse(net[0].term, False, 0, 1, 0))   # reject for a prev we left behind
    assert net[0].counters.get("stale_append_reject", 0) == 1


# ------------------------------------------------------------------ compaction / snapshot hook
def test_compact_then_lagging_follower_needs_snapshot():
    net = PaperNet(3)
    net.elect(0)
    net.blocked = {(0, 2)}
    for i in range(10):
        net[0].propose(16, b"c%d" % i)
        net.flush(0)
        net.deliver_all()
    leader = net[0]
    net.take()
    with pytest.raises(ValueError):
        leader.compact(leader.applied_index + 1, leader.term)
    leader.compact(leader.applied_index - 1, leader.term)
    assert leader.log.first_index == leader.applied_index
    net.blocked = set()
    for _ in range(20):
        net.tick(0, 10)
        net.deliver_all()
    requests = [r for rd in net.readies[0] for r in rd.snapshot_requests]
    assert requests and requests[0][0] == 2 and requests[0][1] == leader.log.base_index
    leader.report_snapshot(2, True)
    pr = leader.leader_state.progress[2]
    assert pr.match == leader.log.base_index and pr.next == leader.log.base_index + 1


# ------------------------------------------------------------------ bad input and misuse
def test_unknown_sender_and_unsupported_message_are_counted():
    net = PaperNet(3)
    net.step(1, 7, Heartbeat(1, 0))
    net.step(1, 1, Heartbeat(1, 0))
    assert net[1].counters["dropped_unknown_sender"] == 2
    net.step(1, 0, InstallSnapshot(0, 5, 1, 0, 10, True, b""))
    assert net[1].counters["dropped_unsupported_message"] == 1


def test_advance_must_follow_ready():
    core = RaftCore(CoreConfig(0, (0, 1, 2)), random.Random(1), log=LogIndex())
    core.tick(0)
    core.step(1, Heartbeat(1, 0), 1)
    rd = core.ready()
    with pytest.raises(RuntimeError):
        core.step(1, Heartbeat(1, 0), 2)
    with pytest.raises(RuntimeError):
        core.advance(object())
    core.advance(rd)
    core.step(1, Heartbeat(1, 0), 3)


@pytest.mark.parametrize("kwargs", [dict(voters=()), dict(voters=(0, 0)), dict(election_timeout_ns=0),
                                    dict(heartbeat_interval_ns=300 * MS)])
def test_config_is_validated(kwargs):
    args = dict(member_id=0, voters=(0, 1, 2))
    args.update(kwargs)
    with pytest.raises(ValueError):
        CoreConfig(**args)


def test_recovered_state_is_used():
    log = make_log([1, 1, 2])
    core = RaftCore(CoreConfig(0, (0, 1, 2)), random.Random(1), HardState(3, 1), log, commit_index=2)
    assert (core.term, core.voted_for, core.commit_index, core.persisted_index) == (3, 1, 2, 3)
    core.tick(0)
    core.step(2, RequestVote(3, 5, 5), 1)
    rd = core.ready()
    assert [m.granted for _, m in rd.messages] == [False], "voted for 1 in term 3 already"


def test_archive_hard_state_without_a_vote_can_still_vote():
    """The archive recovers "no vote" as voted_for=None; a restarted member must still be able
    to grant its vote in its current term (it refused every candidate until the next term)."""
    from aeronpy.archive import HardState as ArchiveHardState
    core = RaftCore(CoreConfig(0, (0, 1, 2)), random.Random(1), ArchiveHardState(3, None), make_log([1, 1, 2]))
    assert core.voted_for == NO_VOTE
    core.tick(0)
    core.step(2, RequestVote(3, 5, 5), 1)
    rd = core.ready()
    assert [m.granted for _, m in rd.messages] == [True]
    assert rd.hard_state.voted_for == 2


def test_election_transitions_are_recorded_with_reasons():
    net = PaperNet(3)
    net.elect(1)
    history = net[1].election.history
    assert [h[2].name for h in history] == ["CANVASS", "NOMINATE", "CANDIDATE_BALLOT", "LEADER_READY"]
    assert all(isinstance(h[3], str) and h[3] for h in history)
    assert net[1].election.transition_count == 4


def test_single_member_cluster_elects_and_commits_itself():
    net = PaperNet(1)
    for _ in range(60):
        net.tick(0, 10)
    assert net[0].role == Role.LEADER
    index = net[0].propose(16, b"solo")
    net.flush(0)
    assert net[0].commit_index == index and (index, net[0].term) in net.applied[0]
