"""Swarm testing: many seeds, each a random history of faults, every invariant checked after
every event; then a liveness phase on a healed network that must converge in bounded time.

    python -m aeronpy.testing.swarm --seeds 1000            # seeds 0..999
    python -m aeronpy.testing.swarm --seed 4242             # replay one seed
    python -m aeronpy.testing.swarm --seeds 200 --bug commit_old_term_by_counting

A failing seed prints the command that replays it. The fault schedule comes from a
generator seeded by the same seed as the cluster, so a seed names the whole run.
"""
from __future__ import annotations

import argparse
import random
import sys
import time

from aeronpy.core import config as core_config
from aeronpy.service import ClusteredService
from aeronpy.testing.invariants import InvariantViolation
from aeronpy.testing.sim import SimCluster

FAULT_PHASE_MS = 2500          # simulated time with faults
LIVENESS_WITHIN_MS = 6000      # after healing, the cluster must converge within this
STEP_MS = (10, 250)            # pause between fault actions
OFFERS_PER_BURST_MAX = 6


class RecordingService(ClusteredService):
    """Keeps every message applied, with its cluster time, and echoes it back."""

    def __init__(self):
        self.applied = []

    def on_session_message(self, session, timestamp_ns, message):
        body = bytes(message)
        self.applied.append((timestamp_ns, body))
        if session is not None:
            session.offer(b"re:" + body)


class SeedResult:
    def __init__(self, seed: int, ok: bool, error: str = "", events: int = 0, faults: dict | None = None,
                 sim_ms: float = 0.0, entries: int = 0):
        self.seed = seed
        self.ok = ok
        self.error = error
        self.events = events
        self.faults = faults or {}
        self.sim_ms = sim_ms
        self.entries = entries

    def __repr__(self) -> str:
        return f"SeedResult(seed={self.seed}, ok={self.ok}, events={self.events}, error={self.error[:200]!r})"


def replay_command(seed: int, bugs=()) -> str:
    extra = "".join(f" --bug {b}" for b in sorted(bugs))
    return f"python -m aeronpy.testing.swarm --seed {seed}{extra}"


def run_seed(seed: int, fault_phase_ms: float = FAULT_PHASE_MS, liveness_within_ms: float = LIVENESS_WITHIN_MS,
             bugs=()) -> SeedResult:
    """One swarm run; never raises for a cluster failure (the result says what broke)."""
    unknown = set(bugs) - core_config.KNOWN_BUGS
    if unknown:
        raise ValueError(f"unknown bug switch(es): {sorted(unknown)}")
    saved = set(core_config._BUGS)
    core_config._BUGS.clear()
    core_config._BUGS.update(bugs)
    try:
        return _run_seed(seed, fault_phase_ms, liveness_within_ms)
    finally:
        core_config._BUGS.clear()
        core_config._BUGS.update(saved)


def _run_seed(seed: int, fault_phase_ms: float, liveness_within_ms: float) -> SeedResult:
    plan = random.Random(f"swarm-plan-{seed}")
    members = plan.choice((3, 3, 3, 5, 5))
    file_sync = plan.choice(("data", "full", "none"))
    max_append_bytes = plan.choice((64 * 1024, 64 * 1024, 600, 100, 1))   # 1: one entry per append
    pre_vote = plan.random() < 0.75
    sim = SimCluster(members=members, seed=seed, service=RecordingService, file_sync=file_sync,
                     max_append_bytes=max_append_bytes, max_inflight_appends=plan.choice((64, 4, 1)),
                     pre_vote=pre_vote, check_quorum=pre_vote or plan.random() < 0.5)
    faults = {"members": members, "file_sync": file_sync, "max_append_bytes": max_append_bytes,
              "pre_vote": pre_vote,
              "partition": 0, "cut": 0, "heal": 0, "crash": 0, "power_fail": 0, "restart": 0,
              "network": 0, "transfer": 0, "offers": 0}
    client = sim.client()
    try:
        sim.network(**_random_network(plan))
        end_ns = fault_phase_ms * 1_000_000
        while sim.now_ns < end_ns:
            sim.run_for(plan.uniform(*STEP_MS))
            _random_action(sim, plan, client, faults)
        # ---- liveness: heal everything, then the cluster must converge
        sim.heal()
        sim.network(drop=0.0, duplicate=0.0, delay_ms=(1.0, 1.0))
        for m in range(members):
            if not sim.alive(m):
                sim.restart(m)
        for _ in range(3):
            client.offer(b"final")
            faults["offers"] += 1
        if not sim.run_until(lambda: _converged(sim, client), liveness_within_ms):
            return SeedResult(seed, False, f"{sim.describe()}: no convergence within {liveness_within_ms}ms "
                              f"after healing: {_state(sim)} client pending={client.pending}",
                              sim.events, faults, sim.now_ns / 1e6)
        sim.check()
        applied = [sim.service(m).applied for m in range(members)]
        if any(a != applied[0] for a in applied):
            return SeedResult(seed, False, f"{sim.describe()}: services diverged: "
                              f"{[len(a) for a in applied]} messages applied", sim.events, faults, sim.now_ns / 1e6)
        return SeedResult(seed, True, "", sim.events, faults, sim.now_ns / 1e6, sim.core(0).commit_index)
    except InvariantViolation as exc:
        return SeedResult(seed, False, str(exc), sim.events, faults, sim.now_ns / 1e6)


def _random_network(plan) -> dict:
    lo = plan.uniform(0.2, 2.0)
    return {"drop": plan.choice((0.0, 0.0, 0.01, 0.05, 0.2)), "duplicate": plan.choice((0.0, 0.01, 0.05)),
            "delay_ms": (lo, lo + plan.choice((0.0, 2.0, 10.0, 40.0)))}


def _random_action(sim: SimCluster, plan, client, faults: dict) -> None:
    n = sim.member_count
    roll = plan.random()
    dead = [m for m in range(n) if not sim.alive(m)]
    live = [m for m in range(n) if sim.alive(m)]
    if roll < 0.30:
        for _ in range(plan.randint(1, OFFERS_PER_BURST_MAX)):
            client.offer(b"m%d" % faults["offers"])
            faults["offers"] += 1
    elif roll < 0.42:
        members = list(range(n))
        plan.shuffle(members)
        cut = plan.randint(1, n - 1)
        sim.partition(set(members[:cut]), set(members[cut:]))
        faults["partition"] += 1
    elif roll < 0.47:
        src, dst = plan.sample(range(n), 2)
        sim.cut(src, dst)
        faults["cut"] += 1
    elif roll < 0.60:
        sim.heal()
        faults["heal"] += 1
    elif roll < 0.70 and live:
        victim = sim.leader() if plan.random() < 0.5 and sim.leader() is not None else plan.choice(live)
        if sim.storages[victim].file_sync != "none" and plan.random() < 0.4:
            sim.power_fail(victim)
            faults["power_fail"] += 1
        else:
            sim.crash(victim)
            faults["crash"] += 1
    elif roll < 0.82 and dead:
        sim.restart(plan.choice(dead))
        faults["restart"] += 1
    elif roll < 0.90:
        sim.network(**_random_network(plan))
        faults["network"] += 1
    elif roll < 0.95:
        if sim.transfer_leadership():
            faults["transfer"] += 1
    # else: quiet period


def _converged(sim: SimCluster, client) -> bool:
    leader = sim.leader()
    if leader is None or client.pending:
        return False
    lead = sim.core(leader)
    last = lead.log.last_index
    if lead.commit_index != last:
        return False
    for m in range(sim.member_count):
        core = sim.core(m)
        if core is None or core.commit_index != last or core.applied_index != last or core.log.last_index != last:
            return False
    return True


def _state(sim: SimCluster) -> str:
    return "; ".join(repr(sim.core(m)) if sim.alive(m) else f"member {m} down" for m in range(sim.member_count))


def run_swarm(seeds, bugs=(), fault_phase_ms: float = FAULT_PHASE_MS, out=None) -> list:
    """Run the given seeds; returns the failing results (printing each with its replay command)."""
    failures = []
    for seed in seeds:
        result = run_seed(seed, fault_phase_ms=fault_phase_ms, bugs=bugs)
        if not result.ok:
            failures.append(result)
            if out is not None:
                print(f"FAIL seed {seed}: {result.error}\n  replay: {replay_command(seed, bugs)}", file=out)
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aeronpy.testing.swarm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run (from --start)")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--seed", type=int, default=None, help="run (replay) this one seed only")
    parser.add_argument("--bug", action="append", default=[], choices=sorted(core_config.KNOWN_BUGS),
                        help="switch on a deliberate bug (negative control)")
    parser.add_argument("--fault-ms", type=float, default=FAULT_PHASE_MS, help="simulated ms of the fault phase")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    started = time.perf_counter()
    failures = []
    events = 0
    count = 0
    for seed in seeds:
        result = run_seed(seed, fault_phase_ms=args.fault_ms, bugs=args.bug)
        count += 1
        events += result.events
        if not result.ok:
            failures.append(result)
            print(f"FAIL seed {seed}: {result.error}\n  faults: {result.faults}\n"
                  f"  replay: {replay_command(seed, args.bug)}", flush=True)
        elif args.seed is not None:
            print(f"ok seed {seed}: {result.events} events, {result.sim_ms:.0f} simulated ms, "
                  f"{result.entries} entries committed, faults {result.faults}")
    wall = time.perf_counter() - started
    print(f"{count} seeds, {len(failures)} failed, {events} events, {wall:.1f}s wall"
          f" ({events / wall if wall else 0:.0f} events/s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
