"""The duty cycle's deadline shortcuts change nothing observable.

A tick now returns after comparing one deadline when no timer can be due: the leader's
``LeaderReplication.tick_due_ns`` (heartbeat, retransmit probe, check-quorum, transfer
abort), the election's ``deadline_ns``, the leader duties' ``_session_check_due_ns`` (session
timeouts) and ``TimerTable.has_due`` (service timers). Each test runs one faulty SimCluster
history twice, with the shortcuts and with every tick doing its full work, and asks for the
same trace hash (every message, at the same virtual time), the same core counters and the same
timer firings. The negative controls plant a shortcut that skips a due timer and show that
the comparison catches it.
"""
from __future__ import annotations

import pytest

from aeronpy.cluster.leader import LeaderDuties
from aeronpy.cluster.timers import TimerTable
from aeronpy.core.election import _TICK_METHODS, Election, ElectionState
from aeronpy.core.replication import LeaderReplication
from aeronpy.testing import SimCluster

from .test_sessions_sim import TimerService

_original_session_pass = LeaderDuties._propose_session_timeouts
_original_next_due = LeaderReplication._next_due_ns


def _full_election_tick(self, now_ns):
    """Election.on_tick as it was before its deadline shortcut."""
    if self.deadline_ns is None and self.state != ElectionState.LEADER_READY:
        self.reset_timer(now_ns)
        return
    _TICK_METHODS[self.state](self, now_ns)


def _full_session_pass(self, now_ns):
    proposed = _original_session_pass(self, now_ns)
    self._session_check_due_ns = 0
    return proposed


def full_ticks(monkeypatch) -> None:
    """Every tick does all its checks (the behaviour the shortcuts must reproduce)."""
    monkeypatch.setattr(LeaderReplication, "_next_due_ns", lambda self: 0)
    monkeypatch.setattr(Election, "on_tick", _full_election_tick)
    monkeypatch.setattr(LeaderDuties, "_propose_session_timeouts", _full_session_pass)
    monkeypatch.setattr(TimerTable, "has_due", lambda self, now_ns: True)


def run_history(seed: int) -> dict:
    """Loss (retransmit probes), timers, a silent session (timeout), an isolated leader
    (check-quorum step-down), a leadership transfer; 1 ms ticks so most ticks find nothing due."""
    sim = SimCluster(3, seed=seed, service=TimerService, tick_ms=1, session_timeout_ms=300)
    worker, silent = sim.client(), sim.client()
    for command in (b"at 1 80", b"at 2 250", b"at 3 120", b"cancel 3"):
        worker.request(command, timeout_s=5.0)
    sim.partition({silent.client_id}, {0, 1, 2, worker.client_id})   # silent times out
    sim.network(drop=0.3)
    for n in range(12):
        worker.offer(b"at %d %d" % (10 + n, 20 * n))
        sim.run_for(40 if n % 2 else 150)   # quiet spells: a lost append is retransmitted
    sim.network()
    sim.run_for(300)
    sim.isolate(sim.leader())                                   # it steps down (check-quorum)
    sim.run_for(1500)
    sim.heal()
    sim.run_for(500)
    sim.transfer_leadership()
    sim.run_for(600)
    worker.offer(b"at 99 50")
    sim.run_for(300)
    sim.check()
    counters: dict = {}
    for m in range(3):
        for name, value in sim.core(m).counters.items():
            counters[name] = counters.get(name, 0) + value
    return {"trace": sim.trace_hash(), "counters": counters,
            "fired": [tuple(sim.service(m).fired) for m in range(3)],
            "timeouts": sum(sim.module(m).counters["session_timeouts_proposed"] for m in range(3))}


@pytest.mark.parametrize("seed", [11, 12])
def test_deadline_shortcuts_reproduce_full_ticks(seed, monkeypatch):
    fast = run_history(seed)
    c = fast["counters"]
    # the history exercises every timer the shortcuts skip
    assert c.get("retransmit_probe", 0) > 0 and c.get("check_quorum_step_down", 0) > 0, c
    assert fast["timeouts"] > 0 and len(fast["fired"][0]) >= 3, fast
    with monkeypatch.context() as patch:
        full_ticks(patch)
        full = run_history(seed)
    assert fast == full


def _late_leader_due(self):
    return _original_next_due(self) + 7_000_000       # 7 ms late: timers fire late


def _session_due_from_latest(self, now_ns):
    proposed = _original_session_pass(self, now_ns)
    if proposed >= 0:
        self._session_check_due_ns = now_ns + self.config.session_timeout_ns
    return proposed


MUTANTS = {
    "leader_due_late": lambda p: p.setattr(LeaderReplication, "_next_due_ns", _late_leader_due),
    "retransmit_start_ignored": lambda p: p.setattr(LeaderReplication, "_retransmit_timer_started",
                                                    lambda self, pr: None),
    "session_due_from_latest": lambda p: p.setattr(LeaderDuties, "_propose_session_timeouts",
                                                   _session_due_from_latest),
    "service_timers_never_due": lambda p: p.setattr(TimerTable, "has_due", lambda self, now_ns: False),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_negative_control_a_shortcut_that_skips_a_due_timer_is_caught(mutant, monkeypatch):
    with monkeypatch.context() as patch:
        full_ticks(patch)
        reference = run_history(11)
    with monkeypatch.context() as patch:
        MUTANTS[mutant](patch)
        try:
            mutated = run_history(11)
        except Exception as exc:   # a mutant may also break the history outright
            mutated = {"error": repr(exc)}
    assert mutated != reference
