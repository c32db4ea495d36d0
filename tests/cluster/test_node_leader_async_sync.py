"""A leader steps on while its own fsync runs (``advance(rd, durable=False)``).

With ``file_sync = "data"`` a leader used to take no step until its own sync was done: a slow
leader disk (50 ms syncs) set the whole cluster's pace, and a sync longer than the election
timeout cost it office (no heartbeats while it waited; bench/slowdisk_trial). Now the leader
advances its Ready as soon as it has written it, counts its followers' acknowledgements
meanwhile, and counts its own copy only once the sync thread reports it (Raft thesis 10.2.1).

The tests hold the leader's fsync on real files and watch: an entry commits on the followers'
copies; it does not commit on one follower and the leader's unsynced copy (the negative
control counts that copy and sees it commit); a held leader keeps office; and a leader that
steps down with writes still syncing acknowledges nothing of them until they are durable.
"""
from __future__ import annotations

import time

from aeronpy.core import config as core_config
from aeronpy.core.raft import RaftCore
from aeronpy.service import Role

from .test_node_send_first import RAW_ENTRY, _holding, _pump, _settled_cluster


def test_a_leader_commits_on_its_followers_while_its_fsync_is_held(tmp_path):
    nodes, leader, followers = _settled_cluster(tmp_path)
    with _holding(nodes) as hold:
        term = leader.core.term
        gate = hold(leader.archive)
        index = leader.core.propose(RAW_ENTRY, b"payload")
        assert _pump(nodes, lambda: leader.commit_index >= index, 5.0), \
            f"not committed while the leader's sync was held (commit {leader.commit_index})"
        assert leader.archive.durable_index < index              # the hold was real
        assert leader.core.persisted_index < index               # and not counted
        assert leader.core.applied_index >= index                # applied, answered
        # three election timeouts more: its heartbeats go on, so nobody stands
        _pump(nodes, lambda: False, 0.6)
        assert leader.role == Role.LEADER and leader.core.term == term
        assert all(f.core.leader_id == leader.member_id for f in followers)
        gate.set()
        assert _pump(nodes, lambda: leader.core.persisted_index >= index, 10.0)
        assert leader.archive.durable_index >= index
        for node in nodes:
            assert node.failure is None, node.failure


def _commit_with_one_follower_while_held(tmp_path):
    """The leader's fsync held and one follower stopped (not run): returns (the entry's index,
    the leader's commit after pumping the other two for a while, its durable index then)."""
    nodes, leader, followers = _settled_cluster(tmp_path)
    with _holding(nodes) as hold:
        running = [leader, followers[0]]
        gate = hold(leader.archive)
        index = leader.core.propose(RAW_ENTRY, b"payload")
        _pump(running, lambda: leader.commit_index >= index, 0.15)   # < election timeout
        commit, durable = leader.commit_index, leader.archive.durable_index
        gate.set()
        assert _pump(running, lambda: leader.commit_index >= index, 10.0)   # and now it does
        return index, commit, durable


def test_a_leaders_unsynced_copy_does_not_count_towards_a_quorum(tmp_path):
    index, commit, durable = _commit_with_one_follower_while_held(tmp_path)
    assert durable < index
    assert commit < index, "committed on one follower and the leader's copy still syncing"


def test_negative_control_counting_the_unsynced_copy_commits(tmp_path, monkeypatch):
    monkeypatch.setattr(core_config, "_BUGS", {"leader_counts_unsynced"})
    index, commit, durable = _commit_with_one_follower_while_held(tmp_path)
    assert durable < index
    assert commit >= index


def test_negative_control_a_leader_that_waits_for_its_sync_commits_nothing_meanwhile(
        tmp_path, monkeypatch):
    """As before this change: every Ready of the leader waits for its write (send_first off,
    and every message of such a Ready held until the sync, as the node did before only
    acknowledgements were held): nothing commits while the leader's fsync is held."""
    monkeypatch.setattr(core_config, "_BUGS", {"holds_all_messages"})
    original = RaftCore.ready

    def ready_without_send_first(self):
        rd = original(self)
        rd.send_first = False
        return rd
    monkeypatch.setattr(RaftCore, "ready", ready_without_send_first)
    nodes, leader, _followers = _settled_cluster(tmp_path)
    with _holding(nodes) as hold:
        hold(leader.archive)
        index = leader.core.propose(RAW_ENTRY, b"payload")
        _pump(nodes, lambda: leader.commit_index >= index, 0.15)
        assert leader.commit_index < index


def test_a_leader_that_steps_down_acknowledges_its_unsynced_writes_only_once_durable(tmp_path):
    nodes, leader, followers = _settled_cluster(tmp_path)
    with _holding(nodes) as hold:
        gate = hold(leader.archive, hold_s=20.0)
        index = leader.core.propose(RAW_ENTRY, b"payload")
        assert _pump(nodes, lambda: leader.commit_index >= index, 5.0)
        assert leader.core.transfer_leadership(None, time.monotonic_ns())
        assert _pump(nodes, lambda: any(f.role == Role.LEADER for f in followers), 5.0), \
            "no successor took over"
        successor = next(f for f in followers if f.role == Role.LEADER)
        assert _pump(nodes, lambda: successor.commit_index > index, 5.0)
        successor_last = successor.core.log.last_index
        # the old leader's messages since it stepped down (its vote, then acknowledgements)
        # wait for every write so far, its held ones too: it has said nothing of them
        assert leader.core.role == Role.FOLLOWER and leader._held
        assert leader.archive.durable_index < index
        old = successor.core.leader_state.progress[leader.member_id]
        assert old.match < index, f"acknowledged {old.match} with {leader.archive.durable_index} durable"
        gate.set()
        assert _pump(nodes, lambda: old.match >= successor_last, 10.0)
        assert leader.archive.durable_index >= successor_last
        for node in nodes:
            assert node.failure is None, node.failure


def test_a_leader_whose_sync_stalls_hands_the_leadership_over(tmp_path, caplog):
    """A sync with no progress for _SYNC_STALL_NS (2 s): the disk is failing, and while
    it leads the cluster commits only on its followers' copies. It hands over, once, and says
    so; the test above (0.6 s held) is the control in which it keeps office."""
    from aeronpy.cluster import node as node_module
    nodes, leader, followers = _settled_cluster(tmp_path)
    with _holding(nodes) as hold:
        gate = hold(leader.archive, hold_s=20.0)
        index = leader.core.propose(RAW_ENTRY, b"payload")
        assert _pump(nodes, lambda: leader.commit_index >= index, 5.0)
        started = time.monotonic()
        assert _pump(nodes, lambda: any(f.role == Role.LEADER for f in followers),
                     node_module._SYNC_STALL_NS / 1e9 + 3.0), "nobody took over"
        assert time.monotonic() - started > 1.0                   # not before the stall bound
        assert leader.core.counters.get("leader_sync_stalls") == 1
        assert any("made no progress" in r.getMessage() and "handing the leadership over"
                   in r.getMessage() for r in caplog.records)
        successor = next(f for f in followers if f.role == Role.LEADER)
        assert _pump(nodes, lambda: successor.commit_index > index, 5.0)
        gate.set()
        last = successor.core.log.last_index
        assert _pump(nodes, lambda: leader.archive.durable_index >= last
                     and leader.commit_index >= last, 10.0)
        for node in nodes:
            assert node.failure is None, node.failure


def _follower_held(tmp_path):
    """One follower's fsync held: returns (entries A and B, what the follower's log, durable
    end and the leader's count of it were during the hold, its count after release)."""
    nodes, leader, followers = _settled_cluster(tmp_path)
    with _holding(nodes) as hold:
        slow, fast = followers
        gate = hold(slow.archive, hold_s=20.0)
        a = leader.core.propose(RAW_ENTRY, b"a")
        assert _pump(nodes, lambda: leader.commit_index >= a, 5.0)     # the leader and `fast`
        b = leader.core.propose(RAW_ENTRY, b"b")
        _pump(nodes, lambda: slow.core.log.last_index >= b and leader.commit_index >= b, 2.0)
        progress = leader.core.leader_state.progress[slow.member_id]
        during = (slow.core.log.last_index, slow.archive.durable_index, progress.match,
                  bool(slow._held))
        gate.set()
        _pump(nodes, lambda: progress.match >= b, 10.0)
        for node in nodes:
            assert node.failure is None, node.failure
        return a, b, during, progress.match


def test_a_follower_takes_appends_while_its_fsync_is_held_and_acknowledges_once_durable(tmp_path):
    """A follower used to take no step while its sync ran; now it takes the next appends
    (group commit across syncs) and holds its acknowledgements until they are durable."""
    a, b, (last, durable, match, held), after = _follower_held(tmp_path)
    assert last >= b                            # it took both appends during the hold
    assert durable < a                          # the hold was real
    assert match < a and held, "acknowledged entries it had not synced"
    assert after >= b                           # and acknowledged them once released


def test_negative_control_a_follower_acknowledging_before_its_sync_is_seen(tmp_path, monkeypatch):
    monkeypatch.setattr(core_config, "_BUGS", {"acks_before_persist"})
    a, b, (last, durable, match, held), after = _follower_held(tmp_path)
    assert durable < a
    assert match >= a


def test_released_acknowledgements_are_folded_to_the_highest_per_leader_and_term():
    """A sync releases one acknowledgement per append that came in while it ran; only the
    highest per (leader, term) goes, every other message in order. The highest, not the
    last: a re-sent older append is acknowledged with a lower match after a higher one."""
    from collections import deque
    from types import SimpleNamespace
    from aeronpy.cluster.node import ClusterNode
    from aeronpy.core.messages import AppendResponse, HeartbeatResponse, Vote
    sent = []
    fake = SimpleNamespace(_held=deque(), _send_messages=sent.extend)
    refusal = AppendResponse(3, False, 4, 2, 1)
    fake._held.extend([
        (5, [(0, AppendResponse(3, True, 5, 0, 0)), (0, HeartbeatResponse(3, 5))]),
        (7, [(0, AppendResponse(3, True, 7, 0, 0)), (1, Vote(4, True, False))]),
        (8, [(0, AppendResponse(3, True, 6, 0, 0)), (0, refusal),
             (2, AppendResponse(4, True, 8, 0, 0))]),
        (9, [(0, AppendResponse(3, True, 9, 0, 0))]),          # not durable yet
    ])
    assert ClusterNode._release_held(fake, 8) == 1
    assert sent == [(0, HeartbeatResponse(3, 5)), (0, AppendResponse(3, True, 7, 0, 0)),
                    (1, Vote(4, True, False)), (0, refusal), (2, AppendResponse(4, True, 8, 0, 0))]
    assert [index for index, _ in fake._held] == [9]
    assert ClusterNode._release_held(fake, 8) == 0 and len(sent) == 5


def test_a_stalled_leader_whose_hand_over_found_no_taker_tries_again(tmp_path, monkeypatch):
    """Second review: the hand-over was once per stall, so a transfer that found no taker
    (aborted) left a leader with a dead disk in office for good. It now tries again each 2 s
    the stall lasts. The first attempt is made to find no follower here."""
    from aeronpy.cluster import node as node_module
    nodes, leader, followers = _settled_cluster(tmp_path)
    with _holding(nodes) as hold:
        real = leader.core.transfer_leadership
        calls = []

        def first_finds_nobody(target=None, now_ns=None):
            calls.append(now_ns)
            return False if len(calls) == 1 else real(target, now_ns)
        monkeypatch.setattr(leader.core, "transfer_leadership", first_finds_nobody)
        gate = hold(leader.archive, hold_s=20.0)
        index = leader.core.propose(RAW_ENTRY, b"payload")
        assert _pump(nodes, lambda: leader.commit_index >= index, 5.0)
        stall_s = node_module._SYNC_STALL_NS / 1e9
        assert _pump(nodes, lambda: any(f.role == Role.LEADER for f in followers),
                     2 * stall_s + 4.0), f"nobody took over ({len(calls)} attempts)"
        assert len(calls) == 2 and leader.core.counters.get("leader_sync_stalls") == 2
        assert calls[1] - calls[0] > node_module._SYNC_STALL_NS
        gate.set()
        for node in nodes:
            assert node.failure is None, node.failure
