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
import os
import signal
import sys
import time
from typing import Dict, List, Mapping, Optional, Sequence

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.dirname(BENCH_DIR), BENCH_DIR]   # the repository's aeronpy; this package

from loss_trial import harness  # noqa: E402
from loss_trial.checker import format_table, phase_row  # noqa: E402
from loss_trial.netfilter import CHAIN, set_loss  # noqa: E402

MEMBERS = harness.MEMBERS
WARMUP_S = 2.0                                        # clients start and connect before phase 0


def run_trial(args, work_dir: str, problems: List[str]) -> Dict[str, object]:
    """Run the phases and collect everything the verdict and the table need; ``problems``
    gathers what made the run uncheckable (it fails the verdict)."""
    out_dir = os.path.join(work_dir, "out")
    os.makedirs(out_dir)
    # the chain's rules name the members' ports: fixed ones with --base-port, else free ones
    ports = None if args.base_port is None else harness.member_ports(args.base_port)
    cluster = harness.new_cluster(work_dir, out_dir, args.negative_control, ports=ports)
    clients = []
    phases: List[Dict[str, object]] = []
    try:
        if not harness.start_cluster(cluster, problems):
            return {}
        clients_s = WARMUP_S + args.phase_s * len(args.rates)
        clients = harness.start_clients(cluster, work_dir, out_dir, clients_s)
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
        harness.end_run(cluster, clients, clients_end, problems)
        return {"phases": phases, "out_dir": out_dir}
    finally:
        harness.close(cluster, clients)


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
    return harness.run_in_chain("loss_trial", args, run_trial, report, chain=CHAIN, verb="drops",
                                probe_statistic=True)


def report(args, trial: Mapping, problems: List[str], work_dir: str) -> int:
    rows: List[Dict[str, object]] = []
    violations: List[str] = []
    acked = 0
    if trial:
        records, applied = trial["loaded"]
        acked, _, violations = harness.verdict(records, applied)
        rows = [phase_row(phase, records) for phase in trial["phases"]]
        print(format_table(rows))
        for phase in trial["phases"]:
            if phase["kill"]:
                print(f"phase {phase['index']}: killed leader {phase['kill']['member']}, new leader "
                      f"{phase['kill']['successor']} after {phase['kill']['election_s']} s")
    return harness.finish_report(
        args, acked, "exactly-once and agreement held", problems + violations, work_dir,
        {"rates": args.rates, "phase_s": args.phase_s, "kills": args.kills,
         "negative_control": args.negative_control, "acked": acked, "phases": rows,
         "kill_events": [p["kill"] for p in trial.get("phases", []) if p["kill"]]})


if __name__ == "__main__":
    sys.exit(main())
