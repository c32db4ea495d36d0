"""Packet loss on a real cluster: what it costs, and that nothing is lost or applied twice.

    sudo python bench/loss_trial [--rates 0,1,5,20,0] [--phase-s 12] [--kills]
                                 [--base-port PORT] [--json OUT] [--keep] [--negative-control]

Three ``aeronpy node`` processes on loopback (ProcessCluster) run ApplyCountingService (service.py),
which counts how many times each payload was applied and answers with that count. Four client
processes keep sending unique payloads, each request with a 2 s timeout: two blocking clients
paced at 200 requests/s, one blocking closed-loop client and one asyncio client (4 tasks paced
at 50/s). The run is a sequence of phases of ``--phase-s`` seconds; in each, an iptables chain
inserted in INPUT drops that share of the UDP datagrams (``-m statistic --mode random``) sent
to the members' consensus and ingress ports and sent from their ingress ports (replies to
clients). With ``--kills`` every phase with loss also SIGKILLs the leader at a third of the
phase and restarts it at two thirds.

At the end the clients stop, the members settle and are stopped with SIGTERM, each writing
what it applied. The verdict checks exactly-once (every acknowledged request applied exactly
once on every member, answered "1", nothing applied twice or unsent) and agreement (every
member applied the same requests). Printed per phase: acknowledged requests/s (all clients and
the closed-loop one), p50/p99/max latency of the paced requests, timeouts, closed sessions,
the members' NAKs sent and retransmits, and elections (rise of the highest leadership term).

Exit status: 0 exactly-once and agreement held; 1 a violation (listed) or the run could not be
checked; 2 a prerequisite is missing (root, iptables with the statistic match) or the chain
of an earlier run is left (it is not removed, since that run may still be going: the message
gives the command). The chain is removed at the end, also on an error, Ctrl-C or SIGTERM.
``--negative-control`` makes every member apply its 100th message
twice, so the checker must report it and exit 1. In-process duplication and reordering are not
covered here: the simulator's swarm (tests/sim) injects those.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.dirname(BENCH_DIR), BENCH_DIR]   # the repository's aeronpy; this package

from aeronpy.testing.process_cluster import ProcessCluster, child_env  # noqa: E402
from loss_trial.checker import (ACKED, check_agreement, check_exactly_once, format_table,  # noqa: E402
                                phase_row)
from loss_trial.netfilter import (install_chain, missing_prerequisite, remove_chain,  # noqa: E402
                                  remove_chain_command, set_loss)
from loss_trial.service import DOUBLE_APPLY_ENV  # noqa: E402

SERVICE = "loss_trial.service:ApplyCountingService"
CLIENT_MAIN = "import sys; from loss_trial.clients import client_main; client_main(sys.argv[1:])"
MEMBERS = 3
WARMUP_S = 2.0                                        # clients start and connect before phase 0
# (kind, tag, requests/s per client or per asyncio task; 0: closed loop); tags name the payloads
CLIENTS = (("sync", "s0", 200.0), ("sync", "s1", 200.0), ("sync", "b0", 0.0), ("async", "a0", 50.0))


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def run_trial(args, work_dir: str, problems: List[str]) -> Dict[str, object]:
    """Run the phases and collect everything the verdict and the table need; ``problems``
    gathers what made the run uncheckable (it fails the verdict)."""
    out_dir = os.path.join(work_dir, "out")
    os.makedirs(out_dir)
    env = {"PYTHONPATH": BENCH_DIR, "AERONPY_HASH_DIR": out_dir}
    if args.negative_control:
        env[DOUBLE_APPLY_ENV] = "100"
    # the chain's rules name the members' ports: fixed ones with --base-port, else free ones
    ports = None if args.base_port is None else [
        {"consensus_port": args.base_port + 10 * i, "ingress_port": args.base_port + 10 * i + 1,
         "admin_port": args.base_port + 10 * i + 2} for i in range(MEMBERS)]
    cluster = ProcessCluster(MEMBERS, services=[SERVICE], base_dir=os.path.join(work_dir, "cluster"),
                             env=env, ports=ports)
    clients: List[subprocess.Popen] = []
    phases: List[Dict[str, object]] = []
    try:
        cluster.start()
        if cluster.leader(timeout_s=20) is None:
            problems.append("no leader within 20 s")
            return {}
        cluster.check_running(wait_up_s=10)
        clients_s = WARMUP_S + args.phase_s * len(args.rates)
        for kind, tag, rate in CLIENTS:
            with open(os.path.join(work_dir, f"client-{tag}.log"), "wb") as log:
                clients.append(subprocess.Popen(
                    [sys.executable, "-c", CLIENT_MAIN,
                     kind, tag, cluster.ingress_endpoints, str(clients_s), str(rate),
                     os.path.join(out_dir, f"client-{tag}.json")],
                    env=child_env(BENCH_DIR), cwd=work_dir, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True))
        clients_end = time.monotonic() + clients_s
        time.sleep(WARMUP_S)
        for index, loss_pct in enumerate(args.rates):
            set_loss(loss_pct, cluster.member_ports)
            t0, start = time.time(), time.monotonic()
            phase = {"index": index, "loss_pct": loss_pct, "t0": t0, "kill": None,
                     "counters_before": {m: cluster.read_counters(m) for m in range(MEMBERS)}}
            if args.kills and loss_pct > 0:
                time.sleep(args.phase_s / 3)
                leader = cluster.leader(timeout_s=5)
                if leader is not None:
                    killed_at = time.monotonic()
                    cluster.kill(leader, signal.SIGKILL)
                    successor = cluster.leader(timeout_s=15, exclude=[leader])
                    phase["kill"] = {"member": leader, "successor": successor,
                                     "election_s": round(time.monotonic() - killed_at, 3)}
                    time.sleep(max(0.0, start + 2 * args.phase_s / 3 - time.monotonic()))
                    cluster.start_member(leader)
            time.sleep(max(0.0, start + args.phase_s - time.monotonic()))
            phase["t1"] = time.time()
            phase["counters_after"] = {m: cluster.read_counters(m) for m in range(MEMBERS)}
            phases.append(phase)
            print(f"phase {index}: {loss_pct:g} % loss done", flush=True)
        set_loss(0, cluster.member_ports)
        cluster.check_running()                           # a member that died by itself: its log tail
        for client in clients:
            try:
                client.wait(timeout=max(1.0, clients_end + 30 - time.monotonic()))
            except subprocess.TimeoutExpired:
                problems.append(f"client {client.args[4]} still running 30 s after its end: killed")
        try:
            cluster.wait_settled(timeout_s=30)
        except TimeoutError as e:
            problems.append(str(e))
        for member in range(MEMBERS):                           # SIGTERM: each writes what it applied
            cluster.kill(member, signal.SIGTERM, wait_s=30)
        return {"phases": phases, "out_dir": out_dir}
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait(timeout=10)
        cluster.close(remove=False)


def load_results(out_dir: str, problems: List[str]) -> Tuple[List[list], Dict[int, Optional[dict]]]:
    records = []
    for _, tag, _ in CLIENTS:
        try:
            with open(os.path.join(out_dir, f"client-{tag}.json")) as f:
                result = json.load(f)
        except (OSError, ValueError) as e:
            problems.append(f"client {tag}: no result ({e}); see client-{tag}.log (--keep keeps it)")
            continue
        records += [r + [result["paced"]] for r in result["records"]]
    applied: Dict[int, Optional[dict]] = {}
    for member in range(MEMBERS):
        try:
            with open(os.path.join(out_dir, f"member-{member}.json")) as f:
                applied[member] = json.load(f)["applied"]
        except (OSError, ValueError):
            applied[member] = None
    return records, applied


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="0,1,5,20,0", help="loss %% of each phase, comma-separated")
    parser.add_argument("--phase-s", type=float, default=12.0, help="seconds per phase")
    parser.add_argument("--kills", action="store_true", help="SIGKILL and restart the leader in each lossy phase")
    parser.add_argument("--base-port", type=int, default=None,
                        help="member i uses base + 10i .. base + 10i + 2 (default: free ports)")
    parser.add_argument("--json", metavar="OUT", help="write the table, kills and verdict as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, records)")
    parser.add_argument("--negative-control", action="store_true", help="members apply their 100th message twice")
    args = parser.parse_args(argv)
    try:
        args.rates = [float(x) for x in args.rates.split(",")]
    except ValueError:
        parser.error(f"--rates: expected comma-separated numbers, got {args.rates!r}")
    bad_port = args.base_port is not None and not 1024 <= args.base_port <= 65500
    if not all(0 <= r <= 100 for r in args.rates) or args.phase_s <= 0 or bad_port:
        parser.error("--rates in [0, 100], --phase-s > 0, --base-port in [1024, 65500]")
    why_not = missing_prerequisite()
    if why_not is None:
        why_not = install_chain()
        if why_not:
            remove_chain()                                # ours, half installed
    if why_not:
        print(f"loss_trial: {why_not}", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP):        # Ctrl-C raises KeyboardInterrupt already
        signal.signal(signum, _raise_exit)
    work_dir = tempfile.mkdtemp(prefix="aeronpy-loss-trial-")
    problems: List[str] = []
    trial: Dict[str, object] = {}
    try:
        trial = run_trial(args, work_dir, problems)
        if trial:
            trial["loaded"] = load_results(trial["out_dir"], problems)
    except KeyboardInterrupt:
        print("loss_trial: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:                             # a member exited, iptables refused a rule
        problems.append(f"run stopped: {e}")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)         # a second Ctrl-C must not skip the clean-up
        if not remove_chain():
            print(f"loss_trial: could not remove the chain; run: {remove_chain_command()}", file=sys.stderr)
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    return report(args, trial, problems, work_dir)


def report(args, trial: Mapping, problems: List[str], work_dir: str) -> int:
    rows: List[Dict[str, object]] = []
    violations: List[str] = []
    acked = 0
    if trial:
        records, applied = trial["loaded"]
        requests = [(r[3], r[2], r[4]) for r in records]
        acked = sum(1 for _, outcome, _ in requests if outcome == ACKED)
        violations = check_exactly_once(requests, applied, range(MEMBERS)) + check_agreement(applied)
        rows = [phase_row(phase, records) for phase in trial["phases"]]
        print(format_table(rows))
        for phase in trial["phases"]:
            if phase["kill"]:
                print(f"phase {phase['index']}: killed leader {phase['kill']['member']}, new leader "
                      f"{phase['kill']['successor']} after {phase['kill']['election_s']} s")
    failures = problems + violations
    print(f"{acked} acknowledged requests; " + ("exactly-once and agreement held" if not failures else
          f"FAILED, {len(failures)} violations or problems:"))
    for line in failures[:30]:
        print("  " + line)
    if len(failures) > 30:
        print(f"  ... and {len(failures) - 30} more")
    if args.keep:
        print(f"work directory kept: {work_dir}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rates": args.rates, "phase_s": args.phase_s, "kills": args.kills,
                       "negative_control": args.negative_control, "acked": acked, "phases": rows,
                       "kill_events": [p["kill"] for p in trial.get("phases", []) if p["kill"]],
                       "ok": not failures, "failures": failures}, f, indent=1)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
