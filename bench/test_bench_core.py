"""Consensus core and simulator throughput from Python.

    python -m pytest bench/test_bench_core.py --benchmark-only

Baselines measured in the same run: ``log_append_only`` (the least a leader must do per
entry: append to the log) for the core figures, and ``heap_event_loop`` (push/pop of one
heap event and a Python call) for the simulator's events per second.
"""
from __future__ import annotations

import heapq
import random

import pytest

from aeronpy._logindex import LogIndex
from aeronpy.core import CoreConfig, RaftCore, Role
from aeronpy.core.messages import AppendResponse, RequestVote, Vote
from aeronpy.testing import SimCluster
from aeronpy.service import ClusteredService

PAYLOAD = b"x" * 32
ROUNDS_ENTRIES = 1000


def _leader(max_inflight=64) -> RaftCore:
    core = RaftCore(CoreConfig(0, (0, 1, 2), pre_vote=False, max_inflight_appends=max_inflight),
                    random.Random(1), log=LogIndex())
    core.tick(0)
    core.tick(400_000_000)
    rd = core.ready()
    core.advance(rd)
    core.step(1, Vote(1, True), 400_000_001)
    core.step(2, Vote(1, True), 400_000_001)
    assert core.role == Role.LEADER
    _drain(core)
    last = core.log.last_index
    for f in (1, 2):
        core.step(f, AppendResponse(core.term, True, last), 400_000_002)
    _drain(core)
    return core


def _drain(core) -> int:
    sent = 0
    while core.has_ready():
        rd = core.ready()
        sent += len(rd.messages)
        core.advance(rd)
    return sent


def test_log_append_only(benchmark):
    """Baseline: ROUNDS_ENTRIES appends to a LogIndex."""
    def run():
        log = LogIndex()
        append = log.append
        for _ in range(ROUNDS_ENTRIES):
            append(1, 16, PAYLOAD)
    benchmark(run)


def test_core_propose_one_at_a_time(benchmark):
    """Unbatched: each entry is proposed, persisted, sent to 2 followers, acked by both."""
    def run():
        core = _leader()
        term = core.term
        for _ in range(ROUNDS_ENTRIES):
            index = core.propose(16, PAYLOAD)
            _drain(core)
            core.step(1, AppendResponse(term, True, index), 1)
            core.step(2, AppendResponse(term, True, index), 1)
            _drain(core)
        assert core.commit_index == core.log.last_index
    benchmark(run)


def test_core_propose_batched(benchmark):
    """Natural batching: 100 proposals per duty cycle, one append per follower, one ack each."""
    def run():
        core = _leader()
        term = core.term
        for _ in range(ROUNDS_ENTRIES // 100):
            for _ in range(100):
                index = core.propose(16, PAYLOAD)
            _drain(core)
            core.step(1, AppendResponse(term, True, index), 1)
            core.step(2, AppendResponse(term, True, index), 1)
            _drain(core)
        assert core.commit_index == core.log.last_index
    benchmark(run)


def test_core_step_append_response(benchmark):
    """Leader steps ROUNDS_ENTRIES AppendResponses (each advancing match and commit)."""
    def setup():
        core = _leader(max_inflight=ROUNDS_ENTRIES + 8)
        first = core.log.last_index + 1
        for _ in range(ROUNDS_ENTRIES):
            core.propose(16, PAYLOAD)
        _drain(core)
        return (core, first), {}

    def run(core, first):
        term = core.term
        step = core.step
        for index in range(first, first + ROUNDS_ENTRIES):
            step(1, AppendResponse(term, True, index), 1)
    benchmark.pedantic(run, setup=setup, rounds=30)


def test_core_step_stale_vote(benchmark):
    """The cheapest step: a message with a stale term, dropped and counted."""
    core = _leader()

    def run():
        step = core.step
        msg = RequestVote(0, 0, 0)
        for _ in range(ROUNDS_ENTRIES):
            step(1, msg, 1)
        _drain(core)
    benchmark(run)


class _Echo(ClusteredService):
    def on_session_message(self, session, timestamp_ns, message):
        if session is not None:
            session.offer(message)


SIM_MS = 2000


def _sim_run(check: bool) -> int:
    sim = SimCluster(3, seed=1, service=_Echo, check_invariants=check)
    client = sim.client()
    for i in range(SIM_MS // 10):
        client.offer(b"m%d" % i)
        sim.run_for(10)
    return sim.events


def test_heap_event_loop(benchmark):
    """Baseline for the simulator: heap push/pop plus a Python call per event."""
    def noop(a):
        return a

    def run():
        queue = []
        for i in range(10_000):
            heapq.heappush(queue, (i, i, noop, (i,)))
        while queue:
            _, _, fn, args = heapq.heappop(queue)
            fn(*args)
    benchmark(run)


@pytest.mark.parametrize("check", [True, False], ids=["invariants", "no-invariants"])
def test_sim_events(benchmark, check):
    events = benchmark.pedantic(_sim_run, args=(check,), rounds=5)
    benchmark.extra_info["events"] = events
