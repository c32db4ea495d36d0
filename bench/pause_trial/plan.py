"""What each step of the pause trial stops and for how long, as data: pure functions, no
processes (tested in tests/ops/test_pause_trial_plan.py).

A scenario letter expands into one or more *steps*. A step is a list of pauses, each
``(offset_s, duration_s)`` from the step's start, of one *target*: the member leading when the
pause begins, one follower, both followers, a load client (by tag), or the leader just after it
was asked for a snapshot. After the last pause of a step ends the trial lets the cluster settle.
"""
from __future__ import annotations

import random
from typing import Dict, List, NamedTuple, Sequence, Tuple

LEADER, FOLLOWER, FOLLOWERS, CLIENTS, LEADER_SNAPSHOT = "leader", "follower", "followers", "clients", "leader-snapshot"
TRAIN_PAUSE_S = (0.05, 0.3)            # scenario d: each pause of the leader
TRAIN_EVERY_S = (0.5, 1.0)             # scenario d: from one pause's start to the next's


class Step(NamedTuple):
    name: str                          # "a3": scenario letter and position
    target: str                        # LEADER, FOLLOWER, FOLLOWERS, CLIENTS or LEADER_SNAPSHOT
    pauses: Tuple[Tuple[float, float], ...]   # (offset_s, duration_s), by offset, never overlapping
    clients: Tuple[str, ...] = ()      # CLIENTS: the tags of the clients paused together
    what: str = ""
    probe: bool = False                # start an idle probe client (probe.py) as the pause begins

    @property
    def paused_s(self) -> float:
        """From the step's start to the end of its last pause."""
        return max(offset + duration for offset, duration in self.pauses)


SCENARIOS: Dict[str, str] = {
    "a": "the leader paused 0.1 s, 0.5 s, 2 s, 8 s (one step each)",
    "b": "one follower paused 2 s, then 8 s",
    "c": "both followers paused 1 s together",
    "d": "the current leader paused 50-300 ms every 0.5-1 s for --phase-s (seeded)",
    "e": "load clients paused: s0 3 s; then s0 and a0 15 s (past session_timeout_ms)",
    "f": "the leader paused 3 s at once after an admin snapshot request reached it",
    # extra, not in the default run
    "g": "the leader paused 8 s while a new idle client connects to its successor",
    "h": "the leader paused 12 s, past session_timeout_ms",
}
DEFAULT_SCENARIOS = "a,b,c,d,e,f"


def pause_train(seed: int, duration_s: float) -> Tuple[Tuple[float, float], ...]:
    """Scenario d's pauses from ``seed`` alone: one of 50-300 ms starting every 0.5-1 s, the
    first at 0, all starting before ``duration_s``."""
    rng = random.Random(seed)
    pauses, offset = [], 0.0
    for _ in range(100_000):           # bound: far above duration_s / TRAIN_EVERY_S[0]
        if offset >= duration_s:
            break
        pauses.append((round(offset, 3), round(rng.uniform(*TRAIN_PAUSE_S), 3)))
        offset += rng.uniform(*TRAIN_EVERY_S)
    return tuple(pauses)


def steps_for(letter: str, seed: int, phase_s: float) -> List[Step]:
    """The steps of one scenario letter; ValueError naming an unknown one."""
    if letter == "a":
        return [Step(f"a{i + 1}", LEADER, ((0.0, d),), what=f"leader {d:g} s")
                for i, d in enumerate((0.1, 0.5, 2.0, 8.0))]
    if letter == "b":
        return [Step(f"b{i + 1}", FOLLOWER, ((0.0, d),), what=f"follower {d:g} s")
                for i, d in enumerate((2.0, 8.0))]
    if letter == "c":
        return [Step("c", FOLLOWERS, ((0.0, 1.0),), what="both followers 1 s")]
    if letter == "d":
        return [Step("d", LEADER, pause_train(seed, phase_s), what=f"leader train, seed {seed}")]
    if letter == "e":
        return [Step("e1", CLIENTS, ((0.0, 3.0),), ("s0",), what="client s0 3 s"),
                Step("e2", CLIENTS, ((0.0, 15.0),), ("s0", "a0"), what="clients s0, a0 15 s")]
    if letter == "f":
        return [Step("f", LEADER_SNAPSHOT, ((0.0, 3.0),), what="leader 3 s in a snapshot")]
    if letter == "g":
        return [Step("g", LEADER, ((0.0, 8.0),), what="leader 8 s, new idle client", probe=True)]
    if letter == "h":
        return [Step("h", LEADER, ((0.0, 12.0),), what="leader 12 s")]
    raise ValueError(f"unknown scenario {letter!r}: choose from {', '.join(SCENARIOS)}")


def expand_scenarios(text: str, seed: int, phase_s: float) -> List[Step]:
    """``"a,d"`` -> the steps of a then d; the d at position i of the list uses seed + i."""
    steps: List[Step] = []
    letters = [part.strip() for part in text.split(",") if part.strip()]
    if not letters:
        raise ValueError("no scenario given")
    for position, letter in enumerate(letters):
        steps += steps_for(letter, seed + position, phase_s)
    return steps


def run_seconds(steps: Sequence[Step], settle_s: float) -> float:
    """How long the steps take: each pauses, then settles."""
    return sum(step.paused_s + settle_s for step in steps)
