"""The compiled steady-state step (aeronpy._steppath) against ``RaftCore.step``.

The fast path may only ever do what ``step`` does. Three layers check that:

- twin cores, one fed through ``StepPath.on_message`` (falling back to ``step`` when it
  declines, as the node does), one through ``step`` alone, compared field by field after
  every message: for a follower its term, vote, role, leader, commit, verified index, contact
  time, election state and deadline, the random generator's state, the log's entries, queued
  messages and counters; for a leader also every follower's progress (match, next, mode,
  in-flight window, ack and heard times). Hypothesis drives the messages; hand-made cases
  cover each guard;
- the simulator's swarm seeds run with the path and without it must leave the same trace
  digest (every delivery, reply and fault in order), and both cases must have been taken;
- a real 3-node cluster's followers and leader take the path for the requests they carry.

Negative controls: a fast path that forgets the acknowledgement, forgets the election timer's
random draw, or forgets to commit is caught by the twin comparison and by the trace digests.
"""
from __future__ import annotations

import random
import struct
import time

import pytest
from hypothesis import given, settings, strategies as st

from aeronpy._codec import encode
from aeronpy._steppath import StepPath
from aeronpy.core import CoreConfig, RaftCore
from aeronpy.core import config as core_config
from aeronpy.core.messages import AppendEntries, AppendResponse, Heartbeat
from aeronpy.service import Role
from aeronpy.testing import member as sim_member
from aeronpy.testing.inproc import inproc_cluster
from aeronpy.testing.swarm import run_seed

from .harness import LogIndex, PaperNet

MS = 1_000_000
LEADER = 0


def _packed(first_index: int, terms) -> tuple:
    log = LogIndex(first_index - 1, 0)
    for i, term in enumerate(terms):
        log.append(term, 16, b"e%d-t%d" % (first_index + i, term))
    if not terms:
        return b"", 0
    return log.pack(first_index, first_index + len(terms), 1 << 20)


def _follower(seed: int = 1, log_terms=(1, 1), term: int = 1) -> RaftCore:
    """Member 1 of (0, 1, 2), following member 0 in ``term`` with the given log, settled."""
    log = LogIndex()
    for i, t in enumerate(log_terms):
        log.append(t, 16, b"e%d-t%d" % (i + 1, t))
    core = RaftCore(CoreConfig(1, (0, 1, 2), election_timeout_ns=200 * MS), random.Random(seed), log=log)
    core.step(LEADER, Heartbeat(term, 0), 1 * MS)     # higher term from a leader: follow it
    _drain(core)
    return core


def _drain(core: RaftCore) -> list:
    out = []
    while core.has_ready():
        rd = core.ready()
        out.extend(rd.messages)
        core.advance(rd)
    return out


def _state(core: RaftCore) -> tuple:
    log = core.log
    entries = [(i, log.term_at(i), log.type_at(i), bytes(log.payload_at(i)))
               for i in range(log.first_index, log.last_index + 1)]
    return (core.term, core.voted_for, core.role, core.leader_id, core.commit_index,
            core.verified_index, core.last_leader_contact_ns, core.now_ns, core.election.state,
            core.election.deadline_ns, core.election.transition_count, core._rng.getstate(),
            log.base_index, log.base_term, entries, list(core._messages), dict(core.counters),
            core._pending_hard_state, core._truncate_from)


def _feed_fast(path, core, src, msg, now_ns) -> bool:
    """What ClusterNode._on_consensus_message does: the path, else decode-and-step."""
    if path.on_message(src, encode(msg), now_ns):
        return True
    core.step(src, msg, now_ns)
    return False


def _both(fast_call, slow_call):
    """Run both; they must raise the same error or neither: None, or that error's text."""
    raised = []
    for call in (fast_call, slow_call):
        try:
            call()
            raised.append(None)
        except Exception as exc:   # the core refusing an impossible input, e.g. ValueError
            raised.append(f"{type(exc).__name__}: {exc}")
    assert raised[0] == raised[1]
    return raised[0]


def _assert_declined(core, src, frame, state, bug=None) -> None:
    """The path declines ``frame`` and changes nothing ``state(core)`` shows (with the test bug
    ``bug`` switched on meanwhile, when given)."""
    before = state(core)
    path = StepPath(core)
    if bug is not None:
        core_config._BUGS.add(bug)
    try:
        assert path.on_message(src, frame, 9 * MS) is False
    finally:
        core_config._BUGS.discard(bug)
    assert state(core) == before
    assert path.appends_handled == 0 and path.acks_handled == 0


# ------------------------------------------------------------------ the steady state
def test_the_steady_state_append_is_taken_and_matches_step():
    fast, slow = _follower(), _follower()
    path = StepPath(fast)
    blob, count = _packed(3, [1, 1, 1])
    msg = AppendEntries(1, 2, 1, 4, blob, count)
    assert _feed_fast(path, fast, LEADER, msg, 5 * MS) is True
    slow.step(LEADER, msg, 5 * MS)
    assert _state(fast) == _state(slow)
    assert fast.log.last_index == 5 and fast.commit_index == 4
    assert fast._messages == [(LEADER, AppendResponse(1, True, 5))]
    assert path.appends_handled == 1


def test_an_empty_append_only_moves_the_commit():
    fast, slow = _follower(), _follower()
    msg = AppendEntries(1, 2, 1, 2)
    assert _feed_fast(StepPath(fast), fast, LEADER, msg, 7 * MS) is True
    slow.step(LEADER, msg, 7 * MS)
    assert _state(fast) == _state(slow)
    assert fast.commit_index == 2


@pytest.mark.parametrize("case", [
    "stale term", "higher term", "prev behind last", "prev past last", "prev term differs",
    "from another member", "unknown sender", "awaiting advance", "bug switched on",
    "not an append", "malformed", "candidate",
])
def test_every_other_case_is_declined_and_changes_nothing(case):
    core = _follower(term=2, log_terms=(1, 2))
    blob, count = _packed(3, [2])
    frame = encode(AppendEntries(2, 2, 2, 1, blob, count))
    src = LEADER
    if case == "stale term":
        frame = encode(AppendEntries(1, 2, 2, 1, blob, count))
    elif case == "higher term":
        frame = encode(AppendEntries(3, 2, 2, 1, blob, count))
    elif case == "prev behind last":
        frame = encode(AppendEntries(2, 1, 1, 1, blob, count))
    elif case == "prev past last":
        frame = encode(AppendEntries(2, 3, 2, 1, blob, count))
    elif case == "prev term differs":
        frame = encode(AppendEntries(2, 2, 1, 1, blob, count))
    elif case == "from another member":
        src = 2
    elif case == "unknown sender":
        src = 9
        core.leader_id = 9              # even a leader id that is not a peer is refused
    elif case == "awaiting advance":
        core._messages.append((LEADER, AppendResponse(2, True, 2)))
        core.ready()                    # not advanced
    elif case == "not an append":
        frame = encode(Heartbeat(2, 1))
    elif case == "malformed":
        frame = frame[:-3]
    elif case == "candidate":
        core.role = Role.CANDIDATE
    _assert_declined(core, src, frame, _state,
                     "truncate_matching_entries" if case == "bug switched on" else None)


def test_a_core_with_another_log_type_is_never_handled():
    core = _follower()

    class OtherLog:
        def __getattr__(self, name):
            return getattr(real, name)
    real = core.log
    core.log = OtherLog()
    path = StepPath(core)
    core.log = real
    blob, count = _packed(3, [1])
    assert path.on_message(LEADER, encode(AppendEntries(1, 2, 1, 1, blob, count)), 3 * MS) is False


# ------------------------------------------------------------------ random message sequences
_append = st.tuples(
    st.integers(1, 4),                       # term
    st.integers(0, 8),                       # prev_index
    st.integers(0, 4),                       # prev_term
    st.integers(0, 10),                      # commit_index
    st.lists(st.integers(1, 4), max_size=4), # entry terms
    st.sampled_from([0, 0, 0, 2]),           # sender (2: not the leader)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_append, min_size=1, max_size=25), st.integers(0, 2**32))
def test_random_appends_leave_the_twins_equal(messages, seed):
    fast, slow = _follower(seed), _follower(seed)
    path = StepPath(fast)
    now = 2 * MS
    for term, prev, prev_term, commit, terms, src in messages:
        now += 3 * MS
        blob, count = _packed(prev + 1, sorted(terms)) if terms else (b"", 0)
        msg = AppendEntries(term, prev, prev_term, commit, blob, count)
        outcome = _both(lambda: _feed_fast(path, fast, src, msg, now), lambda: slow.step(src, msg, now))
        assert _state(fast) == _state(slow)
        if outcome is not None:
            return      # both refused it the same way (entries below an earlier term): a node stops
        assert _drain(fast) == _drain(slow)
        assert _state(fast) == _state(slow)


def test_random_appends_do_reach_the_fast_path():
    """The property test is only worth its name if the path is taken often in it."""
    fast = _follower()
    path = StepPath(fast)
    rng = random.Random(5)
    now = 2 * MS
    for _ in range(200):
        now += MS
        last = fast.log.last_index
        blob, count = _packed(last + 1, [1] * rng.randrange(0, 3))
        _feed_fast(path, fast, LEADER, AppendEntries(1, last, 1, last, blob, count), now)
        _drain(fast)
    assert path.appends_handled == 200


# ------------------------------------------------------------------ negative controls (twins)
class _ForgetsTheAck:
    def __init__(self, core):
        self.core, self.real = core, StepPath(core)

    def on_message(self, src, frame, now_ns):
        taken = self.real.on_message(src, frame, now_ns)
        if taken:
            self.core._messages.pop()
        return taken


class _SkipsTheTimerDraw:
    def __init__(self, core):
        self.core, self.real = core, StepPath(core)

    def on_message(self, src, frame, now_ns):
        election, rng = self.core.election, self.core._rng
        deadline, state = election.deadline_ns, rng.getstate()
        taken = self.real.on_message(src, frame, now_ns)
        if taken:
            election.deadline_ns = deadline
            rng.setstate(state)
        return taken


@pytest.mark.parametrize("broken", [_ForgetsTheAck, _SkipsTheTimerDraw])
def test_negative_control_a_broken_fast_path_is_caught_by_the_twins(broken):
    fast, slow = _follower(), _follower()
    path = broken(fast)
    blob, count = _packed(3, [1])
    msg = AppendEntries(1, 2, 1, 1, blob, count)
    assert _feed_fast(path, fast, LEADER, msg, 5 * MS) is True
    slow.step(LEADER, msg, 5 * MS)
    assert _state(fast) != _state(slow)


# ------------------------------------------------------------------ leader: AppendResponse
def _leader_net(seed: int = 3, entries: int = 3) -> PaperNet:
    """Member 0 leads (0, 1, 2), with ``entries`` proposed and their appends delivered to the
    followers; their acknowledgements wait in the outbox."""
    net = PaperNet(3, seed=seed)
    net.elect(0)
    for i in range(entries):
        net[0].propose(16, b"p%d" % i)
    net.flush(0)
    for src, dst, msg in net.take(src=0):
        net.step(dst, src, msg)
    return net


def _leader_state(core: RaftCore) -> tuple:
    ls = core.leader_state
    progress = None if ls is None else sorted(
        (m, pr.match, pr.next, pr.mode, pr.probe_sent, list(pr.inflight), pr.last_ack_ns,
         pr.last_heard_ns, pr.pending_snapshot_index) for m, pr in ls.progress.items())
    extra = None if ls is None else (ls.transfer_target, ls.broadcast_pending, ls.tick_due_ns,
                                     ls.next_heartbeat_ns)
    return _state(core) + (core.persisted_index, core.applied_index, progress, extra)


def _ack_twins(seed: int = 3, entries: int = 3):
    nets = _leader_net(seed, entries), _leader_net(seed, entries)
    assert _leader_state(nets[0][0]) == _leader_state(nets[1][0])
    return nets


def test_a_leaders_acknowledgement_is_taken_commits_and_matches_step():
    fast_net, slow_net = _ack_twins()
    fast, slow = fast_net[0], slow_net[0]
    path = StepPath(fast)
    acks = fast_net.take(dst=0, kind=AppendResponse)
    assert acks and acks == slow_net.take(dst=0, kind=AppendResponse)
    commit_before = fast.commit_index
    for src, _dst, msg in acks:
        now = fast_net.now + 4 * MS
        assert _feed_fast(path, fast, src, msg, now) is True
        slow.step(src, msg, now)
        assert _leader_state(fast) == _leader_state(slow)
    assert fast.commit_index > commit_before            # the quorum committed through the path
    assert path.acks_handled == len(acks)


def test_an_acknowledgement_with_room_sends_the_waiting_entries():
    fast_net, slow_net = _ack_twins()
    fast, slow = fast_net[0], slow_net[0]
    for net in (fast_net, slow_net):
        net[0].propose(16, b"more")           # waiting for a window to open: not broadcast yet
    src, _dst, msg = fast_net.take(dst=0, kind=AppendResponse)[0]
    path = StepPath(fast)
    assert _feed_fast(path, fast, src, msg, 9 * MS) is True
    slow.step(src, msg, 9 * MS)
    assert _leader_state(fast) == _leader_state(slow)


@pytest.mark.parametrize("case", ["refusal", "stale term", "unknown sender", "probe mode",
                                  "transfer", "awaiting advance", "bug switched on", "malformed",
                                  "bad flag"])
def test_every_other_acknowledgement_is_declined_and_changes_nothing(case):
    net = _leader_net()
    core = net[0]
    src, msg = 1, AppendResponse(core.term, True, core.log.last_index)
    frame = encode(msg)
    if case == "refusal":
        frame = encode(AppendResponse(core.term, False, 1, 1, 0))
    elif case == "stale term":
        frame = encode(AppendResponse(core.term - 1, True, 1))
    elif case == "unknown sender":
        src = 7
    elif case == "probe mode":
        core.leader_state.progress[1].become_probe(1)
    elif case == "transfer":
        core.leader_state.transfer_target = 2
    elif case == "awaiting advance":
        core.ready()
    elif case == "malformed":
        frame = frame[:-1]
    elif case == "bad flag":
        frame = frame[:12] + b"\x02" + frame[13:]
    _assert_declined(core, src, frame, _leader_state,
                     "commit_old_term_by_counting" if case == "bug switched on" else None)


_ack = st.tuples(st.sampled_from([1, 2, 2, 9]),   # sender (9: not a member)
                 st.integers(0, 3),              # term offset below the leader's
                 st.sampled_from([True, True, True, False]),
                 st.integers(0, 12),             # match index
                 st.integers(0, 12))             # conflict index


@settings(max_examples=300, deadline=None)
@given(st.lists(_ack, min_size=1, max_size=20), st.integers(1, 6), st.integers(0, 1000))
def test_random_acknowledgements_leave_the_leader_twins_equal(acks, entries, seed):
    fast_net, slow_net = _ack_twins(seed, entries)
    fast, slow = fast_net[0], slow_net[0]
    path = StepPath(fast)
    now = fast_net.now
    for src, back, success, match, conflict in acks:
        now += MS
        last = fast.log.last_index
        msg = AppendResponse(max(fast.term - back, 0), success, min(match, last), conflict, 0)
        outcome = _both(lambda: _feed_fast(path, fast, src, msg, now), lambda: slow.step(src, msg, now))
        assert _leader_state(fast) == _leader_state(slow)
        if outcome is not None:
            return
        assert _drain(fast) == _drain(slow)
        assert _leader_state(fast) == _leader_state(slow)


# ------------------------------------------------------------------ negative controls (leader)
class _ForgetsToCommit:
    def __init__(self, core):
        self.core, self.real = core, StepPath(core)

    def on_message(self, src, frame, now_ns):
        commit = self.core.commit_index
        taken = self.real.on_message(src, frame, now_ns)
        if taken:
            self.core.commit_index = commit
        return taken


def test_negative_control_a_path_that_forgets_to_commit_is_caught_by_the_twins():
    fast_net, slow_net = _ack_twins()
    fast, slow = fast_net[0], slow_net[0]
    path = _ForgetsToCommit(fast)
    for src, _dst, msg in fast_net.take(dst=0, kind=AppendResponse):
        _feed_fast(path, fast, src, msg, 5 * MS)
        slow.step(src, msg, 5 * MS)
    assert _leader_state(fast) != _leader_state(slow)


# ------------------------------------------------------------------ the simulator
SWARM_SEEDS = range(40)


def test_swarm_seeds_leave_the_same_trace_with_and_without_the_path():
    acks = appends = 0
    for seed in SWARM_SEEDS:
        with_path = run_seed(seed)
        without = run_seed(seed, fast_step_path=False)
        assert with_path.ok and without.ok, (with_path, without)
        assert with_path.trace == without.trace, f"seed {seed}: the traces differ"
        assert without.fast_steps == (0, 0)
        acks += with_path.fast_steps[0]
        appends += with_path.fast_steps[1]
    assert acks > 500 and appends > 500     # both cases taken, not declined throughout


@pytest.mark.parametrize("broken", [_ForgetsTheAck, _SkipsTheTimerDraw, _ForgetsToCommit])
def test_negative_control_a_broken_fast_path_changes_the_traces(broken, monkeypatch):
    baseline = {seed: run_seed(seed).trace for seed in range(5)}
    monkeypatch.setattr(sim_member, "StepPath", broken)
    changed = [seed for seed in range(5) if run_seed(seed).trace != baseline[seed]]
    assert changed == list(range(5))


# ------------------------------------------------------------------ a real cluster
def test_a_real_clusters_followers_and_leader_take_the_path():
    with inproc_cluster(timeout_s=20) as (nodes, pump, client):
        replies = []
        deadline = time.monotonic() + 20
        for i in range(50):
            assert client.offer(b"req-%d" % i) > 0
            while len(replies) <= i and time.monotonic() < deadline:
                pump()
                client.poll_egress(lambda cid, payload: replies.append(bytes(payload)))
        assert replies == [b"req-%d" % i for i in range(50)]
        followers = [n for n in nodes if n.role == Role.FOLLOWER]
        assert len(followers) == 2
        for node in followers:
            assert node._step_path.appends_handled >= 40     # one request at a time: an append each
        leader = next(n for n in nodes if n.role == Role.LEADER)
        assert leader._step_path.appends_handled == 0
        assert leader._step_path.acks_handled >= 50                 # at least one ack each
        assert all(node._step_path.acks_handled == 0 for node in followers)


def test_a_peers_append_with_impossible_entry_terms_is_a_counted_drop_not_a_stop():
    """Entry terms no leader's log has (decreasing, or above the message's term) fail decode
    in both paths: the follower counts a malformed message and goes on. Before the codec
    checked them, decreasing terms raised inside the log and stopped the node, and a term
    above the message's was appended, so the log claimed a term no leader had had."""
    with inproc_cluster(timeout_s=20) as (nodes, pump, client):
        replies = []
        deadline = time.monotonic() + 20

        def request(i):
            assert client.offer(b"req-%d" % i) > 0
            while len(replies) <= i and time.monotonic() < deadline:
                pump()
                client.poll_egress(lambda cid, payload: replies.append(bytes(payload)))
        for i in range(5):
            request(i)
        leader = next(n for n in nodes if n.role == Role.LEADER)
        follower = next(n for n in nodes if n.role == Role.FOLLOWER)
        core = follower.core
        last, term = core.log.last_index, core.term
        for entry_terms in ((term, term - 1), (term, term + 1)):
            blob = b"".join(struct.pack("<IHHq", 1, 16, 0, t) + b"x" for t in entry_terms)
            count = len(entry_terms)
            frame = encode(AppendEntries(term, last, core.log.term_at(last), core.commit_index,
                                         blob, count))
            bare = LogIndex(last, core.log.term_at(last))
            if entry_terms[1] < term:
                with pytest.raises(ValueError):      # what the log would have done with them
                    bare.append_packed(blob, count)
            else:                                    # and these it would have kept: an entry of
                bare.append_packed(blob, count)      # a term no leader has had yet
                assert bare.last_term == term + 1
            drops = follower._transport_counters.decode_drops
            follower._on_consensus_message(leader.config.member_id, memoryview(frame))
            assert follower._transport_counters.decode_drops == drops + 1
            assert core.log.last_index == last and follower.failure is None
        for i in range(5, 10):
            request(i)
        assert replies == [b"req-%d" % i for i in range(10)]
        assert follower.failure is None and core.log.last_index > last


@pytest.mark.parametrize("make", [
    lambda last: AppendResponse(1, True, last + 1),                   # acks what was never sent
    lambda last: AppendResponse(1, False, last + 1, last + 2, 8),     # refuses what was never sent
    lambda last: AppendResponse(1, False, last, 0, 0),                # no valid conflict index
    lambda last: AppendResponse(1, False, last, 2, -4),               # nor conflict term
], ids=["ack-past-log", "reject-past-log", "conflict-index-0", "conflict-term-negative"])
def test_an_append_response_no_follower_can_send_is_dropped_and_counted(make):
    """Found by fuzzing the core with peer messages: a refusal of an index past the leader's
    log made the leader back up past it and raised IndexError, stopping the node. Such a
    response is now dropped and counted by step, and declined by the path (twins equal)."""
    fast_net, slow_net = _ack_twins()
    fast, slow = fast_net[0], slow_net[0]
    msg = make(fast.log.last_index)
    before = _leader_state(fast)
    assert _feed_fast(StepPath(fast), fast, 1, msg, fast_net.now + 4 * MS) is False
    slow.step(1, msg, slow_net.now + 4 * MS)
    assert _leader_state(fast) == _leader_state(slow)
    # a negative term is out of any member's range: dropped before the replication checks
    counted = "dropped_out_of_range" if msg.conflict_term < 0 else "invalid_append_response"
    assert fast.counters.get(counted) == 1
    after = _leader_state(fast)
    assert after[-2] == before[-2]             # no follower's progress moved


def test_a_saved_term_below_the_logs_last_term_is_raised_to_it():
    """A review found a restore of an old backup wrote node.state at term 0 over a log of term
    5: the member won term 1 and, leading, raised 'log terms never decrease'. The core now
    starts at least at its log's last term, with no vote, and saves that."""
    from aeronpy.archive import HardState          # what the node hands the core
    log = LogIndex(0, 0)
    for term in (1, 3, 5):
        log.append(term, 16, b"x")
    core = RaftCore(CoreConfig(0, (0, 1, 2)), rng=random.Random(1),
                    hard_state=HardState(0, None), log=log)
    assert core.term == 5 and core.voted_for == core_config.NO_VOTE
    rd = core.ready()
    assert rd.hard_state is not None and rd.hard_state.term == 5
