"""``Ready.send_first``: which Readies may send before their write.

A leader's appends, heartbeats and refusals promise nothing about its own disk, so the driver
may send them before it writes (and syncs) the entries they carry; the leader's copy counts for
a quorum only from ``advance(rd)`` on. Anything that does promise (a follower's acknowledgement,
a vote, a term or vote not yet saved, a cut) must wait for the write. The simulator's version
of the crash in between is in tests/sim/test_crash_mid_ready.py.
"""
from __future__ import annotations

import random

from aeronpy.core import CoreConfig, HardState, RaftCore, Role
from aeronpy.core.messages import AppendEntries, AppendResponse, RequestVote

from .harness import LogIndex, PaperNet


def test_a_leaders_append_ready_sends_first():
    net = PaperNet(3)
    net.elect(0)
    leader = net[0]
    leader.propose(16, b"x")
    rd = leader.ready()
    assert rd.send_first
    assert rd.persist_hi > rd.persist_lo                     # entries still to write ...
    assert [type(m) for _to, m in rd.messages] == [AppendEntries, AppendEntries]   # ... already sendable
    # its own copy is not counted before advance: commit needs the followers or the write
    assert leader.persisted_index == rd.persist_lo - 1
    leader.advance(rd)
    assert leader.persisted_index == rd.persist_hi - 1


def test_a_followers_acknowledgement_waits_for_its_write():
    net = PaperNet(3)
    net.elect(0)
    net[0].propose(16, b"x")
    net.flush(0)
    (src, dst, append), = net.take(src=0, dst=1)
    follower = net[1]
    follower.step(src, append, net.now)
    rd = follower.ready()
    assert not rd.send_first
    assert rd.persist_hi > rd.persist_lo
    assert [type(m) for _to, m in rd.messages] == [AppendResponse]


def test_a_candidates_ballot_waits_for_its_term_and_vote():
    net = PaperNet(3, pre_vote=False)
    cand = net[1]
    for _ in range(200):
        net.now += 10_000_000
        cand.tick(net.now)
        if cand.role == Role.CANDIDATE:
            break
    rd = cand.ready()
    assert rd.hard_state is not None and not rd.send_first
    assert any(type(m) is RequestVote for _to, m in rd.messages)


def test_a_lone_member_that_elects_itself_writes_its_vote_first():
    core = RaftCore(CoreConfig(0, (0,)), random.Random(1), HardState(0), LogIndex())
    now = 0
    for _ in range(200):
        now += 10_000_000
        core.tick(now)
        if core.role == Role.LEADER:
            break
    assert core.role == Role.LEADER
    rd = core.ready()
    assert rd.hard_state is not None                         # term and self-vote unsaved
    assert not rd.send_first
