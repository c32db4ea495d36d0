"""Review of ff8a4d3 ("A leader steps on while its own log sync runs"): each test failed on
ff8a4d3 and shows one bug, fixed since (3 by the change that lets followers step on too):

1. ``leader_sync_stalls`` (new in ff8a4d3) is documented in docs/operations.md's counters
   table as a counter of counters.dat, but it is kept only in ``core.counters``: it is not in
   ``REFUSAL_COUNTERS``, so no slot is declared and nothing is ever published. An operator
   (``aeronpy tool describe``, the metrics endpoint) never sees a stall hand-over.
2. A leader whose own sync is slow still stops its duty cycle for that sync whenever it
   compacts after a snapshot: ``Snapshotter._compact`` always calls ``Archive.purge_below``,
   which always drains the sync thread (``_drain``), even with no segment to delete. Before
   ff8a4d3 a leader never reached that code with a sync in flight (``snapshots.do_work`` runs
   only with no ``_pending`` Ready); now it does, so every snapshot a leader takes while its
   disk is slow halts its heartbeats and commits for up to a whole sync (a sync longer than
   the election timeout costs it office; a hung one fails the node after 60 s instead of the
   2 s hand-over).
3. close() of a leader whose writes are still syncing: _hand_over transfers at once (before
   ff8a4d3 it waited for the leader's pending Ready first); the step-down Ready then waits
   for the held sync and the node polls no message, so it never learns the successor: it
   logs "leadership not handed over: no member took over" and sends no NEW_LEADER.
4. The 2 s stall rule counts time the sync thread spends on the durable marker's idle sync
   before the write's own sync: with every sync 1.2 s (each making progress) the leader
   hands over and counts a stall.
"""
from __future__ import annotations

import os
import threading
import traceback


from aeronpy.service import Role

from .test_node_send_first import RAW_ENTRY, _pump, _settled_cluster


# ---------------------------------------------------------------------------------- 1
def test_every_counter_in_the_operations_table_is_published():
    """The reverse of tests/ops/test_counters_documented.py: a name in the table that no slot
    publishes is a counter an operator looks for and never finds."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ops"))
    try:
        from test_counters_documented import DOC, _documented_names, _published_names
    finally:
        sys.path.pop(0)
    with open(DOC) as f:
        documented = _documented_names(f.read())
    unpublished = sorted(documented - set(_published_names()))
    assert unpublished == []


# ---------------------------------------------------------------------------------- 2
def _hold_log_syncs(archive, hold_s: float):
    """Hold the archive's sync thread (its data syncs only: a snapshot's own fsync on the jobs
    thread is not held) until the returned Event is set or ``hold_s`` passed. Returns
    (gate, waits): ``waits`` lists each time the duty cycle waited for the held sync thread."""
    syncer = archive._syncer
    gate = threading.Event()
    real_batch = syncer._sync_batch

    def held_batch(target, handles, sync_dir):
        gate.wait(hold_s)
        real_batch(target, handles, sync_dir)
    syncer._sync_batch = held_batch
    waits = []
    real_drain = syncer.drain

    def drain(timeout_s: float = 60.0):
        if not gate.is_set() and threading.current_thread() is not syncer._thread:
            waits.append(" <- ".join(f.name for f in reversed(traceback.extract_stack()[-6:-1])))
        return real_drain(timeout_s)
    syncer.drain = drain
    return gate, waits


def test_a_leaders_snapshot_does_not_wait_for_its_own_sync(tmp_path):
    nodes = []
    gate = None
    try:
        nodes, leader, followers = _settled_cluster(tmp_path)
        term = leader.core.term
        gate, waits = _hold_log_syncs(leader.archive, hold_s=1.0)
        index = leader.core.propose(RAW_ENTRY, b"payload")
        # committed and applied on the followers' copies while the leader's sync is held
        assert _pump(nodes, lambda: leader.core.applied_index >= index
                     and leader.module.applied_index >= index, 5.0)
        assert leader.archive.durable_index < index          # the hold is real
        snapshotter = leader.snapshots.snapshotter
        assert snapshotter.take(leader.module.applied_index, "review test")
        # the snapshot's file is written on the jobs thread; the next cycles poll it
        _pump(nodes, lambda: snapshotter._inflight is None or bool(waits), 5.0)
        held_while_waiting = not gate.is_set()
        gate.set()
        assert _pump(nodes, lambda: snapshotter._inflight is None, 5.0)
        assert snapshotter.stats.taken == 1
        # the duty cycle (the test's thread drives it) waited for the held sync
        assert waits == [], (f"the leader's duty cycle waited for its own held log sync "
                             f"({len(waits)} times) to compact after its snapshot "
                             f"(still held then: {held_while_waiting})")
        assert leader.role == Role.LEADER and leader.core.term == term
    finally:
        if gate is not None:
            gate.set()
        for node in nodes:
            node.close()


# ---------------------------------------------------------------------------------- 3
def test_a_closing_leader_with_a_sync_in_flight_reports_its_successor(tmp_path, caplog):
    """close() of a leader whose last writes are still syncing (a slow disk): the transfer
    works (a follower takes over), but the closing node, its step-down Ready waiting for
    that sync, polls no message meanwhile, never learns the successor within its timeout,
    logs "leadership not handed over: no member took over" and sends its clients no
    NEW_LEADER. Before ff8a4d3 _hand_over waited for the leader's pending Ready (its sync)
    before it transferred, so nothing was left to wait for after the step-down."""
    import logging
    import time
    caplog.set_level(logging.INFO)
    nodes = []
    gate = None
    closer = None
    try:
        nodes, leader, followers = _settled_cluster(tmp_path)
        gate, _waits = _hold_log_syncs(leader.archive, hold_s=2.0)
        index = leader.core.propose(RAW_ENTRY, b"payload")
        assert _pump(nodes, lambda: leader.commit_index >= index, 5.0)
        assert leader.archive.durable_index < index and leader._unsynced_hi
        leader.log.setLevel(logging.INFO)     # _nodes runs them at WARNING
        closer = threading.Thread(target=leader.close, name="closer")
        closer.start()
        deadline = time.monotonic() + 15.0
        while closer.is_alive() and time.monotonic() < deadline:
            _pump(followers, lambda: not closer.is_alive(), 0.05)
        assert not closer.is_alive(), "close() did not return"
        successor = [f for f in followers if f.role == Role.LEADER]
        assert successor, "nobody took over"
        said = [r.getMessage() for r in caplog.records if "handed over" in r.getMessage()]
        # what _tell_clients_the_new_leader needs (NEW_LEADER events to its clients), and
        # what its log line says: it closed not knowing the successor, its step-down Ready
        # still waiting for the held sync
        assert leader.core.leader_id == successor[0].member_id, (
            f"closed with leader_id {leader.core.leader_id} (successor {successor[0].member_id}"
            f"), held {len(leader._held)}; said {said}")
        assert not any("not handed over" in m for m in said), said
    finally:
        if gate is not None:
            gate.set()
        if closer is not None:
            closer.join(30.0)
        for node in nodes:
            node.close()


# ---------------------------------------------------------------------------------- 4
def test_a_slow_but_working_leader_disk_is_not_taken_for_a_stall(tmp_path):
    """Every fdatasync of the leader's sync thread takes 1.2 s (< the 2 s stall bound: each
    one finishes and makes progress). An entry written just after a data sync finished waits
    first for the durable marker's idle sync (Archive._idle_sync, run on the same thread when
    no request waits), then for its own: 2.4 s with no progress on the node's clock, and the
    leader hands over (leader_sync_stalls) though no sync ever stalled."""
    import time
    nodes = []
    try:
        nodes, leader, followers = _settled_cluster(tmp_path)
        term = leader.core.term
        archive = leader.archive
        syncer_thread = archive._syncer._thread
        real = archive.fs.fdatasync

        def slow(handle):
            if threading.current_thread() is syncer_thread:
                time.sleep(1.2)
            real(handle)
        archive.fs.fdatasync = slow
        # as 12 s (10 x the last data sync, MARKER_SYNC_SLOW_FACTOR) after the last marker
        # sync, which on such a disk comes round every 12 s: the next idle moment syncs it
        archive._marker_synced_at = 0.0
        try:
            first = leader.core.propose(RAW_ENTRY, b"one")
            assert _pump(nodes, lambda: leader.core.persisted_index >= first, 10.0)
            second = leader.core.propose(RAW_ENTRY, b"two")     # the marker sync runs now
            assert _pump(nodes, lambda: leader.core.persisted_index >= second
                         or leader.core.counters.get("leader_sync_stalls"), 10.0)
        finally:
            archive.fs.fdatasync = real
        assert leader.core.counters.get("leader_sync_stalls", 0) == 0
        assert leader.role == Role.LEADER and leader.core.term == term
    finally:
        for node in nodes:
            node.close()
