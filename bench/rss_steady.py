"""Is a cluster's memory bounded under steady load? Resident set size of each member over a run.

A trading deployment runs for days: a node whose memory grows with the requests it has served
(a session table that never forgets, a log that is never compacted, a cache per request) will
eventually be killed. This runs 3 real node processes (`ProcessCluster`, echo service) with
snapshots every few MiB of log, under:

- one client offering open loop at ``--rate`` requests/s (``--size`` bytes each);
- session churn: every ``--churn-interval-s`` a new client connects, sends 10 requests and
  closes, and every other one is dropped without closing, so its session must time out
  (``session_timeout_ms`` 2,000 here);

and samples every member's VmRSS (``/proc/<pid>/status``) every 2 s. It prints, per member,
the RSS after the warm-up (the first quarter of the run), at the end, and the least-squares
slope over the second half of the run in KiB per minute, with the counters that show the
run did what it claims (requests answered, snapshots, sessions open at the end).

    python bench/rss_steady.py [--seconds 120] [--rate 5000] [--size 256] [--json]

This is a measurement, not a test: nothing here asserts. Figures in bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aeronpy import ClusterClient  # noqa: E402
from aeronpy.bench import ECHO_SERVICE, machine_info, open_loop  # noqa: E402
from aeronpy.testing.process_cluster import ProcessCluster  # noqa: E402

CONFIG = {
    "snapshot_log_bytes": 4 * 1024 * 1024,    # many snapshots, so the log is compacted often
    "segment_bytes": 1024 * 1024,
    "snapshots_to_keep": 2,
    "session_timeout_ms": 2000,
    "sched_policy": "batch",
}


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def slope_kib_per_min(samples: List[tuple]) -> float:
    """Least-squares slope of (t_s, kib) samples, KiB per minute."""
    n = len(samples)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in samples) / n
    mk = sum(k for _, k in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    return 0.0 if den == 0 else 60.0 * sum((t - mt) * (k - mk) for t, k in samples) / den


def run(seconds: float, rate: float, size: int, churn_interval_s: float) -> Dict[str, object]:
    """``rate`` 0: no open-loop load; ``churn_interval_s`` 0: no session churn."""
    pc = ProcessCluster(3, services=[ECHO_SERVICE], config=CONFIG).start()
    try:
        leader = pc.leader(timeout_s=30)
        if leader is None:
            raise RuntimeError("no leader:\n" + pc.tail_log(0))
        pc.check_running(wait_up_s=30)
        pids = {m: pc.procs[m].pid for m in range(3)}
        client = ClusterClient.connect(pc.ingress_endpoints, timeout_s=30)
        samples: Dict[int, List[tuple]] = {m: [] for m in range(3)}
        answered = [0]
        churned = {"closed": 0, "abandoned": 0}
        abandoned = []                              # clients dropped without close (kept open)
        start = time.monotonic()
        next_sample = next_churn = start

        def on_answer(_scheduled: int, _sent: int, _answered: int) -> None:
            answered[0] += 1

        while True:
            now = time.monotonic()
            if now - start >= seconds:
                break
            if now >= next_sample:
                for m, pid in pids.items():
                    samples[m].append((now - start, rss_kib(pid)))
                next_sample += 2.0
            if churn_interval_s and now >= next_churn:
                other = ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
                for i in range(10):
                    other.request(b"c%d" % i, timeout_s=10)
                if (churned["closed"] + churned["abandoned"]) % 2:
                    abandoned.append(other)         # silent from now on: its session times out
                    churned["abandoned"] += 1
                else:
                    other.close()
                    churned["closed"] += 1
                next_churn += churn_interval_s
            # a slice of open-loop load up to the next sample or churn
            due = min(next_sample, next_churn if churn_interval_s else next_sample, start + seconds)
            slice_s = max(0.05, due - time.monotonic())
            if rate:
                open_loop(client, b"x" * size, slice_s, rate, on_answer)
            else:
                time.sleep(slice_s)
        for m, pid in pids.items():
            samples[m].append((time.monotonic() - start, rss_kib(pid)))
        counters = {m: pc.read_counters(m) or {} for m in range(3)}
        client.close()
        result = {"leader": leader, "leader_at_end": pc.leader(timeout_s=5), "seconds": seconds, "rate": rate, "size": size, "answered": answered[0],
                  "churn": churned, "machine": machine_info(), "members": {}}
        for m in range(3):
            s = samples[m]
            warm = [x for x in s if x[0] >= seconds / 4]
            second_half = [x for x in s if x[0] >= seconds / 2]
            result["members"][m] = {
                "rss_start_kib": s[0][1], "rss_after_warmup_kib": warm[0][1] if warm else s[-1][1],
                "rss_end_kib": s[-1][1], "rss_max_kib": max(k for _, k in s),
                "slope_second_half_kib_per_min": round(slope_kib_per_min(second_half), 1),
                "snapshots": counters[m].get("snapshot_count"),
                "sessions_open_at_end": counters[m].get("sessions_open"),
                "commit_index": counters[m].get("commit_index"),
                # one sample a minute (the first sample of each minute), MiB
                "per_minute_mib": [round(k / 1024, 1) for t, k in s
                                   if int(t // 60) != int((t - 2.0) // 60) or t == s[0][0]],
            }
        for other in abandoned:                     # their sessions timed out long ago
            other.close()
        return result
    finally:
        pc.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--rate", type=float, default=5000.0, help="open-loop requests/s (0: none)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--churn-interval-s", type=float, default=1.0,
                   help="a client connects (and closes or goes silent) this often (0: never)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = run(args.seconds, args.rate, args.size, args.churn_interval_s)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.seconds:.0f} s at {args.rate:.0f}/s x {args.size} B: {result['answered']:,} answered, "
          f"churn {result['churn']}, leader {result['leader']} (at the end {result['leader_at_end']})")
    print(f"{'member':>6} {'start MiB':>10} {'warm MiB':>9} {'end MiB':>8} {'max MiB':>8} "
          f"{'2nd-half KiB/min':>17} {'snapshots':>9} {'sessions':>8}")
    for m, r in result["members"].items():
        print(f"{m:>6} {r['rss_start_kib'] / 1024:>10.1f} {r['rss_after_warmup_kib'] / 1024:>9.1f} "
              f"{r['rss_end_kib'] / 1024:>8.1f} {r['rss_max_kib'] / 1024:>8.1f} "
              f"{r['slope_second_half_kib_per_min']:>17.1f} {r['snapshots']!s:>9} "
              f"{r['sessions_open_at_end']!s:>8}")
    print("RSS at each minute (MiB):")
    for m, r in result["members"].items():
        print(f"{m:>6} " + " ".join(f"{x:.1f}" for x in r["per_minute_mib"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
