"""The four scenarios on a real cluster (plan.py has their timings, checks.py their verdicts).
Each drives a fresh Trial and records; none asserts: checks.py judges the recording."""
from __future__ import annotations

from clock_trial import plan
from clock_trial.driver import MEMBERS, Trial

FIRST_LEADER_TRIES = 3


def _start_with_leader_0(trial: Trial, offsets) -> bool:
    """Start member 0 first, the others under ``offsets``, until member 0 wins the first
    election: a skewed member leading first would stamp the log with its clock, and a transfer
    back to member 0 would then be the very failover under test. A fresh cluster per try."""
    for attempt in range(FIRST_LEADER_TRIES):
        if attempt:
            trial.say(f"member {leader} led first: starting afresh")
            trial.wipe()
        trial.start(0, offsets[0])
        trial.pump(0.5)
        for member in range(1, MEMBERS):
            trial.start(member, offsets[member])
        leader = trial.leader(timeout_s=20.0)
        if leader == 0:
            trial.log("leader", member=0, phase="first")
            return True
    trial.log("leader", member=leader, phase="first", why=f"member 0 did not lead first in {FIRST_LEADER_TRIES} tries")
    return False


def failover(trial: Trial, offset_s: float) -> None:
    """Member 0 (true clock) leads; members 1 and 2 run ``offset_s`` off. Clients p0, p1 ping,
    keep sends keepalives only, quiet falls silent before the kill, cmd schedules timers."""
    if not _start_with_leader_0(trial, {0: 0.0, 1: offset_s, 2: offset_s}):
        return
    for name, active in (("p0", True), ("p1", True), ("keep", False), ("quiet", False), ("cmd", False)):
        trial.connect(name, active)
    trial.pump(1.0)
    trial.command("cmd", b"chain")
    for cid, delay_ms in plan.FAILOVER_TIMERS:
        trial.command("cmd", b"timer %d %d" % (cid, delay_ms))
    trial.pump(plan.KILL_AFTER_TIMERS_S - plan.QUIET_BEFORE_KILL_S)
    trial.silence("quiet")
    trial.pump(plan.QUIET_BEFORE_KILL_S)
    trial.kill(0)
    new = trial.leader(timeout_s=15.0, exclude=(0,))
    trial.log("leader", member=new, phase="failover")
    trial.say(f"member 0 killed; member {new} leads")
    trial.pump(plan.FAILOVER_WATCH_S)
    trial.collect("failover")


def _start_true_clocks(trial: Trial, timers) -> bool:
    """Every member on the true clock, member 0 made leader (False if it cannot be); clients p0
    and p1 ping, cmd starts the 1 s chain and schedules ``timers`` ((id, delay_ms) pairs)."""
    for member in range(MEMBERS):
        trial.start(member, 0.0)
    if not trial.ensure_leader(0, "first"):
        return False
    for name, active in (("p0", True), ("p1", True), ("cmd", False)):
        trial.connect(name, active)
    trial.pump(1.0)
    trial.command("cmd", b"chain")
    for cid, delay_ms in timers:
        trial.command("cmd", b"timer %d %d" % (cid, delay_ms))
    return True


def restart(trial: Trial) -> None:
    """Member 1 restarted 1 h behind, made leader; restarted 1 h ahead, made leader; then
    member 0 (true clock) made leader. Each phase schedules a +2 s timer once its leader leads."""
    if not _start_true_clocks(trial, plan.RESTART_TIMERS):
        return
    trial.pump(1.5)
    for phase, member, offset_s, cid in (("minus", 1, -plan.HOUR_S, 300), ("plus", 1, plan.HOUR_S, 301),
                                         ("back", 0, 0.0, 302)):
        trial.log("phase", name=phase, member=member, timer=cid)
        if member == 1:
            trial.kill(1)
            trial.pump(1.0)
            trial.start(1, offset_s)
            if not trial.wait_caught_up(1, phase):
                trial.say(f"{phase}: member 1 did not catch up")
                trial.log("phase_end", name=phase)
                return
        trial.collect("before-" + phase)                  # log lines up to now belong to no phase
        if trial.ensure_leader(member, phase):
            trial.command("cmd", b"timer %d %d" % (cid, plan.RESTART_PHASE_TIMER_MS))
            trial.say(f"{phase}: member {member} (clock {offset_s:+g} s) leads")
            trial.pump(plan.RESTART_PHASE_S)
        trial.collect(phase)
        trial.log("phase_end", name=phase)


def step(trial: Trial) -> None:
    """Member 0 leads (every clock true); its wall clock is stepped per plan.STEP_SHIFTS."""
    if not _start_true_clocks(trial, plan.STEP_TIMERS):
        return
    elapsed = 0.0
    for at_s, offset_s in plan.STEP_SHIFTS:
        trial.pump(at_s - elapsed)
        elapsed = at_s
        trial.set_offset(0, offset_s)
        trial.say(f"member 0's wall clock stepped to {offset_s:+g} s")
    trial.pump(plan.STEP_WATCH_S - elapsed)
    trial.log("end")
    trial.collect("step")


RUNNERS = {"ahead": lambda t: failover(t, plan.SKEW_S), "behind": lambda t: failover(t, -plan.SKEW_S),
           "restart": restart, "step": step}
