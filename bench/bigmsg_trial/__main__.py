"""Big messages on a real cluster: fragmentation under loss, duplication and failover, memory,
throughput and head-of-line blocking.

    sudo python bench/bigmsg_trial [--scenarios sizes,loss,dup,kill,flood,hol] [--phase-s 10]
                                   [--recovery-bound-s 10] [--base-port 34000] [--json OUT]
                                   [--keep] [--negative-control]

Three ``aeronpy node`` processes on loopback (the loss trial's harness, default configuration:
mtu_bytes 1408, max_message_bytes 1 MiB) run BigEchoService (service.py), which checks every
request byte, counts applications per key and answers with a reply of the size the request
asks for; clients check every reply byte (plan.py gives both layouts). Scenarios (plan.SCENARIOS)
run as phases of ``--phase-s`` seconds, each with its own client processes (clients.py):

  sizes  requests and replies one byte short of, at and past k whole fragments (with and without
         the 36/32-byte envelope), of max_message_bytes both ways; a reply of max+1 (the service's
         session.offer() must raise MessageTooLargeError, which it answers) and a request of
         max+1 (the client's offer() must raise it)
  loss   a closed-loop client cycling 4 KiB..1 MiB requests and replies, and a small client
         paced at 100/s, at 1 % then 5 % loss (iptables statistic DROP, as bench/loss_trial)
  dup    the same at 2 % loss plus 2 % duplicated datagrams (iptables TEE; no reordering:
         tc netem is not available here, and TEE copies arrive right behind the original)
  kill   1 MiB requests and replies, closed loop, at 1 % loss; the leader is SIGKILLed twice
         (each time while the 1 MiB client has a message in flight nearly all the time) and
         restarted 2 s later
  flood  one client offers 1 MiB (then 64 KiB) messages as fast as offer() accepts: members'
         and the client's RssAnon, MB/s acknowledged
  hol    a small client paced at 200/s alone, beside a closed-loop 1 MiB client, beside a 1 MiB
         flood: its p50/p99

Verdict: exactly-once and agreement (loss_trial.checker) with every acknowledged reply byte-exact
(verdict "1"); no request bytes corrupt at any member; every sizes case as expected; no request
timed out (10 s, clients.REQUEST_TIMEOUT_S) outside the kill phase; after each kill a request
acknowledged within ``--recovery-bound-s`` (10 s: an election takes well under 1 s at the default
200 ms election timeout, then the client re-sends its 1 MiB window after resend_timeout 0.5 s, which
at 1 % loss takes well under a second; the rest is margin); each member's RssAnon within its
idle baseline plus plan.member_memory_bound() of the sessions and largest reply of this phase or
an earlier one (freed memory stays with the allocator for reuse); no
member died (the bound counts stream buffers, reply caches, egress queues and the in-memory Raft
log, which keeps payloads until a snapshot: up to 2 x snapshot_log_bytes on a follower). Exit 0 held, 1 not (or uncheckable), 2 a prerequisite is missing (root, iptables
with statistic, or the chain of an earlier run). The chain is removed at the end whatever
happens. ``--negative-control``: every member applies its 20th message twice and flips a byte of
its reply; the verdict must fail.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Mapping, Optional, Sequence

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.dirname(BENCH_DIR), BENCH_DIR]   # the repository's aeronpy; bench's packages

from aeronpy.testing.process_cluster import ProcessCluster, child_env  # noqa: E402
from bigmsg_trial import plan  # noqa: E402
from bigmsg_trial.clients import REQUEST_TIMEOUT_S, rss_anon  # noqa: E402
from bigmsg_trial.faults import CHAIN, set_faults  # noqa: E402
from bigmsg_trial.service import NEGATIVE_ENV  # noqa: E402
from loss_trial import harness  # noqa: E402
from loss_trial.checker import ACKED, CLOSED, TIMED_OUT, check_agreement, check_exactly_once  # noqa: E402

MEMBERS = harness.MEMBERS
SERVICE = "bigmsg_trial.service:BigEchoService"
CLIENT_MAIN = "import sys; from bigmsg_trial.clients import client_main; client_main(sys.argv[1:])"
SAMPLE_S = 0.25
RESTART_AFTER_S = 2.0
CLIENT_GRACE_S = 40.0                 # a client's end: its last 10 s request, a flood's 15 s drain
LIMITS_PHASE_S = 180.0                # the sizes phase ends when its client does, at the latest then
NEGATIVE_AT = 20


def start_client(cluster: ProcessCluster, work_dir: str, out_dir: str, spec, duration_s: float):
    kind, tag, rate, sizes = spec
    with open(os.path.join(work_dir, f"client-{tag}.log"), "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-c", CLIENT_MAIN, kind, tag, cluster.ingress_endpoints, str(duration_s),
             str(rate), sizes, os.path.join(out_dir, f"client-{tag}.json")],
            env=child_env(BENCH_DIR), cwd=work_dir, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)


def sample_members(cluster: ProcessCluster, series: Dict[int, list], t0: float) -> None:
    for m in range(MEMBERS):
        proc = cluster.procs.get(m)
        if proc is not None and proc.poll() is None:
            anon, _ = rss_anon(proc.pid)
            if anon:
                series.setdefault(m, []).append((round(time.monotonic() - t0, 2), anon))


def run_phase(phase: plan.Phase, args, cluster: ProcessCluster, work_dir: str, out_dir: str,
              problems: List[str]) -> Dict[str, object]:
    set_faults(phase.loss_pct, phase.dup_pct, cluster.member_ports)
    duration = LIMITS_PHASE_S if phase.until_clients_done else args.phase_s
    before = {m: cluster.read_counters(m) for m in range(MEMBERS)}
    clients = [start_client(cluster, work_dir, out_dir, spec, duration) for spec in phase.clients]
    start, t0 = time.monotonic(), time.time()
    series: Dict[int, list] = {}
    kills: List[dict] = []
    pending_kills = [start + k for k in plan.kill_offsets(args.phase_s, phase.kills)]
    restart_at: Optional[float] = None
    killed: Optional[int] = None
    try:
        while time.monotonic() < start + duration:
            if phase.until_clients_done and all(c.poll() is not None for c in clients):
                break
            sample_members(cluster, series, start)
            now = time.monotonic()
            if pending_kills and now >= pending_kills[0] and killed is None:
                pending_kills.pop(0)
                leader = cluster.leader(timeout_s=5)
                if leader is not None:
                    kill_wall = time.time()
                    cluster.kill(leader, signal.SIGKILL)
                    successor = cluster.leader(timeout_s=15, exclude=[leader])
                    kills.append({"member": leader, "at": kill_wall, "successor": successor,
                                  "election_s": round(time.time() - kill_wall, 3)})
                    killed, restart_at = leader, time.monotonic() + RESTART_AFTER_S
            if killed is not None and time.monotonic() >= restart_at:
                cluster.start_member(killed)
                killed = None
            time.sleep(SAMPLE_S)
        if killed is not None:
            cluster.start_member(killed)
        set_faults(0, 0, cluster.member_ports)
        wait_end = time.monotonic() + CLIENT_GRACE_S
        while any(c.poll() is None for c in clients) and time.monotonic() < wait_end:
            sample_members(cluster, series, start)
            time.sleep(SAMPLE_S)
        for c in clients:
            if c.poll() is None:
                problems.append(f"{phase.name}: client {c.args[4]} still running {CLIENT_GRACE_S:g} s after its end: killed")
        cluster.check_running(wait_up_s=10)
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait(timeout=10)
    after = {m: cluster.read_counters(m) for m in range(MEMBERS)}
    return {"phase": phase._asdict(), "t0": t0, "t1": time.time(), "s": round(time.monotonic() - start, 2),
            "rss": series, "kills": kills, "counters": {m: (before[m], after[m]) for m in range(MEMBERS)}}


def run_trial(args, work_dir: str, problems: List[str]) -> Dict[str, object]:
    out_dir = os.path.join(work_dir, "out")
    os.makedirs(out_dir)
    env = {"PYTHONPATH": BENCH_DIR, "AERONPY_HASH_DIR": out_dir}
    if args.negative_control:
        env[NEGATIVE_ENV] = str(NEGATIVE_AT)
    cluster = ProcessCluster(members=MEMBERS, services=[SERVICE], base_dir=os.path.join(work_dir, "cluster"),
                             env=env, ports=harness.member_ports(args.base_port))
    phases = []
    try:
        if not harness.start_cluster(cluster, problems):
            return {}
        time.sleep(1.0)
        baselines = {m: rss_anon(cluster.procs[m].pid)[0] for m in range(MEMBERS)}
        for name in args.scenarios:
            for phase in plan.phases_for(name):
                print(f"phase {phase.name} ...", flush=True)
                phases.append(run_phase(phase, args, cluster, work_dir, out_dir, problems))
        harness.end_run(cluster, [], time.monotonic(), problems)
        return {"phases": phases, "baselines": baselines, "out_dir": out_dir}
    finally:
        harness.close(cluster, [])


def load_clients(out_dir: str, phases: Sequence[Mapping], problems: List[str]) -> Dict[str, dict]:
    results = {}
    for phase in phases:
        for kind, tag, _, _ in phase["phase"]["clients"]:
            try:
                with open(os.path.join(out_dir, f"client-{tag}.json")) as f:
                    results[tag] = json.load(f)
            except (OSError, ValueError) as e:
                problems.append(f"client {tag}: no result ({e}); see client-{tag}.log (--keep keeps it)")
    return results


def load_members(out_dir: str) -> Dict[int, Optional[dict]]:
    members = {}
    for m in range(MEMBERS):
        try:
            with open(os.path.join(out_dir, f"member-{m}.json")) as f:
                members[m] = json.load(f)
        except (OSError, ValueError):
            members[m] = None
    return members


def phase_row(phase: Mapping, results: Mapping[str, dict], baselines: Mapping[int, int]) -> Dict[str, object]:
    spec = plan.Phase(**{**phase["phase"], "clients": tuple(tuple(c) for c in phase["phase"]["clients"])})
    small = set(spec.small_tags)
    records = {tag: results.get(tag, {}).get("records", []) for _, tag, _, _ in spec.clients}
    big_acked = [r for tag, rs in records.items() if tag not in small for r in rs if r[2] == ACKED]
    everything = [r for rs in records.values() for r in rs]
    small_lat = [r[1] / 1e6 for tag in small for r in records[tag] if r[2] == ACKED]
    floods = {tag: results[tag]["flood"] for tag in records if results.get(tag, {}).get("flood")}
    if floods:
        seconds = max(f["flood_s"] for f in floods.values())
        moved = sum(f["acked_bytes_during"] for f in floods.values())
    else:
        seconds, moved = phase["s"], sum(r[5] + r[6] for r in big_acked)
    client_rss = [v[1] for tag in records for v in results.get(tag, {}).get("rss", [])]
    growth = {m: (max(v for _, v in s) - baselines[m]) / plan.MIB for m, s in phase["rss"].items() if s}
    return {
        "phase": spec.name, "loss_pct": spec.loss_pct, "dup_pct": spec.dup_pct, "kills": len(phase["kills"]),
        "acked": sum(1 for r in everything if r[2] == ACKED),
        "big_acked": len(big_acked),
        "timeouts": sum(1 for r in everything if r[2] == TIMED_OUT),
        "closed": sum(1 for r in everything if r[2] == CLOSED),
        "bad_replies": sum(1 for r in everything if r[2] == ACKED and r[4] != "1"
                           and not (r[6] > plan.MAX_MESSAGE_BYTES and str(r[4]).startswith(plan.REFUSED_TEXT))),
        "big_mb_s": plan.throughput_mb_s(moved, seconds),
        **{f"small_{k}_ms": (round(v, 2) if v is not None else None)
           for k, v in plan.percentiles(small_lat).items()},
        "member_rss_growth_mib": {m: round(g, 1) for m, g in sorted(growth.items())},
        "client_rss_peak_mib": round(max(client_rss) / plan.MIB, 1) if client_rss else None,
        "recovery_s": [plan.recovery_s(k["at"], everything) for k in phase["kills"]],
        "election_s": [k["election_s"] for k in phase["kills"]],
        "naks_sent": sum((a or {}).get("naks_sent", 0) - (b or {}).get("naks_sent", 0)
                         for b, a in phase["counters"].values() if a and b and a.get("naks_sent", 0) >= b.get("naks_sent", 0)),
    }


def phase_bound(phase: Mapping) -> int:
    """plan.member_memory_bound for the phase's sessions (one per client, reconnects counted
    again for the kill phase) and largest reply."""
    clients = phase["phase"]["clients"]
    replies = [pair[1] for _, _, _, sizes in clients if sizes for pair in plan.size_cycle(sizes)]
    largest = max(replies + [plan.MAX_MESSAGE_BYTES if any(c[0] == "limits" for c in clients) else 0])
    sessions = len(clients) * (1 + len(phase["kills"]))
    return plan.member_memory_bound(clients=sessions, reply_bytes=largest)["total"]


def judge(trial: Mapping, problems: List[str], recovery_bound_s: float):
    phases = trial["phases"]
    results = load_clients(trial["out_dir"], phases, problems)
    members = load_members(trial["out_dir"])
    applied = {m: (rec or {}).get("applied") for m, rec in members.items()}
    records = [r for res in results.values() for r in res.get("records", [])]
    # a reply over max_message_bytes is answered by the service's refusal (checked as a sizes case)
    requests = [(r[3], r[2], "1" if r[6] > plan.MAX_MESSAGE_BYTES and str(r[4]).startswith(plan.REFUSED_TEXT)
                 else r[4]) for r in records]
    violations = check_exactly_once(requests, applied, range(MEMBERS)) + check_agreement(applied)
    for m, rec in members.items():
        if rec and rec.get("corrupt"):
            violations.append(f"member {m}: request bytes differ from those sent for {rec['corrupt'][:5]}")
    if "L" in results:
        violations += plan.limit_violations(results["L"].get("cases", []))
    rows = [phase_row(p, results, trial["baselines"]) for p in phases]
    bound = 0
    for phase, row in zip(phases, rows):
        # memory an earlier phase freed stays with the allocator (RSS is a high-water mark) and
        # is reused, so a phase is held to the largest bound of the phases so far
        bound = max(bound, phase_bound(phase))
        if not phase["kills"] and row["timeouts"]:
            violations.append(f"{row['phase']}: {row['timeouts']} requests timed out ({REQUEST_TIMEOUT_S:g} s) "
                              "with no member killed")
        for kill, rec in zip(phase["kills"], row["recovery_s"]):
            if rec is None or rec > recovery_bound_s:
                violations.append(f"{row['phase']}: after killing member {kill['member']}, no request "
                                  f"acknowledged within {recovery_bound_s:g} s (first after {rec} s)")
        violations += plan.memory_violations(phase["rss"], trial["baselines"], bound)
    acked = sum(1 for _, outcome, _ in requests if outcome == ACKED)
    return acked, rows, violations, results


def format_table(rows: Sequence[Mapping]) -> str:
    lines = ["| phase | loss % | dup % | kills | acked | timeouts | closed | bad replies | big MB/s "
             "| small p50 ms | small p99 ms | member RssAnon growth MiB | client RssAnon MiB | recovery s |",
             "|" + "---|" * 14]
    for r in rows:
        lines.append(f"| {r['phase']} | {r['loss_pct']:g} | {r['dup_pct']:g} | {r['kills']} | {r['acked']} "
                     f"| {r['timeouts']} | {r['closed']} | {r['bad_replies']} | {r['big_mb_s']} "
                     f"| {r['small_p50_ms']} | {r['small_p99_ms']} "
                     f"| {'/'.join(str(v) for v in r['member_rss_growth_mib'].values())} "
                     f"| {r['client_rss_peak_mib'] or ''} | {', '.join(str(v) for v in r['recovery_s'])} |")
    return "\n".join(lines)


def report(args, trial: Mapping, problems: List[str], work_dir: str) -> int:
    rows: List[dict] = []
    violations: List[str] = []
    acked, cases = 0, []
    if trial:
        acked, rows, violations, results = judge(trial, problems, args.recovery_bound_s)
        print(format_table(rows))
        cases = results.get("L", {}).get("cases", [])
        if cases:
            print(f"sizes: {sum(1 for c in cases if not plan.limit_violations([c]))}/{len(cases)} cases as expected; "
                  + "; ".join(f"{c[0]} -> {str(c[2])[:90]}" for c in cases if c[1] != "1"))
        for tag, res in results.items():
            if res.get("flood"):
                print(f"flood client {tag}: {res['flood']}")
        print(f"member RssAnon baselines MiB: {', '.join(f'{m}: {v / plan.MIB:.0f}' for m, v in trial['baselines'].items())}")
    return harness.finish_report(
        args, acked, "exactly-once, agreement, byte-exact replies, sizes, recovery and memory held",
        problems + violations, work_dir,
        {"scenarios": args.scenarios, "phase_s": args.phase_s, "negative_control": args.negative_control,
         "acked": acked, "phases": rows, "sizes_cases": cases,
         "baselines": trial.get("baselines", {}) if trial else {}})


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=plan.DEFAULT_SCENARIOS,
                        help=f"comma-separated, of: {', '.join(plan.SCENARIOS)}")
    parser.add_argument("--phase-s", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--recovery-bound-s", type=float, default=10.0)
    parser.add_argument("--base-port", type=int, default=34000, help="member i uses base + 10i .. + 2")
    parser.add_argument("--json", metavar="OUT", help="write the table and verdict as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, records)")
    parser.add_argument("--negative-control", action="store_true",
                        help=f"members apply their {NEGATIVE_AT}th message twice and corrupt its reply")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in plan.SCENARIOS]
    if unknown or not args.scenarios:
        parser.error(f"--scenarios: unknown {unknown}; known: {', '.join(plan.SCENARIOS)}")
    if args.phase_s <= 0 or args.recovery_bound_s <= 0 or not 1024 <= args.base_port <= 65500:
        parser.error("--phase-s > 0, --recovery-bound-s > 0, --base-port in [1024, 65500]")
    return harness.run_in_chain("bigmsg_trial", args, run_trial, report, chain=CHAIN,
                                verb="drops and duplicates datagrams", probe_statistic=True, load=False)


if __name__ == "__main__":
    sys.exit(main())
