"""A slow disk on one member of a real cluster: fsync stalls on the leader, a follower, or both.

    python bench/slowdisk_trial [--scenarios 0,a,b,c,d] [--phase-s 10] [--settle-s 8]
                                [--file-sync data|none] [--seed N] [--base-port 35000]
                                [--json OUT] [--keep] [--negative-control]

The loss trial's cluster, service and clients (bench/loss_trial: three ``aeronpy node``
processes on loopback running ApplyCountingService; paced blocking clients s0 and s1 at 200/s,
closed-loop client b0, asyncio client a0 at 4 x 50/s; 2 s request timeouts), every member run
with an LD_PRELOAD shim (slowsync.c, built with gcc into the work directory) that makes fsync,
fdatasync, msync(MS_SYNC) and sync_file_range sleep before the real call, as a disk shared with
noisy neighbours would. The sleep is read from a control file per member, which the trial
rewrites while the member runs. ``--file-sync`` (default "data") is every member's file_sync.

Each step slows the disks of its target for ``--phase-s`` (the slow window), then makes them
fast and lets the cluster settle for ``--settle-s``:

  0  baseline: nothing slowed
  a  the leader's syncs 20 ms, 200 ms, 1 s each (steps a1-a3)
  b  one follower's syncs 200 ms, then 2 s (b1, b2)
  c  both followers' syncs 50 ms
  d  the leader's syncs mostly fast, 1 in 50 at random 300-800 ms
  e  (not run by default) the leader's syncs 50, 100, 150 ms (e1-e3): slow, but below or near
     the election timeout (200-400 ms)

"The leader" is the member leading when the step begins; it stays the slowed one if it loses
office. Per step, over the slow window: acknowledged requests/s, p50/p99/max latency of the
paced clients' acknowledged requests, timeouts, elections (rise of the highest term), the
longest stretch with no acknowledgement to any client and to the worst client, the share of the
window the slowed leader still led, the leader when the disk turned fast, and the sync calls the
shim slowed; over the settle: acked/s, elections, and the time from the disks turning fast
until every client was acknowledged again and the members agreed on one leader.

Verdict: exactly-once and agreement (loss_trial.checker); per step, within its recovery bound
after the disks turned fast (the step's longest slowed call, which may still be sleeping, + 1 s
for an election + the clients' 2 s request timeout: plan.recovery_bound_s) every client is
acknowledged again and the members agree on one leader; by the end of the settle every member
has the commit index the cluster had at that moment; no session closed, no error recorded or
logged, no member died. Exit status: 0 held; 1 a violation or the run could not be checked;
2 a prerequisite is missing (gcc, a free port). ``--negative-control`` makes every member apply
its 100th message twice (the verdict must fail).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Mapping, Optional, Sequence

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.dirname(BENCH_DIR), BENCH_DIR]   # the repository's aeronpy; bench's packages

from loss_trial import harness  # noqa: E402
from loss_trial.clients import REQUEST_TIMEOUT_S  # noqa: E402
from loss_trial.sampler import Sampler, observe_until  # noqa: E402
from partition_trial.metrics import client_tag  # noqa: E402
from pause_trial.metrics import unexplained_errors  # noqa: E402
from slowdisk_trial import plan  # noqa: E402
from slowdisk_trial.metrics import format_table, recovery_violations, step_row  # noqa: E402
from slowdisk_trial.shim import SlowSyncShim  # noqa: E402

MEMBERS = harness.MEMBERS
WARMUP_S = 2.0
CLIENT_TAIL_S = 10.0                 # clients outlive the last settle (a leader search may take 5 s)
STEP_SLACK_S = 6.0                   # per step: the leader search at its start
ELECTION_S = 1.0                     # one election: 200-400 ms timeout, pre-vote and vote round trips


def run_step(step: plan.Step, cluster, sampler: Sampler, shim: SlowSyncShim, args,
             problems: List[str]) -> Dict[str, object]:
    leader = cluster.leader(timeout_s=5, interval_s=0.005)
    if leader is None and step.target != plan.NONE:
        problems.append(f"step {step.name}: no leader when it started; member 0 taken as the leader")
    targets = plan.targets(step, leader, list(range(MEMBERS)))
    record: Dict[str, object] = {"name": step.name, "what": step.what, "target": step.target,
                                 "slowness": step.slowness.describe(), "targets": targets, "leader": leader,
                                 "samples": [], "counters_before": sampler.snapshot(),
                                 "shim_before": shim.all_stats()}
    samples = record["samples"]
    record["t0"] = time.time()
    start = time.monotonic()
    try:
        for member in targets:
            shim.set(member, step.slowness)
        observe_until(start + args.phase_s, sampler, samples)
    finally:
        shim.all_fast()
    record["t_fast"] = time.time()
    record["counters_fast"], record["shim_fast"] = sampler.snapshot(), shim.all_stats()
    observe_until(time.monotonic() + args.settle_s, sampler, samples)
    record["t_end"], record["counters_after"] = time.time(), sampler.snapshot()
    record["shim_after"] = shim.all_stats()
    cluster.check_running()                               # a member that died: MemberExitedError
    return record


def run_trial(args, work_dir: str, problems: List[str], shim: SlowSyncShim) -> Dict[str, object]:
    out_dir = os.path.join(work_dir, "out")
    os.makedirs(out_dir)
    cluster = harness.new_cluster(work_dir, out_dir, args.negative_control, wrap_command=shim.wrap,
                                  ports=harness.member_ports(args.base_port), config={"file_sync": args.file_sync})
    clients: List[subprocess.Popen] = []
    sampler = Sampler(cluster)
    steps: List[Dict[str, object]] = []
    try:
        if not harness.start_cluster(cluster, problems):
            return {}
        clients_s = (WARMUP_S + plan.run_seconds(args.steps, args.phase_s, args.settle_s)
                     + STEP_SLACK_S * len(args.steps) + CLIENT_TAIL_S)
        clients = harness.start_clients(cluster, work_dir, out_dir, clients_s)
        clients_end = time.monotonic() + clients_s
        time.sleep(WARMUP_S)
        for step in args.steps:
            record = run_step(step, cluster, sampler, shim, args, problems)
            steps.append(record)
            after = {m: (c["role"], c["leadership_term"], c["leader_id"]) if c else None
                     for m, c in record["counters_after"].items()}
            print(f"step {step.name} ({step.what}; slowed {record['targets']}, leader {record['leader']}) done; "
                  f"(role, term, leader) after the settle: {after}", flush=True)
        shim.all_fast()
        harness.end_run(cluster, clients, clients_end, problems)
        return {"steps": steps, "out_dir": out_dir, "member_errors": harness.member_errors(cluster),
                "shim_end": shim.all_stats()}
    finally:
        shim.all_fast()                                   # members stopped at the end stop quickly
        sampler.close()
        harness.close(cluster, clients)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=plan.DEFAULT_SCENARIOS,
                        help="comma-separated letters, run in that order: " +
                             "; ".join(f"{k}: {v}" for k, v in plan.SCENARIOS.items()))
    parser.add_argument("--phase-s", type=float, default=10.0, help="how long each step's disks are slow")
    parser.add_argument("--settle-s", type=float, default=8.0,
                        help="after the disks turn fast (at least the longest recovery bound)")
    parser.add_argument("--file-sync", choices=("data", "none"), default="data", help="every member's file_sync")
    parser.add_argument("--seed", type=int, default=None, help="seed of the shim's random stalls (default: random)")
    parser.add_argument("--base-port", type=int, default=35000, help="member i uses base + 10i .. base + 10i + 2")
    parser.add_argument("--json", metavar="OUT", help="write the table, samples and verdict as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, records)")
    parser.add_argument("--negative-control", action="store_true", help="members apply their 100th message twice")
    args = parser.parse_args(argv)
    try:
        args.steps = plan.expand_scenarios(args.scenarios)
    except ValueError as e:
        parser.error(str(e))
    args.bounds = {s.name: plan.recovery_bound_s(s, ELECTION_S, REQUEST_TIMEOUT_S) for s in args.steps}
    if args.phase_s <= 0 or args.settle_s < max(args.bounds.values()) or not 1024 <= args.base_port <= 65500:
        parser.error(f"--phase-s > 0, --settle-s >= the longest recovery bound ({max(args.bounds.values()):g} s "
                     "for these scenarios), --base-port in [1024, 65500]")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    if shutil.which("gcc") is None:
        print("slowdisk_trial: gcc not found on PATH: the slow-sync shim (slowsync.c) is compiled at run time; "
              "install gcc", file=sys.stderr)
        return 2
    taken = harness.ports_in_use(args.base_port)
    if taken:
        print(f"slowdisk_trial: ports {taken} are in use (another run?): choose another --base-port", file=sys.stderr)
        return 2
    print(f"file_sync = {args.file_sync!r}; shim seed {args.seed}; recovery bounds (s): {args.bounds}", flush=True)
    return run(args)


def run(args) -> int:
    """Build the shim and run the trial in a fresh work directory (removed unless --keep); members
    and clients are killed whatever happens (harness.run_in_work_dir)."""
    def run_with_shim(args, work_dir: str, problems: List[str]) -> Dict[str, object]:
        return run_trial(args, work_dir, problems, SlowSyncShim(work_dir, MEMBERS, args.seed))

    return harness.run_in_work_dir("slowdisk_trial", args, run_with_shim, report)


def _disk_line(shim_end: Mapping[int, Optional[Mapping[str, int]]]) -> str:
    parts = []
    for m, s in sorted(shim_end.items()):
        if s and s["calls"]:
            parts.append(f"member {m}: {s['calls']} sync calls, real mean {s['real_ns'] / s['calls'] / 1e6:.2f} ms, "
                         f"real max {s['real_max_ns'] / 1e6:.1f} ms, {s['slowed']} slowed")
        else:
            parts.append(f"member {m}: no sync call seen")
    return "; ".join(parts)


def report(args, trial: Mapping, problems: List[str], work_dir: str) -> int:
    rows: List[Dict[str, object]] = []
    violations: List[str] = []
    acked = 0
    if trial:
        records, applied = trial["loaded"]
        acked, _, violations = harness.verdict(records, applied)
        tags = sorted({client_tag(r[3]) for r in records})
        rows = [step_row(step, records, tags) for step in trial["steps"]]
        violations += recovery_violations(rows, args.bounds)
        print(format_table(rows))
        print("disks (the real calls, without the injected sleep): " + _disk_line(trial["shim_end"]))
        violations += [f"member error: {line}" for line in unexplained_errors(trial["member_errors"], [])[:20]]
    return harness.finish_report(
        args, acked, "exactly-once, agreement and recovery held", problems + violations, work_dir,
        {"scenarios": args.scenarios, "steps": [dict(s._asdict(), slowness=s.slowness._asdict()) for s in args.steps],
         "phase_s": args.phase_s, "settle_s": args.settle_s, "file_sync": args.file_sync, "seed": args.seed,
         "recovery_bounds_s": args.bounds, "negative_control": args.negative_control, "acked": acked, "rows": rows,
         "member_errors": list(trial.get("member_errors", [])), "shim_end": trial.get("shim_end"),
         "timelines": [{k: v for k, v in s.items() if k != "counters_before"} for s in trial.get("steps", [])]})


if __name__ == "__main__":
    sys.exit(main())
