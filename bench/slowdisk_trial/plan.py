"""What each step of the slow-disk trial slows, how, and the shim's control line, as data: pure
functions, no processes (tested in tests/ops/test_slowdisk_trial_plan.py).

A scenario letter expands into one or more *steps*. In a step the disks of its *target* (the
member leading when the step begins, one follower, or both followers) are slow for the slow
window (``--phase-s``), then fast again for the settle; the targets stay the same members for
the whole step even if leadership moves (a slow disk belongs to a machine, not to a role).
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence

# the shim's setting and control line live with the shim, in the package (the soak uses them too)
from aeronpy.testing.slowdisk import FAST, Slowness, parse_control_line  # noqa: F401

NONE, LEADER, FOLLOWER, FOLLOWERS = "none", "leader", "follower", "followers"


class Step(NamedTuple):
    name: str                          # "a2": scenario letter and position
    target: str                        # NONE, LEADER, FOLLOWER or FOLLOWERS
    slowness: Slowness
    what: str = ""

    @property
    def worst_call_s(self) -> float:
        """The longest one slowed call can sleep: what may still run when the disk turns fast."""
        return (self.slowness.delay_us + self.slowness.jitter_us) / 1e6


def _ms(ms: float) -> Slowness:
    return Slowness(delay_us=int(ms * 1000))


SCENARIOS: Dict[str, str] = {
    "0": "baseline: no disk slowed (the figures to compare with)",
    "a": "the leader's syncs take 20 ms, then 200 ms, then 1 s each (one step each)",
    "b": "one follower's syncs take 200 ms, then 2 s",
    "c": "both followers' syncs take 50 ms",
    "d": "the leader's syncs mostly fast, 1 in 50 (at random) takes 300-800 ms",
    # extra, not in the default run
    "e": "the leader's syncs take 50 ms, 100 ms, 150 ms (below and near the election timeout)",
    "f": "both followers' syncs take 500 ms (past the leader's heartbeat timeout, 400 ms)",
}
DEFAULT_SCENARIOS = "0,a,b,c,d"


def steps_for(letter: str) -> List[Step]:
    """The steps of one scenario letter; ValueError naming an unknown one."""
    if letter == "0":
        return [Step("0", NONE, FAST, "baseline")]
    if letter == "a":
        return [Step(f"a{i + 1}", LEADER, _ms(ms), f"leader {ms:g} ms/sync")
                for i, ms in enumerate((20, 200, 1000))]
    if letter == "b":
        return [Step(f"b{i + 1}", FOLLOWER, _ms(ms), f"follower {ms:g} ms/sync")
                for i, ms in enumerate((200, 2000))]
    if letter == "c":
        return [Step("c", FOLLOWERS, _ms(50), "both followers 50 ms/sync")]
    if letter == "d":
        return [Step("d", LEADER, Slowness(delay_us=300_000, every_n=50, jitter_us=500_000, random=True),
                     "leader 1 in 50 syncs 300-800 ms")]
    if letter == "e":
        return [Step(f"e{i + 1}", LEADER, _ms(ms), f"leader {ms:g} ms/sync")
                for i, ms in enumerate((50, 100, 150))]
    if letter == "f":
        return [Step("f", FOLLOWERS, _ms(500), "both followers 500 ms/sync")]
    raise ValueError(f"unknown scenario {letter!r}: choose from {', '.join(SCENARIOS)}")


def expand_scenarios(text: str) -> List[Step]:
    """``"a,c"`` -> the steps of a then c."""
    letters = [part.strip() for part in text.split(",") if part.strip()]
    if not letters:
        raise ValueError("no scenario given")
    steps: List[Step] = []
    for letter in letters:
        steps += steps_for(letter)
    return steps


def targets(step: Step, leader: Optional[int], members: Sequence[int]) -> List[int]:
    """The members whose disks the step slows, given the member leading when it begins (None:
    no leader was found; then member 0 stands in for it, and its followers are the others)."""
    if step.target == NONE:
        return []
    lead = members[0] if leader is None else leader
    followers = [m for m in members if m != lead]
    if step.target == LEADER:
        return [lead]
    if step.target == FOLLOWER:
        return followers[:1]
    if step.target == FOLLOWERS:
        return followers
    raise ValueError(f"unknown target {step.target!r}")


def recovery_bound_s(step: Step, election_s: float, request_timeout_s: float) -> float:
    """How long after the disks turn fast every client must be acknowledged again, one leader
    agreed and every member caught up: a slowed call already sleeping when the control file
    changes still ends its sleep (the step's longest), then at most one election (a member slow
    until then may have missed heartbeats and the others elected, or may itself be a stale
    leader to step down), then a client whose request went to a leader that lost office waits
    out its request timeout before it re-sends."""
    return round(step.worst_call_s + election_s + request_timeout_s, 3)


def run_seconds(steps: Sequence[Step], slow_s: float, settle_s: float) -> float:
    return len(steps) * (slow_s + settle_s)
