"""Process pauses on a real cluster: a stopped leader, follower or client, then SIGCONT.

    python bench/pause_trial [--scenarios a,b,c,d,e,f] [--phase-s 10] [--recovery-bound-s 10]
                             [--seed N] [--base-port 37000] [--node-config KEY=VALUE ...]
                             [--json OUT] [--keep] [--negative-control]

The loss trial's cluster, service and clients (bench/loss_trial: three ``aeronpy node``
processes on loopback running ApplyCountingService; two paced blocking clients s0 and s1, one
closed-loop blocking client b0, one asyncio client a0, every request with a 2 s timeout). A
pause is SIGSTOP of the process group, a wait, and SIGCONT, as a GC pause, a VM steal or a
debugger would stop it: it resumes with its old state and a socket full of old datagrams. Each
scenario letter runs as one or more steps; each step pauses, then settles for ``--phase-s``:

  a  the leader paused 0.1 s, 0.5 s, 2 s, 8 s (steps a1-a4; from 0.5 s on the others elect
     while it is stopped and it resumes as a stale leader)
  b  one follower paused 2 s, then 8 s (b1, b2: it must catch up)
  c  both followers paused 1 s together (the leader loses its quorum: does check-quorum,
     leader_heartbeat_timeout_ms, step it down?)
  d  the current leader paused 50-300 ms every 0.5-1 s for ``--phase-s`` (seeded: --seed N
     replays it; the letter at position i of --scenarios uses seed N + i)
  e  load clients paused: s0 3 s (e1), then s0 and a0 15 s (e2, past session_timeout_ms: the
     cluster must close their sessions and the clients must say so, not hang)
  f  ``aeronpy tool snapshot`` against the leader, which is stopped for 3 s as soon as its
     counters show it taking the snapshot (or, if that was too quick to see, once it has)
  g, h (not run by default) g: the leader paused 8 s while a new idle client (probe.py)
     connects to its successor: its keepalives, some queued in the stopped leader's socket,
     must not get it closed; h: the leader paused 12 s, past session_timeout_ms

Per step the table gives acknowledged requests/s, timeouts and closed sessions of requests
sent during the step, elections (rise of the highest term), the longest stretch with no
acknowledgement to any client and to the worst client not paused, the time from a SIGCONT to
the next acknowledgement (the worst over a step's pauses), until every client had one and until
the members agreed on one leader, how long a resumed leader still counted itself leader in an
old term, whether the leader stepped down while others were stopped, the fewest sessions the
leader held, errors recorded, and each member's (role, term, leader) after the settle.

Verdict: exactly-once and agreement (loss_trial.checker); after the last SIGCONT of each step
every client is acknowledged again, the members agree on one leader and no stale leader
remains, within ``--recovery-bound-s`` (10 s: an election takes well under 1 s with the default
200 ms election timeout; a client whose session was closed reconnects within its 5 s connect
timeout and its next request has a 2 s timeout, which leaves 3 s to spare); every member
reached by the end of the settle the commit index the cluster had at the resume; a session
closed only where the pause explains it (a client paused past session_timeout_ms, which must
see it closed); no member died; no error recorded or logged that a pause explains not.
Exit status: 0 held; 1 a violation or the run could not be checked; 2 a prerequisite is missing
(a port of the cluster in use). Every stopped process is continued at the end of its pause and
again, whatever happens (an error, Ctrl-C, SIGTERM, SIGHUP), before everything is killed.
``--negative-control`` makes every member apply its 100th message twice (the verdict must fail).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from typing import Dict, List, Mapping, Optional, Sequence

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.dirname(BENCH_DIR), BENCH_DIR]   # the repository's aeronpy; bench's packages

from aeronpy.cluster.counters import ConsensusModuleState  # noqa: E402
from aeronpy.testing.process_cluster import ProcessCluster, child_env  # noqa: E402
from loss_trial import harness  # noqa: E402
from loss_trial.sampler import Sampler, observe_until  # noqa: E402
from partition_trial.metrics import client_tag  # noqa: E402
from pause_trial import plan  # noqa: E402
from pause_trial.metrics import format_table, recovery_violations, step_row, unexplained_errors  # noqa: E402
from pause_trial.pauser import Pauser  # noqa: E402

MEMBERS = harness.MEMBERS
WARMUP_S = 2.0
CLIENT_TAIL_S = 15.0                 # clients outlive the last settle (steps drift: leader waits, the tool)
STEP_SLACK_S = 3.0                   # per step, for the same reason
SNAPSHOT_SEEN_WITHIN_S = 8.0         # scenario f: the tool's request reaches the leader
DEFAULT_SESSION_TIMEOUT_MS = 10_000


def _current_leader(cluster: ProcessCluster, timeout_s: float) -> Optional[int]:
    return cluster.leader(timeout_s=timeout_s, interval_s=0.005)


def _start_snapshot_tool(cluster: ProcessCluster, member: int, work_dir: str) -> subprocess.Popen:
    log = open(os.path.join(work_dir, "snapshot-tool.log"), "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "aeronpy", "tool", "snapshot", "--data-dir",
                                 cluster.data_dir(member), "--json", "--timeout", "10"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env(BENCH_DIR), cwd=work_dir, start_new_session=True)
    finally:
        log.close()


def _wait_snapshot_started(sampler: Sampler, member: int, before: Optional[Mapping[str, int]]) -> str:
    """Poll ``member``'s counters until it is taking a snapshot ("in SNAPSHOT state") or has
    taken one ("after the snapshot"); "not seen" after SNAPSHOT_SEEN_WITHIN_S."""
    count_before = (before or {}).get("snapshot_count", 0)
    deadline = time.monotonic() + SNAPSHOT_SEEN_WITHIN_S
    while time.monotonic() < deadline:
        c = sampler.read(member)
        if c and c["consensus_module_state"] == ConsensusModuleState.SNAPSHOT:
            return "in SNAPSHOT state"
        if c and c["snapshot_count"] > count_before:
            return "after the snapshot"
        time.sleep(0.0005)
    return "not seen"


PROBE_MAIN = "import sys; from pause_trial.probe import probe_main; probe_main(sys.argv[1:])"
PROBE_TAG = "p"
PROBE_TAGS_USED: List[str] = []


def _start_probe(cluster: ProcessCluster, tag: str, work_dir: str, out_dir: str, duration_s: float) -> subprocess.Popen:
    with open(os.path.join(work_dir, f"client-{tag}.log"), "wb") as log:
        return subprocess.Popen([sys.executable, "-c", PROBE_MAIN, tag, cluster.ingress_endpoints, str(duration_s),
                                 os.path.join(out_dir, f"probe-{tag}.json")],
                                env=child_env(BENCH_DIR), cwd=work_dir, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_or_kill(proc: subprocess.Popen, problems: List[str], late: str) -> None:
    """Wait 30 s for ``proc``; still running then, it is killed and ``late`` is a problem."""
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        problems.append(late)


def _finish_probe(probe: subprocess.Popen, name: str, tag: str, out_dir: str, problems: List[str]) -> Optional[dict]:
    _wait_or_kill(probe, problems, f"step {name}: probe client {tag} still running 30 s after its end: killed")
    try:
        with open(os.path.join(out_dir, f"probe-{tag}.json")) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        problems.append(f"step {name}: probe client {tag}: no result ({e})")
        return None


def run_step(step: plan.Step, cluster: ProcessCluster, clients: Mapping[str, subprocess.Popen],
             sampler: Sampler, pauser: Pauser, args, work_dir: str, problems: List[str]) -> Dict[str, object]:
    leader = _current_leader(cluster, timeout_s=5)
    if leader is None and step.target != plan.CLIENTS:
        problems.append(f"step {step.name}: no leader when it started; member 0 taken as the leader")
        leader = 0
    followers = [m for m in range(MEMBERS) if m != leader]
    record: Dict[str, object] = {"name": step.name, "what": step.what, "target": step.target, "leader": leader,
                                 "paused_clients": list(step.clients), "pause_s": max(d for _, d in step.pauses),
                                 "pauses": [], "skipped": [], "samples": [], "counters_before": sampler.snapshot()}
    record["probe_tag"] = f"{PROBE_TAG}{step.name}{len(PROBE_TAGS_USED)}"   # unique: its payloads are checked
    PROBE_TAGS_USED.append(record["probe_tag"])
    samples = record["samples"]
    start, record["t0"] = time.monotonic(), time.time()
    tool = probe = None
    for offset, duration in step.pauses:
        observe_until(start + offset, sampler, samples)
        if step.target == plan.CLIENTS:
            targets = [(tag, clients[tag].pid) for tag in step.clients]
            was_leader = False
        else:
            if step.target in (plan.LEADER, plan.LEADER_SNAPSHOT):
                now_leader = _current_leader(cluster, timeout_s=1.0)
                if now_leader is None:
                    record["skipped"].append([round(time.time(), 3), "no leader"])
                    continue
                members = [now_leader]
            else:
                members = followers[:1] if step.target == plan.FOLLOWER else followers
            targets = [(m, cluster.procs[m].pid) for m in members]
            was_leader = step.target in (plan.LEADER, plan.LEADER_SNAPSHOT)
            if step.target == plan.LEADER_SNAPSHOT:
                before = sampler.read(members[0])
                tool = _start_snapshot_tool(cluster, members[0], work_dir)
                record["stopped_when"] = _wait_snapshot_started(sampler, members[0], before)
        t_stop, stopped_at = time.time(), time.monotonic()
        try:
            for what, pgid in targets:
                pauser.pause(pgid, f"{step.name}: {what}")
            if step.probe and probe is None:
                probe = _start_probe(cluster, record["probe_tag"], work_dir, os.path.join(work_dir, "out"),
                                     step.paused_s + args.phase_s)
            observe_until(stopped_at + duration, sampler, samples)
        finally:
            for _, pgid in targets:
                pauser.resume(pgid)
        record["pauses"].append([[what for what, _ in targets], t_stop, time.time(), was_leader])
    record["t_resume"] = record["pauses"][-1][2] if record["pauses"] else time.time()
    record["counters_resume"] = sampler.snapshot()
    observe_until(time.monotonic() + args.phase_s, sampler, samples)
    record["t_end"], record["counters_after"] = time.time(), sampler.snapshot()
    if tool is not None:
        _wait_or_kill(tool, problems, f"step {step.name}: aeronpy tool snapshot still running 30 s after the resume: killed")
        with open(os.path.join(work_dir, "snapshot-tool.log"), errors="replace") as f:
            record["snapshot_tool"] = {"exit_status": tool.returncode, "output": f.read()[-1500:]}
    if probe is not None:
        record["probe"] = _finish_probe(probe, step.name, record["probe_tag"], os.path.join(work_dir, "out"), problems)
    cluster.check_running()                               # a member that died: MemberExitedError
    return record


def run_trial(args, work_dir: str, problems: List[str], pauser: Pauser) -> Dict[str, object]:
    out_dir = os.path.join(work_dir, "out")
    os.makedirs(out_dir)
    cluster = harness.new_cluster(work_dir, out_dir, args.negative_control,
                                  ports=harness.member_ports(args.base_port), config=args.node_config)
    clients: List[subprocess.Popen] = []
    sampler = Sampler(cluster)
    steps: List[Dict[str, object]] = []
    try:
        if not harness.start_cluster(cluster, problems):
            return {}
        clients_s = (WARMUP_S + plan.run_seconds(args.steps, args.phase_s) + STEP_SLACK_S * len(args.steps)
                     + CLIENT_TAIL_S)
        clients = harness.start_clients(cluster, work_dir, out_dir, clients_s)
        clients_end = time.monotonic() + clients_s
        by_tag = {client.args[4]: client for client in clients}
        time.sleep(WARMUP_S)
        for step in args.steps:
            record = run_step(step, cluster, by_tag, sampler, pauser, args, work_dir, problems)
            steps.append(record)
            after = {m: (c["role"], c["leadership_term"], c["leader_id"]) if c else None
                     for m, c in record["counters_after"].items()}
            print(f"step {step.name} ({step.what}; leader {record['leader']}) done; (role, term, leader) "
                  f"per member after the settle: {after}", flush=True)
        pauser.resume_all()
        harness.end_run(cluster, clients, clients_end, problems)
        return {"steps": steps, "out_dir": out_dir, "member_errors": harness.member_errors(cluster)}
    finally:
        pauser.resume_all()                               # before anything is killed
        sampler.close()
        harness.close(cluster, clients)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=plan.DEFAULT_SCENARIOS,
                        help="comma-separated letters, run in that order: " +
                             "; ".join(f"{k}: {v}" for k, v in plan.SCENARIOS.items()))
    parser.add_argument("--phase-s", type=float, default=10.0,
                        help="settle after each step's last pause; length of d's pause train")
    parser.add_argument("--recovery-bound-s", type=float, default=10.0,
                        help="after the last resume of a step: every client acknowledged, one leader, "
                             "no stale leader within this (at most --phase-s)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the d pause trains (default: random)")
    parser.add_argument("--base-port", type=int, default=37000, help="member i uses base + 10i .. base + 10i + 2")
    parser.add_argument("--node-config", metavar="KEY=VALUE", action="append", default=[],
                        help="a cluster.toml key for every member, e.g. leader_heartbeat_timeout_ms=2000; repeatable")
    parser.add_argument("--json", metavar="OUT", help="write the table, samples and verdict as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, records)")
    parser.add_argument("--negative-control", action="store_true", help="members apply their 100th message twice")
    args = parser.parse_args(argv)
    if args.phase_s <= 0 or not 0 < args.recovery_bound_s <= args.phase_s or not 1024 <= args.base_port <= 65500:
        parser.error("--phase-s > 0, 0 < --recovery-bound-s <= --phase-s, --base-port in [1024, 65500]")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    try:
        args.steps = plan.expand_scenarios(args.scenarios, args.seed, args.phase_s)
        args.node_config = dict(harness.config_item(item) for item in args.node_config)
    except ValueError as e:
        parser.error(str(e))
    taken = harness.ports_in_use(args.base_port)
    if taken:
        print(f"pause_trial: ports {taken} are in use (another run?): choose another --base-port", file=sys.stderr)
        return 2
    if "d" in args.scenarios:
        print(f"pause-train seed: {args.seed} (--seed {args.seed} replays it; the d at position i uses seed + i)",
              flush=True)
    return run(args)


def run(args) -> int:
    """Run the trial; every stopped process is continued whatever happens (SIGTERM and SIGHUP
    raise SystemExit into the ``finally``s, Ctrl-C KeyboardInterrupt)."""
    pauser = Pauser()
    return harness.run_in_work_dir("pause_trial", args, lambda *a: run_trial(*a, pauser), report,
                                   clean_up=pauser.resume_all)


def report(args, trial: Mapping, problems: List[str], work_dir: str) -> int:
    rows: List[Dict[str, object]] = []
    violations: List[str] = []
    acked = 0
    if trial:
        records, applied = trial["loaded"]
        records = records + [r + [True] for step in trial["steps"] for r in (step.get("probe") or {}).get("records", [])]
        acked, _, violations = harness.verdict(records, applied)
        tags = sorted({client_tag(r[3]) for r in records} - {s["probe_tag"] for s in trial["steps"]})
        rows = [step_row(step, records, tags) for step in trial["steps"]]
        session_timeout_s = args.node_config.get("session_timeout_ms", DEFAULT_SESSION_TIMEOUT_MS) / 1000
        violations += recovery_violations(rows, args.recovery_bound_s, session_timeout_s)
        print(format_table(rows))
        for step, r in zip(trial["steps"], rows):
            extra = []
            if step["skipped"]:
                extra.append(f"{len(step['skipped'])} pauses skipped (no leader)")
            if r["paused_clients"]:
                extra.append("paused clients after the resume: " + "; ".join(
                    f"{tag} saw {seen['outcomes_before_ack'] or 'nothing'} then "
                    f"{'an ack after %.2f s' % seen['first_ack_s'] if seen['acked'] else 'no ack'}"
                    for tag, seen in r["paused_clients"].items()))
                extra.append(f"leader's sessions: {r['sessions_before']} before, fewest {r['fewest_sessions']}")
            if step.get("probe"):
                extra.append(f"probe client: {r['probe']}")
            if "stopped_when" in step:
                tool = step.get("snapshot_tool", {})
                extra.append(f"leader stopped {step['stopped_when']}; aeronpy tool snapshot exit status "
                             f"{tool.get('exit_status')}: {' '.join(tool.get('output', '').split())[:300]}")
            if extra:
                print(f"step {r['step']}: " + "; ".join(extra))
        targets = sorted({s["target"] for s in trial["steps"]})
        violations += [f"member error: {line}" for line in unexplained_errors(trial["member_errors"], targets)[:20]]
    return harness.finish_report(
        args, acked, "exactly-once, agreement and recovery held", problems + violations, work_dir,
        {"scenarios": args.scenarios, "steps": [s._asdict() for s in args.steps], "phase_s": args.phase_s,
         "recovery_bound_s": args.recovery_bound_s, "seed": args.seed, "node_config": args.node_config,
         "negative_control": args.negative_control, "acked": acked, "rows": rows,
         "member_errors": list(trial.get("member_errors", [])),
         "timelines": [{k: v for k, v in s.items() if k not in ("counters_before",)} for s in trial.get("steps", [])]})


if __name__ == "__main__":
    sys.exit(main())
