"""Followers whose syncs outlast the leader's heartbeat timeout keep their leader in office.

A follower with writes syncing used to hold every message it sent until its log was durable:
its acknowledgements, but its heartbeat replies and votes too. With both followers' syncs
slower than ``leader_heartbeat_timeout_ms`` the leader heard from no quorum, stepped down,
and the next election waited on the same syncs. Now only an accepted AppendResponse waits
(``aeronpy.core.ready.vouches_for_log``): a heartbeat reply or a vote promises nothing about
the log. The negative control (bug switch ``holds_all_messages``, the old rule) loses office.
"""
from __future__ import annotations

from aeronpy.core import config as core_config
from aeronpy.core.messages import AppendResponse, HeartbeatResponse, Vote
from aeronpy.core.ready import split_vouching, vouches_for_log
from aeronpy.service import Role

from .test_node_send_first import RAW_ENTRY, _holding, _pump, _settled_cluster

_HELD_S = 1.5    # > 3 x leader_heartbeat_timeout_ms (400 ms) of the test cluster


def _both_followers_held(tmp_path):
    """Both followers' fsyncs held for _HELD_S while an entry is proposed. Returns (the
    leader's role and term at the start and at the end of the hold, the entry's index, the
    leader's commit and its count of the followers during the hold, whether the entry
    committed once released)."""
    nodes, leader, followers = _settled_cluster(tmp_path)
    with _holding(nodes) as hold:
        term = leader.core.term
        gates = [hold(f.archive, hold_s=20.0) for f in followers]
        index = leader.core.propose(RAW_ENTRY, b"payload")
        lost = _pump(nodes, lambda: leader.role != Role.LEADER or leader.core.term != term,
                     _HELD_S)
        during = (leader.commit_index, [f.archive.durable_index for f in followers])
        state = leader.core.leader_state
        matches = [state.progress[f.member_id].match for f in followers] if state else None
        for gate in gates:
            gate.set()
        committed = _pump(nodes, lambda: any(n.role == Role.LEADER and n.commit_index >= index
                                             for n in nodes), 10.0)
        for node in nodes:
            assert node.failure is None, node.failure
        return term, lost, leader.core.term, index, during, matches, committed


def test_a_leader_keeps_office_while_both_followers_syncs_are_held(tmp_path):
    term, lost, term_after, index, (commit, durable), matches, committed = \
        _both_followers_held(tmp_path)
    assert all(d < index for d in durable)                     # the holds were real
    assert not lost and term_after == term, "the leader lost office to its followers' disks"
    assert commit < index, "committed with no follower's copy durable"
    assert all(m < index for m in matches), f"acknowledged unsynced entries: {matches}"
    assert committed                                           # and it commits once they sync


def test_negative_control_holding_heartbeat_replies_costs_the_leader_its_office(
        tmp_path, monkeypatch):
    monkeypatch.setattr(core_config, "_BUGS", {"holds_all_messages"})
    term, lost, term_after, index, (commit, durable), _matches, committed = \
        _both_followers_held(tmp_path)
    assert all(d < index for d in durable)
    assert lost, "kept office though its followers held their heartbeat replies"
    assert committed


def test_only_accepted_acknowledgements_vouch_for_the_log():
    accepted = AppendResponse(3, True, 7, 0, 0)
    refusal = AppendResponse(3, False, 4, 2, 1)
    beat = HeartbeatResponse(3, 9)
    granted = Vote(4, True, False)
    assert vouches_for_log(accepted)
    assert not any(vouches_for_log(m) for m in (refusal, beat, granted, Vote(4, True, True)))
    free, vouching = split_vouching([(0, beat), (0, accepted), (1, granted), (0, refusal)])
    assert free == [(0, beat), (1, granted), (0, refusal)] and vouching == [(0, accepted)]


def test_negative_control_the_bug_switch_makes_every_message_vouch(monkeypatch):
    monkeypatch.setattr(core_config, "_BUGS", {"holds_all_messages"})
    assert vouches_for_log(HeartbeatResponse(3, 9)) and vouches_for_log(Vote(4, True, False))


def _heard_during_a_stall(tmp_path, stall_ns=None, monkeypatch=None):
    """One follower's fsync held for 3.5 s (past the 2 s stall bound) while entries are
    proposed. Returns (when the leader last heard that follower, seconds after the hold
    began, sampled at the end of the hold; the follower's sync_stalls; the other's)."""
    import time
    from aeronpy.cluster import node as node_module
    if stall_ns is not None:
        monkeypatch.setattr(node_module, "_SYNC_STALL_NS", stall_ns)
    nodes, leader, followers = _settled_cluster(tmp_path)
    with _holding(nodes) as hold:
        hung, fine = followers
        gate = hold(hung.archive, hold_s=20.0)
        t0_ns = time.monotonic_ns()
        index = leader.core.propose(RAW_ENTRY, b"payload")
        assert _pump(nodes, lambda: leader.commit_index >= index, 5.0)   # on `fine`
        _pump(nodes, lambda: False, 3.5)
        heard_s = (leader.core.leader_state.progress[hung.member_id].last_heard_ns - t0_ns) / 1e9
        assert leader.role == Role.LEADER                 # `fine` keeps its quorum
        gate.set()
        assert _pump(nodes, lambda: leader.core.leader_state.progress[hung.member_id].match
                     >= index, 10.0), "the stalled follower did not catch up once its sync moved"
        for node in nodes:
            assert node.failure is None, node.failure
        return heard_s, hung.core.counters.get("sync_stalls", 0), \
            fine.core.counters.get("sync_stalls", 0)


def test_a_follower_whose_sync_stalls_stops_answering_heartbeats(tmp_path, caplog):
    """Past 2 s without sync progress a member holds everything it sends: its leader stops
    hearing it (a leader that could commit only through it would step down) until the sync
    moves; then it answers and catches up."""
    heard_s, stalls, others = _heard_during_a_stall(tmp_path)
    assert 1.5 < heard_s < 3.0, f"last heard {heard_s:.2f} s into a 3.5 s hold"
    assert stalls == 1 and others == 0
    assert any("made no progress" in r.getMessage() and "answers nothing" in r.getMessage()
               for r in caplog.records)


def test_negative_control_without_the_stall_bound_it_answers_throughout(tmp_path, monkeypatch):
    heard_s, stalls, _others = _heard_during_a_stall(tmp_path, 10 ** 12, monkeypatch)
    assert heard_s > 3.3 and stalls == 0
