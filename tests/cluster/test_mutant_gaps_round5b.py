"""Mutation testing, round 5b (the async sync, second half, and the 2 s sync-stall rule of
4857ce7): what the mutants showed no fast test held. Bare-node tests, as round 5's
(tests/cluster/test_mutant_gaps_round5.py, whose helpers they use)."""
from __future__ import annotations

from aeronpy.cluster import node as node_mod
from aeronpy.core.messages import HeartbeatResponse

from .test_mutant_gaps_round5 import _ack, _bare_node, _SyncArchive, _SyncCore

_MS = 1_000_000


class _WritingArchive:
    """What _process_ready's write path calls of the archive, with the sync's end set by the
    test (``synced``)."""
    def __init__(self, synced):
        self.synced = synced

    def poll_synced(self):
        return self.synced

    def sync_progress_ns(self):
        return 0

    def append_from(self, log, lo, hi):
        pass

    def record_term_starts(self, log, lo, hi):
        pass

    def request_sync(self):
        pass


def _ready(persist_lo, persist_hi, messages):
    return type("Rd", (), dict(send_first=False, messages=messages, truncate_from=None,
                               hard_state=None, persist_lo=persist_lo,
                               persist_hi=persist_hi))()


def _stalled_follower():
    """As round 5's _stalled_node (a follower, writes to 10, durable to 3, its wait started
    at 1 ms), with the state ClusterNode.__init__ gives (_sync_stalled False): the mutant
    that leaves _start_sync_wait's reset out must fail on behaviour, not on a missing
    attribute."""
    import logging
    node = _bare_node()
    node._sync_stalled = False
    node.core = core = _SyncCore(3)
    core.written_index = 10
    node.archive = _SyncArchive()
    node.archive.synced = 3
    node._sync_signalled = False
    node._slow_cycle_ns = 50 * _MS
    node._slow_sync_warn_at_ns = 0
    node.log = logging.getLogger("test_mutant_gaps_round5b")
    node.config = type("C", (), {"file_sync": "data", "heartbeat_interval_ms": 50})()
    node._unsynced_hi = 10
    node._start_sync_wait(1 * _MS)
    return node


def test_a_stall_that_ended_does_not_hold_the_next_syncs_replies():
    """A follower's sync stalls (past _SYNC_STALL_NS it holds everything, heartbeat replies
    too), then finishes. Its next write waits for a new, ordinary sync: _start_sync_wait
    clears _sync_stalled, so a heartbeat reply of that Ready goes at once and only the
    accepted acknowledgement waits. Kept set, one stall made every later sync hold all
    replies (a leader whose followers all stalled once lost office at each slow sync)."""
    stall = node_mod._SYNC_STALL_NS
    node = _stalled_follower()
    t = 1 * _MS + stall + 1 * _MS
    node._process_ready(t)
    assert node._sync_stalled and node.core.counters["sync_stalls"] == 1
    node.archive = archive = _WritingArchive(10)      # the sync finishes
    node._file_sync = True
    node._process_ready(t + _MS)
    assert node._unsynced_hi == 0
    beat, ack = (0, HeartbeatResponse(2, 11)), (0, _ack(2, 11))
    rd = _ready(11, 12, [beat, ack])                  # a new entry, its sync runs
    node.core.written_index = 11
    node.core.log = None
    node.core.has_ready = lambda: True
    node.core.ready = lambda: rd
    finished = []
    node._finish_ready = lambda r, now_ns, durable=True: finished.append(
        (list(r.messages), durable))
    node._process_ready(t + 2 * _MS)
    assert node._unsynced_hi == 11 and not node._sync_stalled
    assert finished == [([beat], False)], "the heartbeat reply was held as in the stall"
    assert [i for i, _m in node._held] == [11] and node._held[0][1] == [ack]
