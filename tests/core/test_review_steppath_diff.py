"""Review: ``StepPath.on_message`` against ``RaftCore.step`` on whole twin networks.

tests/core/test_step_path.py compares single messages on hand-built twins. Here two 3-member
networks run the same random schedule (deliver, drop, duplicate or reorder a queued message,
tick a member, propose at a leader), one network stepping every consensus message through
the compiled path first (falling back to ``step`` as the node does), the other through
``step`` alone. Every core's full state (progress included) must be equal after every event.
That reaches inputs the single-message tests do not: acknowledgements in PROBE vs REPLICATE,
a full in-flight window (max_inflight_appends=2), responses from a stale term, heartbeats with
a commit beyond the log, appends after a term change, duplicated and reordered appends.

Also: values out of any member's range (a commit index of -1 or past 2**62, a negative match
or conflict field in an acknowledgement) that ``step`` drops and counts must be declined by
the path, not taken.
"""
from __future__ import annotations

import time

from hypothesis import given, settings, strategies as st

from aeronpy._codec import encode
from aeronpy._steppath import StepPath
from aeronpy.core.messages import MAX_WIRE_VALUE, AppendEntries, AppendResponse

from .harness import PaperNet
from .test_step_path import (LEADER, MS, _ack_twins, _follower, _leader_state, _packed,
                             _state)


class _TwinNet(PaperNet):
    """A PaperNet whose members take consensus messages through StepPath when ``fast``."""

    def __init__(self, fast: bool, **kw):
        super().__init__(3, seed=11, max_inflight_appends=2, **kw)
        self.fast = fast
        self.paths = {i: StepPath(c) for i, c in self.cores.items()}

    def step(self, dst, src, msg):
        if not (self.fast and self.paths[dst].on_message(src, encode(msg), self.now)):
            self.cores[dst].step(src, msg, self.now)
        self.flush(dst)


def _full_state(net) -> list:
    return [_leader_state(net[i]) for i in sorted(net.cores)]


_op = st.tuples(st.sampled_from(["deliver", "deliver", "deliver", "deliver", "drop", "dup",
                                  "swap", "tick", "tick", "propose", "compact", "report"]),
                st.integers(0, 1000), st.integers(0, 2), st.integers(1, 120))


def _apply(net, op) -> None:
    kind, k, member, ms = op
    box = net.outbox
    if kind in ("deliver", "drop", "dup", "swap") and not box:
        kind = "tick"
    if kind == "deliver":
        src, dst, msg = box.pop(k % len(box))
        net.step(dst, src, msg)
    elif kind == "drop":
        box.pop(k % len(box))
    elif kind == "dup":
        box.append(box[k % len(box)])
    elif kind == "swap":
        i = k % len(box)
        box[i], box[-1] = box[-1], box[i]
    elif kind == "tick":
        net.tick(member, ms)
    elif kind == "compact":        # a snapshot at the applied index: the log's prefix goes
        core = net[member]
        index = core.applied_index
        if index > core.log.base_index:
            core.compact(index, core.log.term_at(index))
    elif kind == "report":         # the driver gave up sending the snapshots asked for
        for i, rd_list in net.readies.items():
            for rd in rd_list:
                for follower, _index, _term in rd.snapshot_requests:
                    net[i].report_snapshot(follower, False)
            rd_list.clear()
        for i in net.cores:
            net.flush(i)
    else:
        for i, core in net.cores.items():
            if core.leader_state is not None:
                core.propose(16, b"p%d" % k)
                net.flush(i)


@settings(max_examples=150, deadline=None)
@given(st.lists(_op, min_size=20, max_size=250))
def test_twin_networks_stay_equal_under_random_schedules(ops):
    fast, slow = _TwinNet(True), _TwinNet(False)
    started = time.monotonic()
    for n, op in enumerate(ops):
        _apply(fast, op)
        _apply(slow, op)
        assert fast.outbox == slow.outbox, f"event {n}: {op}"
        assert _full_state(fast) == _full_state(slow), f"event {n}: {op}"
        assert time.monotonic() - started < 60


def test_the_twin_schedules_do_reach_both_fast_cases():
    """The comparison above is only worth its name if the path is taken in it."""
    import random
    rng = random.Random(4)
    net = _TwinNet(True)
    for _ in range(3000):
        op = (rng.choice(["deliver"] * 6 + ["tick", "propose", "dup", "drop"]),
              rng.randrange(1000), rng.randrange(3), rng.randrange(1, 60))
        _apply(net, op)
    appends = sum(p.appends_handled for p in net.paths.values())
    acks = sum(p.acks_handled for p in net.paths.values())
    assert appends > 50 and acks > 50, (appends, acks)


# ------------------------------------------------------------------ out-of-range values
def test_an_append_with_a_commit_index_out_of_range_is_declined_like_step():
    """step drops an AppendEntries whose commit index no member could have (-1, past 2**62)
    and counts it; the path took it, appended, acknowledged and reset the election timer."""
    for commit in (-1, MAX_WIRE_VALUE + 1, 2**63 - 1):
        fast, slow = _follower(), _follower()
        blob, count = _packed(3, [1])
        msg = AppendEntries(1, 2, 1, commit, blob, count)
        assert StepPath(fast).on_message(LEADER, encode(msg), 5 * MS) is False, commit
        fast.step(LEADER, msg, 5 * MS)
        slow.step(LEADER, msg, 5 * MS)
        assert _state(fast) == _state(slow)
        assert fast.counters.get("dropped_out_of_range") == 1


def test_an_acknowledgement_with_a_field_out_of_range_is_declined_like_step():
    for match, conflict_index, conflict_term in ((-1, 0, 0), (2, -5, 0), (2, 0, -1),
                                                 (2, MAX_WIRE_VALUE + 5, 0),
                                                 (2, 0, MAX_WIRE_VALUE + 1)):
        fast_net, slow_net = _ack_twins()
        fast, slow = fast_net[0], slow_net[0]
        msg = AppendResponse(fast.term, True, match, conflict_index, conflict_term)
        now = fast_net.now + 4 * MS
        assert StepPath(fast).on_message(1, encode(msg), now) is False, msg
        fast.step(1, msg, now)
        slow.step(1, msg, now)
        assert _leader_state(fast) == _leader_state(slow)
        assert fast.counters.get("dropped_out_of_range") == 1
