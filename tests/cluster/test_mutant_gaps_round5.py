"""Mutation testing, round 5: tests that pin what the async-sync change's mutants showed no
fast test held (the node's _process_ready, _release_held, _drop_held, _hold, _check_sync,
_batching_left_ns, _park; NodeSnapshots.can_install).

The first three drive three real nodes by hand (``_pump``: one duty cycle each between
checks) with a member's fsync held (``hold_fdatasync``), then look at one duty cycle: what the
node reports to its core, sends, holds or drops there. The rest call the node's methods on a
bare ClusterNode (``_bare_node``) with stub core and archive, for exact counts and timings.
"""
from __future__ import annotations

import time

from aeronpy.cluster import node as node_mod
from aeronpy.core.messages import AppendResponse
from aeronpy.service import Role
from aeronpy.testing.waits import wait_until

from .fakes import hold_fdatasync
from .test_node_send_first import RAW_ENTRY, _holding, _pump, _settled_cluster


def _close(nodes):
    for node in nodes:
        node.close()


def _synced_to(node, index, within_s=10.0):
    """Wait (no duty cycle) until ``node``'s sync thread has made ``index`` durable."""
    return wait_until(lambda: node.archive._syncer.completed >= index, within_s,
                      interval_s=0.0005)


def test_a_leader_reports_its_finished_sync_to_the_core_in_the_cycle_that_sees_it(tmp_path):
    """The cycle that finds the sync done tells the core (note_durable), which commits on the
    leader's copy and one follower's at once, not at the next Ready (a heartbeat later)."""
    nodes, leader, followers = _settled_cluster(tmp_path)
    with _holding(nodes) as hold:
        running = [leader, followers[0]]           # the other follower is stopped
        gate = hold(leader.archive)
        index = leader.core.propose(RAW_ENTRY, b"payload")
        progress = leader.core.leader_state.progress[followers[0].member_id]
        assert _pump(running, lambda: progress.match >= index, 5.0)
        assert leader.commit_index < index and leader.core.persisted_index < index
        gate.set()
        assert _synced_to(leader, index)
        leader.do_work()
        assert leader.core.persisted_index >= index
        assert leader.commit_index >= index


def _follower_holding_an_ack(tmp_path, both_followers=True, **hold):
    """A settled cluster; one follower's fsync held, an entry proposed and pumped until that
    follower wrote it and holds its acknowledgement (without the other follower, not
    ``both_followers``, the entry stays uncommitted). Returns (nodes, leader, follower, gate,
    index)."""
    nodes, leader, followers = _settled_cluster(tmp_path)
    follower = followers[0]
    running = nodes if both_followers else [leader, follower]
    gate = hold_fdatasync(follower.archive, **hold)
    try:
        index = leader.core.propose(RAW_ENTRY, b"payload")
        assert _pump(running, lambda: follower.core.written_index >= index and follower._held, 5.0)
        assert follower.archive.durable_index < index
    except BaseException:
        gate.set()
        _close(nodes)
        raise
    return nodes, leader, follower, gate, index


def test_a_follower_releases_its_held_ack_in_the_cycle_that_sees_its_sync_done(tmp_path):
    """Released where the sync is found done, not only beside the next Ready (the next append
    or heartbeat): with nothing new in its socket, one cycle sends it."""
    nodes, leader, follower, gate, index = _follower_holding_an_ack(tmp_path)
    try:
        # drain what the follower has queued (heartbeats) without running the leader
        _pump([follower], lambda: False, 0.02)
        assert follower._held
        gate.set()
        assert _synced_to(follower, index)
        follower.do_work()
        assert not follower._held, "the ack stayed held after its sync was seen done"
    finally:
        gate.set()
        _close(nodes)


def test_a_truncation_drops_the_held_acks_of_the_cut_entries(tmp_path):
    """A follower whose held acknowledgement covers entries a truncation cuts drops it, and
    counts it (held_messages_dropped): once new entries at those indexes are durable it must
    not go out."""
    nodes, leader, follower, gate, index = _follower_holding_an_ack(
        tmp_path, both_followers=False, hold_s=0.3)
    try:
        assert follower.commit_index < index and leader.commit_index < index
        before = follower.core.counters.get("held_messages_dropped", 0)
        held = sum(len(m) for _i, m in follower._held)
        # the leader stopped; this member cuts the entry (as a new leader's conflicting
        # append makes it do): its archive waits for the held sync (hold_s) first
        follower.core.truncate_log(index)
        follower.do_work()
        assert not follower._held
        assert follower.core.counters.get("held_messages_dropped", 0) == before + held
    finally:
        gate.set()
        _close(nodes)


# ---------------------------------------------------------------- _hold / _release_held alone
class _Core:
    def __init__(self):
        self.counters = {}

    def counters_add(self, name, n=1):
        self.counters[name] = self.counters.get(name, 0) + n


def _bare_node():
    """A ClusterNode with only what _hold, _drop_held and _release_held use (sent: the
    messages _send_messages got, in order)."""
    from collections import deque
    node = object.__new__(node_mod.ClusterNode)
    node._held = deque()
    node._stall_handover_ns = 0
    node.core = _Core()
    node.sent = []
    node._send_messages = node.sent.extend
    return node


def _ack(term, match):
    return AppendResponse(term, True, match, 0, 0)


def test_release_held_sends_what_is_durable_up_to_and_including_synced():
    node = _bare_node()
    node._hold(5, [(1, _ack(2, 5))])
    node._hold(6, [(1, _ack(2, 6))])
    assert node._release_held(4) == 0 and not node.sent
    assert node._release_held(5) == 1           # index == synced: durable, goes
    assert node.sent == [(1, _ack(2, 5))]
    assert [i for i, _m in node._held] == [6]   # 6 is not durable at 5: stays
    assert node._release_held(6) == 1 and node.sent[-1] == (1, _ack(2, 6)) and not node._held


def test_release_held_folds_acks_per_leader_and_term_keeping_the_highest():
    node = _bare_node()
    refusal = AppendResponse(3, False, 0, 4, 2)
    node._hold(4, [(1, _ack(3, 4)), (2, _ack(3, 4))])
    node._hold(5, [(1, _ack(3, 5)), (1, refusal)])
    node._hold(6, [(1, _ack(2, 6)), (1, _ack(3, 3))])
    node._release_held(6)
    assert node.sent == [(2, _ack(3, 4)), (1, _ack(3, 5)), (1, refusal), (1, _ack(2, 6))]


def test_hold_keeps_held_readies_max_and_counts_the_oldest_dropped():
    node = _bare_node()
    cap = node_mod._HELD_READIES_MAX
    for i in range(1, cap + 1):
        node._hold(i, [(1, _ack(1, i)), (2, _ack(1, i))])
    assert len(node._held) == cap and node.core.counters.get("held_messages_dropped", 0) == 0
    node._hold(cap + 1, [(1, _ack(1, cap + 1))])
    assert len(node._held) == cap and node._held[0][0] == 2
    assert node.core.counters["held_messages_dropped"] == 2


def test_drop_held_counts_every_message_dropped():
    node = _bare_node()
    node._hold(3, [(1, _ack(1, 3)), (2, _ack(1, 3))])
    node._hold(4, [(1, _ack(1, 4))])
    node._drop_held()
    assert not node._held and node.core.counters["held_messages_dropped"] == 3


class _SyncCore(_Core):
    """What _process_ready's sync check reads of the core: a follower with nothing new."""
    def __init__(self, persisted):
        super().__init__()
        self.persisted_index = self.written_index = persisted
        self.role = Role.FOLLOWER

    def note_durable(self, index):
        index = min(index, self.written_index)
        self.persisted_index = max(self.persisted_index, index)

    def has_ready(self):
        return False


class _SyncArchive:
    def __init__(self):
        self.synced = 0

    def poll_synced(self):
        return self.synced

    def sync_progress_ns(self):
        return 0


def test_progress_of_a_slow_sync_starts_a_new_wait_counted_again_when_slow():
    """Writes to 10, a sync slow already (counted): it makes it to 5, then stalls again past
    heartbeat_interval_ms. The progress started a new wait (_start_sync_wait), so the second
    slow stretch is counted too (slow_log_syncs), from the progress on."""
    import logging
    node = _bare_node()
    node.core = core = _SyncCore(3)
    core.written_index = 10
    node.archive = archive = _SyncArchive()
    node._sync_signalled = False
    node._slow_cycle_ns = 50_000_000
    node._slow_sync_warn_at_ns = 0
    node.log = logging.getLogger("test_mutant_gaps_round5")
    node.config = type("C", (), {"file_sync": "data", "heartbeat_interval_ms": 50})()
    ms = 1_000_000
    node._unsynced_hi = 10
    node._start_sync_wait(1_000 * ms)
    archive.synced = 3
    node._process_ready(1_100 * ms)                 # slow: counted once
    assert core.counters["slow_log_syncs"] == 1
    node._process_ready(1_200 * ms)                 # the same wait: not again
    assert core.counters["slow_log_syncs"] == 1
    archive.synced = 5
    node._process_ready(1_300 * ms)                 # progress: a new wait from here
    assert core.persisted_index == 5 and node._unsynced_hi == 10
    assert node._unsynced_since_ns == 1_300 * ms and not node._sync_slow
    node._process_ready(1_340 * ms)
    assert core.counters["slow_log_syncs"] == 1     # 40 ms: not slow yet
    node._process_ready(1_400 * ms)
    assert core.counters["slow_log_syncs"] == 2
    archive.synced = 10
    node._process_ready(1_500 * ms)
    assert node._unsynced_hi == 0 and core.persisted_index == 10


def test_a_sync_finishing_between_the_cycles_two_polls_releases_the_held_acks():
    """The sync check at the top of _process_ready sees 5 durable; the sync of the rest ends
    before the Ready below it (a heartbeat reply: nothing to write) polls again and sees all
    durable: that path, which ends the wait (_unsynced_hi = 0), sends the held acks, or they
    stayed held for good (the top check runs only while a wait is on)."""
    import logging
    node = _bare_node()
    node.core = core = _SyncCore(3)
    core.written_index = 10
    polls = iter([5, 10, 10, 10])
    node.archive = archive = _SyncArchive()
    archive.poll_synced = lambda: next(polls)
    node._sync_signalled = False
    node._slow_cycle_ns = 50_000_000
    node._slow_sync_warn_at_ns = 0
    node._file_sync = True
    node.log = logging.getLogger("test_mutant_gaps_round5")
    node._unsynced_hi = 10
    node._start_sync_wait(0)
    node._hold(10, [(1, _ack(2, 10))])
    reply = (1, AppendResponse(2, False, 0, 11, 0))
    rd = type("Rd", (), dict(send_first=False, messages=[reply], truncate_from=None,
                             hard_state=None, persist_lo=11, persist_hi=11))()
    core.has_ready = lambda: True
    core.ready = lambda: rd
    finished = []
    node._finish_ready = lambda r, now_ns, durable=True: finished.append((r, durable))
    node._process_ready(1_000_000)
    assert finished == [(rd, True)]
    assert node._unsynced_hi == 0
    assert node.sent == [(1, _ack(2, 10))] and not node._held


def _stalled_node(role):
    import logging
    node = _bare_node()
    node.core = core = _SyncCore(3)
    core.role = role
    core.written_index = 10
    core.transfers = []
    core.transfer_leadership = lambda to, now_ns: core.transfers.append(now_ns) or True
    node.archive = _SyncArchive()
    node.archive.synced = 3
    node._sync_signalled = False
    node._slow_cycle_ns = 50_000_000
    node._slow_sync_warn_at_ns = 0
    node.log = logging.getLogger("test_mutant_gaps_round5")
    node.config = type("C", (), {"file_sync": "data", "heartbeat_interval_ms": 50})()
    node._unsynced_hi = 10
    node._start_sync_wait(1_000_000)
    return node


def test_only_a_leader_hands_over_on_a_stalled_sync():
    stall = node_mod._SYNC_STALL_NS
    follower = _stalled_node(Role.FOLLOWER)
    follower._process_ready(1_000_000 + stall + 1_000_000)
    assert follower.core.counters["slow_log_syncs"] == 1
    assert "leader_sync_stalls" not in follower.core.counters and not follower.core.transfers
    assert follower.core.counters["sync_stalls"] == 1 and follower._sync_stalled
    leader = _stalled_node(Role.LEADER)
    leader._process_ready(1_000_000 + stall)                # not past it yet
    assert not leader.core.transfers
    leader._process_ready(1_000_000 + stall + 1_000_000)
    assert leader.core.counters["leader_sync_stalls"] == 1 and len(leader.core.transfers) == 1


def test_only_a_follower_with_a_sync_running_batches_appends_for_the_window():
    window = node_mod._FOLLOWER_SYNC_BATCH_NS
    node = _bare_node()
    node.core.leader_state = None
    node._unsynced_hi = 0
    assert node._batching_left_ns(5_000_000) <= 0            # nothing syncing
    node._unsynced_hi = 10
    node._start_sync_wait(5_000_000)
    assert node._batching_left_ns(5_000_000) == window
    assert node._batching_left_ns(5_000_000 + window // 2) == window - window // 2
    assert node._batching_left_ns(5_000_000 + window) <= 0
    node.core.leader_state = object()                        # a leader takes acks at once
    assert node._batching_left_ns(5_000_000) <= 0


def test_a_received_snapshot_is_not_installed_while_writes_wait_for_their_sync():
    """NodeSnapshots.can_install: install_snapshot resets the archive and the core's written
    and persisted ends under a sync still running on the old log; it waits for that sync."""
    from aeronpy.cluster.node_snapshots import NodeSnapshots
    holder = type("H", (), {})()
    holder.node = type("N", (), {"_unsynced_hi": 7})()
    assert not NodeSnapshots.can_install(holder)
    holder.node._unsynced_hi = 0
    assert NodeSnapshots.can_install(holder)


def test_a_batching_follower_parks_without_the_consensus_socket_until_the_window_ends():
    """Else the park returned at once on the appends it leaves in the socket: a busy loop
    for the whole window."""
    window = node_mod._FOLLOWER_SYNC_BATCH_NS
    node = _bare_node()
    node.core.leader_state = None
    calls = []
    node._wait_all = lambda t: calls.append(("all", t))
    node._wait_but_consensus = lambda t: calls.append(("but_consensus", t))
    now = [10_000_000]
    node._clock = lambda: now[0]
    node._unsynced_hi = 10
    node._start_sync_wait(now[0])
    node._park(1.0)
    assert calls[-1][0] == "but_consensus" and 0 < calls[-1][1] <= window / 1e9
    now[0] += window
    node._park(1.0)
    assert calls[-1] == ("all", 1.0)
