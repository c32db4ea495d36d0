"""Network partitions on a real cluster: does it keep exactly-once and agreement, and recover?

    sudo python bench/partition_trial [--scenarios a,b,c,d,e,f,g] [--phase-s 10] [--settle-s 10]
                                      [--recovery-bound-s 10] [--seed N] [--base-port PORT]
                                      [--node-config KEY=VALUE ...]
                                      [--json OUT] [--keep] [--negative-control]

The loss trial's cluster, service and clients (bench/loss_trial: three ``aeronpy node``
processes on loopback running ApplyCountingService, two paced blocking clients, one closed-loop
blocking client, one asyncio client, every request with a 2 s timeout). Each scenario is a
phase of ``--phase-s`` seconds during which an iptables chain hooked first in INPUT drops the
datagrams of some member-to-member directions (by consensus source and destination port: a
member sends all consensus traffic from its consensus port), then a heal (the rules removed)
and ``--settle-s`` seconds of settling:

  a  the leader cut from both followers, both directions (clients still reach every member)
  b  one-way: the leader's datagrams reach the followers, nothing comes back to it
  c  one-way: the followers hear nothing from the leader, the leader hears them
  d  one follower isolated
  e  a bridge: X sees both others, the other two cannot see each other; e1 X a follower,
     e2 X the leader
  f  flapping: 0-2 random pairs cut one way or both, changed every 200-500 ms (seeded: the
     seed N is printed and --seed N replays it; the phase at position i uses seed N + i, so
     "f,f" runs two different schedules)
  g  the leader's ingress port unreachable from clients (members fine): what Raft cannot fix
  h, i (not run by default) one-way between the leader and one follower: h the follower is
     not heard by the leader, i the follower does not hear the leader

"The leader" is the member leading when the phase starts. Per phase the table gives the
acknowledged requests/s, timeouts and closed sessions of requests sent during the cut,
elections (rise of the highest leadership term) during the cut and after the heal, the
longest stretch with no acknowledgement to any client and to the worst client, then after
the heal: the first acknowledgement, the time until every client had one, and until the
members agreed on one leader (every member's counters name the same leader in the same term,
and that member's say it leads: what ``aeronpy tool list-members`` shows), the time two
members both counted themselves leader, the spread of commit indexes at the end of the settle
and errors the members recorded.

Verdict: exactly-once and agreement (loss_trial.checker), and recovery: after each heal every
client is acknowledged again, and the members agree on one leader, within
``--recovery-bound-s`` (10 s: an election takes well under 1 s with the default 200 ms election
timeout; a client whose session was lost reconnects within its 5 s connect timeout and its
next request then has a 2 s timeout, which leaves 3 s to spare); a member error is a violation
too. Exit status: 0 held; 1 a violation or the run could not be checked; 2 a prerequisite is
missing (root, iptables) or the chain of an earlier run is left (the message gives the command
that removes it). The chain is removed at the end, also on an error, Ctrl-C or SIGTERM.
``--negative-control`` makes every member apply its 100th message twice (the verdict must fail).
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from typing import Dict, List, Mapping, Optional, Sequence

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.dirname(BENCH_DIR), BENCH_DIR]   # the repository's aeronpy; bench's packages

from aeronpy.testing.process_cluster import ProcessCluster  # noqa: E402
from loss_trial import harness  # noqa: E402
from partition_trial import cutter  # noqa: E402
from loss_trial.clients import MAX_REQUESTS_PER_CLIENT  # noqa: E402
from partition_trial.metrics import (client_tag, finished_clients, format_table, phase_row,  # noqa: E402
                                     recovery_violations)
from partition_trial.plan import (DEFAULT_SCENARIOS, HEALED, SCENARIOS, describe,  # noqa: E402
                                  expand_scenarios, flapping_schedule, partition_for)

MEMBERS = harness.MEMBERS
WARMUP_S = 2.0
CLIENT_TAIL_S = 10.0                 # clients outlive the last settle (phases drift by iptables calls)
SAMPLE_INTERVAL_S = 0.1
KEPT_COUNTERS = ("role", "leadership_term", "leader_id", "commit_index", "append_index", "errors",
                 "elections_held", "sessions_open")


def _snapshot(cluster: ProcessCluster) -> Dict[int, Optional[Dict[str, int]]]:
    out = {}
    for member in range(MEMBERS):
        counters = cluster.read_counters(member)
        out[member] = None if counters is None else {k: counters[k] for k in KEPT_COUNTERS if k in counters}
    return out


def _observe(cluster: ProcessCluster, duration_s: float, schedule, samples: list, steps: list) -> None:
    """Run for ``duration_s``: apply each (offset_s, partition) of ``schedule`` when due and
    sample every member's counters every SAMPLE_INTERVAL_S into ``samples``."""
    start = time.monotonic()
    pending = list(schedule)
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= duration_s:
            return
        while pending and pending[0][0] <= elapsed:
            _, partition = pending.pop(0)
            cutter.apply(partition, cluster.member_ports)
            steps.append([round(time.time(), 3), describe(partition)])
        samples.append((time.time(), _snapshot(cluster)))
        due = min(pending[0][0], duration_s) if pending else duration_s
        time.sleep(max(0.0, min(SAMPLE_INTERVAL_S, start + due - time.monotonic())))


def run_trial(args, work_dir: str, problems: List[str]) -> Dict[str, object]:
    out_dir = os.path.join(work_dir, "out")
    os.makedirs(out_dir)
    cluster = harness.new_cluster(work_dir, out_dir, args.negative_control,
                                  ports=harness.member_ports(args.base_port), config=args.node_config)
    clients: List[subprocess.Popen] = []
    phases: List[Dict[str, object]] = []
    try:
        if not harness.start_cluster(cluster, problems):
            return {}
        clients_s = WARMUP_S + len(args.phases) * (args.phase_s + args.settle_s) + CLIENT_TAIL_S
        clients = harness.start_clients(cluster, work_dir, out_dir, clients_s)
        clients_end = time.monotonic() + clients_s
        time.sleep(WARMUP_S)
        for index, name in enumerate(args.phases):
            leader = cluster.leader(timeout_s=5)
            if leader is None:
                problems.append(f"phase {index} ({name}): no leader when it started; member 0 taken as the leader")
                leader = 0
            schedule = (flapping_schedule(args.seed + index, args.phase_s) if name == "f"
                        else [(0.0, partition_for(name, leader))])
            phase = {"index": index, "name": name, "leader": leader, "samples": [], "steps": [],
                     "partition": describe(schedule[0][1]) if name != "f" else f"flapping, seed {args.seed + index}",
                     "counters_before": _snapshot(cluster), "t0": time.time()}
            _observe(cluster, args.phase_s, schedule, phase["samples"], phase["steps"])
            cutter.apply(HEALED, cluster.member_ports)
            phase["t1"], phase["counters_heal"] = time.time(), _snapshot(cluster)
            _observe(cluster, args.settle_s, [], phase["samples"], phase["steps"])
            phase["t2"], phase["counters_after"] = time.time(), _snapshot(cluster)
            phases.append(phase)
            after = {m: (c["role"], c["leadership_term"], c["leader_id"]) if c else None
                     for m, c in phase["counters_after"].items()}
            print(f"phase {index} ({name}, leader {leader}, {phase['partition']}) done; "
                  f"(role, term, leader) per member after the settle: {after}", flush=True)
        cutter.apply(HEALED, cluster.member_ports)
        harness.end_run(cluster, clients, clients_end, problems)
        return {"phases": phases, "out_dir": out_dir, "member_errors": harness.member_errors(cluster)}
    finally:
        harness.close(cluster, clients)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS,
                        help="comma-separated letters, run in that order: " +
                             "; ".join(f"{k}: {v}" for k, v in SCENARIOS.items()))
    parser.add_argument("--phase-s", type=float, default=10.0, help="seconds each partition lasts")
    parser.add_argument("--settle-s", type=float, default=10.0, help="seconds after each heal")
    parser.add_argument("--recovery-bound-s", type=float, default=10.0,
                        help="after a heal, every client acknowledged and one leader within this")
    parser.add_argument("--seed", type=int, default=None, help="seed of the flapping phases (default: random)")
    parser.add_argument("--base-port", type=int, default=39000,
                        help="member i uses base + 10i .. base + 10i + 2")
    parser.add_argument("--node-config", metavar="KEY=VALUE", action="append", default=[],
                        help="a cluster.toml key for every member, e.g. snapshot_log_bytes=8388608 "
                             "(snapshots during the cuts); repeatable")
    parser.add_argument("--json", metavar="OUT", help="write the table, samples and verdict as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, records)")
    parser.add_argument("--negative-control", action="store_true", help="members apply their 100th message twice")
    args = parser.parse_args(argv)
    try:
        args.phases = expand_scenarios(args.scenarios)
    except ValueError as e:
        parser.error(f"--scenarios: {e}")
    try:
        args.node_config = dict(harness.config_item(item) for item in args.node_config)
    except ValueError as e:
        parser.error(f"--node-config: {e}")
    if args.phase_s <= 0 or not 0 < args.recovery_bound_s <= args.settle_s or not 1024 <= args.base_port <= 65500:
        parser.error("--phase-s > 0, 0 < --recovery-bound-s <= --settle-s, --base-port in [1024, 65500]")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    if "f" in args.phases:
        print(f"flapping seed: {args.seed} (--seed {args.seed} replays the schedules; the flapping phase "
              "at position i uses seed + i)", flush=True)
    return harness.run_in_chain("partition_trial", args, run_trial, report, chain=cutter.CHAIN, verb="cuts",
                                probe_statistic=False)


def report(args, trial: Mapping, problems: List[str], work_dir: str) -> int:
    rows: List[Dict[str, object]] = []
    violations: List[str] = []
    acked = 0
    member_errors = list(trial.get("member_errors", []))
    if trial:
        records, applied = trial["loaded"]
        acked, _, violations = harness.verdict(records, applied)
        tags = sorted({client_tag(r[3]) for r in records})
        finished = finished_clients(records, MAX_REQUESTS_PER_CLIENT)
        for tag, last in sorted(finished.items()):
            print(f"client {tag} sent its quota of {MAX_REQUESTS_PER_CLIENT:,} requests and stopped "
                  f"{last - trial['phases'][0]['t0']:.1f} s after the first cut: later phases owe it "
                  "nothing")
        rows = [phase_row(phase, records, tags, finished) for phase in trial["phases"]]
        violations += recovery_violations(rows, args.recovery_bound_s)
        print(format_table(rows))
        for r in rows:
            print(f"phase {r['phase']} ({r['scenario']}): leader {r['leader']}, cut {r['partition']}; "
                  f"after the settle the agreed leader is {r['leader_after']}")
        violations += [f"member error: {line}" for line in member_errors[:20]]
    return harness.finish_report(
        args, acked, "exactly-once, agreement and recovery held", problems + violations, work_dir,
        {"scenarios": args.phases, "phase_s": args.phase_s, "settle_s": args.settle_s,
         "recovery_bound_s": args.recovery_bound_s, "seed": args.seed,
         "negative_control": args.negative_control, "acked": acked, "phases": rows,
         "timelines": [{"phase": p["index"], "steps": p["steps"], "samples": p["samples"]}
                       for p in trial.get("phases", [])]})


if __name__ == "__main__":
    sys.exit(main())
