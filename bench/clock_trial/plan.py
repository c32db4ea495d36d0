"""What each clock-trial scenario does, as data (tested in tests/ops/test_clock_trial_plan.py).

Clock offsets are seconds added to a member's CLOCK_REALTIME by the shim (clockshift.c); a
member's cluster-time clock reads its wall clock once at start, so a member "ahead by 8 s" is
one started under an offset of +8 s. The failover skews are kept short (8 s, past the 5 s
session timeout so that a session judged on cluster time would close) to keep a run brief; the
restart and step offsets are an hour, since they only shift clocks and cost no waiting.
"""
from __future__ import annotations

from typing import Dict, Tuple

SCENARIOS: Dict[str, str] = {
    "ahead": "failover from member 0 (true clock) to a member 8 s ahead",
    "behind": "failover from member 0 (true clock) to a member 8 s behind",
    "restart": "member 1 restarted 1 h behind, then 1 h ahead, made leader each time; then member 0 leads",
    "step": "the running leader's wall clock stepped +1 h, then -1 h, then back",
}
DEFAULT_SCENARIOS = "ahead,behind,restart,step"

SESSION_TIMEOUT_MS = 5000
SKEW_S = 8.0                          # ahead / behind: members 1 and 2, so whichever wins is skewed
HOUR_S = 3600.0
PING_INTERVAL_S = 0.25

# (correlation id, delay ms from the scheduling entry's cluster time)
FAILOVER_TIMERS: Tuple[Tuple[int, int], ...] = ((100, 3000), (101, 6000), (102, 14000))
KILL_AFTER_TIMERS_S = 2.0             # ahead/behind: member 0 killed this long after scheduling
QUIET_BEFORE_KILL_S = 1.0             # client 'quiet' stops all traffic this long before the kill
FAILOVER_WATCH_S = 14.0               # behind: until after the +6 s timer, late by SKEW_S
RESTART_TIMERS: Tuple[Tuple[int, int], ...] = ((100, 600_000), (101, 3_000_000), (102, 4_000_000))
RESTART_PHASE_TIMER_MS = 2000         # scheduled as each restart phase begins (cids 300, 301, 302)
RESTART_PHASE_S = 5.0
STEP_TIMERS: Tuple[Tuple[int, int], ...] = ((100, 8000), (101, 16000))
STEP_SHIFTS: Tuple[Tuple[float, float], ...] = ((3.0, HOUR_S), (8.0, -HOUR_S), (14.0, 0.0))  # (at s, offset s)
STEP_WATCH_S = 18.0

# Bounds of the checks (s)
CLOCK_MATCH_S = 0.5         # cluster time - real time vs the leader's clock offset: reply latency
                            # plus the client's 5 ms poll, on 2 shared cores
FIRE_AT_ONCE_S = 1.0        # a timer already due when a leader takes over fires within this of it
TIMER_LATE_S = 0.25         # a timer's fire stamp past its deadline (cluster time)
STEP_BOUND_S = 0.25         # step: cluster time - real time stays within this of its value before
                            # the step, and timers fire within this of their deadline in real time
                            # (cluster time follows the monotonic clock, which no step moves: what is
                            # left is the leader's duty cycle, the reply's way back and the driver's
                            # poll, milliseconds, against a 3600 s step)
SESSION_SLACK_S = 0.5       # the silent client's close: session timeout after the takeover, +- this
RECOVER_WITHIN_S = 15.0     # restart: a restarted member catches up to the leader's commit index
WARN_MIN_S = 1.0            # module.CLOCK_BEHIND_WARN_NS: a leader further behind than this warns


def scenario_names(text: str) -> list:
    """``"ahead,step"`` -> ["ahead", "step"]; ValueError naming an unknown or missing one."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("no scenario given")
    for name in names:
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}: choose from {', '.join(SCENARIOS)}")
    return names
