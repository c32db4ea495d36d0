"""Open-loop latency at 10,000 requests/s (or ``--rate``), A against B, in alternating runs.

The regression check behind bench/RESULTS.md section 10: a 3-node loopback cluster and one
client offering 32-byte requests on an open-loop schedule (``tail_stalls.open_loop``), every
process under SCHED_BATCH (the default; ``--policy normal`` leaves them alone), for
``--seconds`` after a 1 s warm-up. Each run is a fresh child process importing aeronpy from
the tree it measures, so two commits compare on one machine in the same minutes:

    git archive <rev> | tar -x -C /tmp/a && (cd /tmp/a && python setup.py build_ext --inplace -q)
    python bench/open_loop_ab.py --a /tmp/a --b . --pairs 5

Prints each run (p50/p90/p99 in us, CPU us per request of each process: L leader, F
followers, C client) and the medians. Noisy machine: compare medians of the same run.

``--a-host`` / ``--b-host`` put that side's cluster on another loopback address, e.g. IPv6
against IPv4 with one tree: ``--a . --b . --b-host ::1`` (a tree from before IPv6 support
takes only the default, 127.0.0.1).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_HOST = "127.0.0.1"


def child(seconds: float, policy: str, rate: int = 10000, host: str = DEFAULT_HOST) -> dict:
    import aeronpy.bench as B
    sys.path.insert(0, HERE)
    import tail_stalls as T
    cluster = B._cluster() if host == DEFAULT_HOST else B._cluster(host=host)
    try:
        client = B._connect(cluster)
        try:
            T.open_loop(client, 1.0, rate)                         # warm-up
            roles = [(cluster.read_counters(m) or {}).get("role") for m in range(cluster.members)]
            names = ["L" if r == 2 else f"F{m}" for m, r in enumerate(roles)] + ["C"]
            pids = [cluster.procs[m].pid for m in range(cluster.members)] + [os.getpid()]
            if policy == "batch":
                for pid in pids:
                    for task in os.listdir(f"/proc/{pid}/task"):
                        os.sched_setscheduler(int(task), os.SCHED_BATCH, os.sched_param(0))
            cpu0 = [B.cpu_ns(p) for p in pids]
            done = T.open_loop(client, seconds, rate)
            cpu1 = [B.cpu_ns(p) for p in pids]
        finally:
            client.close()
    finally:
        cluster.close()
    lat = sorted(latency for _sent, latency in done)
    n = len(lat)
    return {"n": n, **{f"p{q}": lat[int(q / 100 * (n - 1))] / 1000 for q in (50, 90, 99)},
            "cpu_us": {name: (b - a) / n / 1000 for name, a, b in zip(names, cpu0, cpu1)}}


def run_tree(tree: str, seconds: float, policy: str, rate: int = 10000,
             host: str = DEFAULT_HOST) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child",
                          "--seconds", str(seconds), "--policy", policy, "--rate", str(rate),
                          "--host", host],
                         capture_output=True, text=True, env=env, cwd="/tmp",
                         timeout=seconds + 120)
    if out.returncode != 0:
        raise SystemExit(f"run on {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", help="source tree A (built in place)")
    parser.add_argument("--b", help="source tree B (built in place)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--policy", choices=("batch", "normal"), default="batch")
    parser.add_argument("--rate", type=int, default=10000, help="requests/s offered")
    parser.add_argument("--a-host", default=DEFAULT_HOST, help="side A's cluster address")
    parser.add_argument("--b-host", default=DEFAULT_HOST, help="side B's cluster address")
    parser.add_argument("--host", default=DEFAULT_HOST, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.seconds <= 0 or args.rate < 1:
        parser.error("--pairs and --rate must be >= 1 and --seconds > 0")
    if args.child:
        print(json.dumps(child(args.seconds, args.policy, args.rate, args.host)))
        return 0
    if not args.a or not args.b:
        parser.error("--a and --b name the two trees to compare")
    results: dict = {"A": [], "B": []}
    for pair in range(args.pairs):
        for label, tree, host in (("A", args.a, args.a_host), ("B", args.b, args.b_host)):
            r = run_tree(tree, args.seconds, args.policy, args.rate, host)
            results[label].append(r)
            cpu = "  ".join(f"{k} {v:.1f}" for k, v in sorted(r["cpu_us"].items()))
            print(f"{time.strftime('%H:%M:%S')} {label} p50 {r['p50']:.0f} p90 {r['p90']:.0f} "
                  f"p99 {r['p99']:.0f} us  cpu/req {cpu}", flush=True)
    for label in ("A", "B"):
        rs = results[label]
        tree, host = (args.a, args.a_host) if label == "A" else (args.b, args.b_host)
        print(f"{label} ({tree} on {host}): " + ", ".join(
            f"p{q} {min(r[f'p{q}'] for r in rs):.0f}-{max(r[f'p{q}'] for r in rs):.0f} "
            f"(median {statistics.median(r[f'p{q}'] for r in rs):.0f})" for q in (50, 90, 99)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
