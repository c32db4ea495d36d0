"""Where the open-loop p99 comes from: request stalls set against moments when a CPU was not
available to a waking process.

    python bench/tail_stalls.py [--seconds S] [--rate R] [--runs N] [--idle-check S]
                                [--sched-policy batch|normal]

It runs what ``aeronpy bench``'s latency part runs (3 node processes on loopback, one client
offering 32-byte messages open-loop at R/s) and keeps every request's send time and latency,
not just a histogram. Alongside, one *canary* process per CPU, pinned to it, sleeps 0.5 ms
in a loop and notes every wake-up that came more than 1 ms late: at such a moment a process
woken on that CPU (a node by its datagram, the client by its reply) could not run either.

Printed per run: the latency percentiles; the requests over 500 us and how they group into
*stall events* (slow requests less than 2 ms apart); how many events over 1.5 ms coincide
with a late canary wake-up; and the CPU time per request of each process (the scheduler's
exact figure, ``/proc/<pid>/task/*/schedstat``). ``--idle-check S`` first runs the canaries
alone for S seconds, to show what the machine does to a sleeper when aeronpy is not running.

The canaries cost little (two wake-ups per ms in all) but are load all the same; the figures
are a diagnosis, not the benchmark (``aeronpy bench`` is). Which task held a CPU during a
late wake-up can be seen with ``perf record -e sched:sched_switch -a`` (bench/results/perf.md,
"The open-loop tail"). Every loop here is bounded by count and by time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aeronpy import bench as B  # noqa: E402
from aeronpy.testing.histogram import Histogram  # noqa: E402

CANARY_SLEEP_S = 0.0005
LATE_NS = 1_000_000          # a canary wake-up this much later than asked is noted
SLOW_US = 500                # the p99 target
EVENT_GAP_NS = 2_000_000     # slow requests closer than this belong to one stall event
BIG_EVENT_US = 1500

CANARY = r"""
import os, sys, time
cpu, seconds, out, sleep_s, late_ns = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
os.sched_setaffinity(0, {cpu})
asked = int(sleep_s * 1e9)
late = []
end = time.monotonic_ns() + int(seconds * 1e9)
for _ in range(int(seconds / sleep_s) + 1):
    t0 = time.monotonic_ns()
    if t0 >= end:
        break
    time.sleep(sleep_s)
    over = time.monotonic_ns() - t0 - asked
    if over > late_ns:
        late.append((t0, over))
with open(out, "w") as f:
    f.writelines(f"{a} {b}\n" for a, b in late)
"""


def start_canaries(seconds: float, workdir: str) -> List[Tuple[subprocess.Popen, str]]:
    script = os.path.join(workdir, "canary.py")
    with open(script, "w") as f:
        f.write(CANARY)
    out = []
    for cpu in sorted(os.sched_getaffinity(0)):
        path = os.path.join(workdir, f"canary{cpu}.txt")
        proc = subprocess.Popen([sys.executable, script, str(cpu), str(seconds), path,
                                 str(CANARY_SLEEP_S), str(LATE_NS)])
        out.append((proc, path))
    return out


def collect_canaries(canaries) -> Dict[int, List[Tuple[int, int]]]:
    late = {}
    for cpu, (proc, path) in enumerate(canaries):
        proc.wait(timeout=60)
        with open(path) as f:
            late[cpu] = [tuple(map(int, line.split())) for line in f if line.strip()]
    return late


def open_loop(client, seconds: float, rate: float) -> List[Tuple[int, int]]:
    """(send ns, latency ns) of every answered request, offered as ``aeronpy bench`` does."""
    # two arrays of ints while it runs: a tuple per request would feed this process's garbage
    # collector, whose pauses land in the latencies measured here
    sends, latencies = array("q"), array("q")

    def on_answer(_scheduled: int, sent: int, answered: int) -> None:
        sends.append(sent)
        latencies.append(answered - sent)

    B.open_loop(client, b"x" * 32, seconds, rate, on_answer)
    return sorted(zip(sends, latencies))


def stall_events(done: List[Tuple[int, int]]) -> List[List[int]]:
    """Slow requests grouped into events: [first send ns, last send ns, peak latency us, count]."""
    events: List[List[int]] = []
    for t, lat in done:
        us = lat // 1000
        if us <= SLOW_US:
            continue
        if events and t - events[-1][1] <= EVENT_GAP_NS:
            ev = events[-1]
            ev[1] = t
            ev[2] = max(ev[2], us)
            ev[3] += 1
        else:
            events.append([t, t, us, 1])
    return events


def report_run(i: int, done, late, cpu_before, cpu_after, names) -> None:
    hist = Histogram()
    for _t, lat in done:
        hist.record(lat)
    s = hist.summary_us()
    n = len(done)
    events = stall_events(done)
    slow = sum(ev[3] for ev in events)
    big = [ev for ev in events if ev[2] > BIG_EVENT_US]
    asked = int(CANARY_SLEEP_S * 1e9)
    # a canary's CPU was unavailable from when its sleep should have ended until it woke
    windows = [(a + asked, a + asked + over) for gaps in late.values() for a, over in gaps]
    covered = sum(1 for ev in big
                  if any(ws <= ev[1] + ev[2] * 1000 and we >= ev[0] - 1_000_000 for ws, we in windows))
    print(f"run {i}: {n} requests; p50 {s['p50_us']:.0f}, p90 {s['p90_us']:.0f}, "
          f"p99 {s['p99_us']:.0f}, p99.9 {s['p99_9_us']:.0f}, max {s['max_us']:.0f} us")
    print(f"  over {SLOW_US} us: {slow} requests ({100 * slow / max(1, n):.2f}%) in {len(events)} "
          f"events; {len(big)} events peak over {BIG_EVENT_US} us and hold "
          f"{sum(ev[3] for ev in big)} of those requests")
    print(f"  events over {BIG_EVENT_US} us with a canary wake-up more than {LATE_NS // 1000} us "
          f"late on some CPU overlapping them (from 1 ms before): {covered} of {len(big)}")
    print("  late canary wake-ups: " + ", ".join(
        f"CPU {cpu}: {len(g)} (longest {max((o for _a, o in g), default=0) / 1e6:.1f} ms)"
        for cpu, g in late.items()))
    per = [(cpu_after[k] - cpu_before[k]) / 1000 / max(1, n) for k in range(len(names))]
    print("  CPU us per request: " + ", ".join(f"{name} {v:.1f}" for name, v in zip(names, per))
          + f"; all {sum(per):.1f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=10_000.0)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--idle-check", type=float, default=0.0, metavar="S")
    ap.add_argument("--sched-policy", choices=B.SCHED_POLICIES, default="batch",
                    help="of every process of the run, as aeronpy bench (default batch)")
    args = ap.parse_args(argv)
    with B.sched_policy(args.sched_policy) as policy:
        return _run(args, policy)


def _run(args, policy: str) -> int:
    if not hasattr(os, "sched_setaffinity"):
        print("tail_stalls.py needs Linux (sched_setaffinity, /proc)", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="aeronpy-tail-")
    try:
        return _run_in(args, policy, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)       # the canaries' files


def _run_in(args, policy: str, work: str) -> int:
    if args.idle_check > 0:
        late = collect_canaries(start_canaries(args.idle_check, work))
        print(f"canaries alone for {args.idle_check:.0f} s: " + ", ".join(
            f"CPU {cpu}: {len(g)} wake-ups over {LATE_NS // 1000} us late "
            f"(longest {max((o for _a, o in g), default=0) / 1e6:.1f} ms)" for cpu, g in late.items()),
            flush=True)
    print(f"scheduling policy of every process: {policy}", flush=True)
    cluster = B._cluster(sched_policy=policy)
    try:
        client = B._connect(cluster)
        try:
            open_loop(client, 1.0, args.rate)                     # warm up
            counters = [cluster.read_counters(m) or {} for m in range(cluster.members)]
            roles = ["leader" if c.get("role") == 2 else f"follower {m}" for m, c in enumerate(counters)]
            pids = [cluster.procs[m].pid for m in range(cluster.members)] + [os.getpid()]
            names = roles + ["client"]
            for i in range(args.runs):
                canaries = start_canaries(args.seconds + 0.5, work)
                time.sleep(0.2)                                   # let them settle first
                before = [B.cpu_ns(p) for p in pids]
                done = open_loop(client, args.seconds, args.rate)
                after = [B.cpu_ns(p) for p in pids]
                report_run(i, done, collect_canaries(canaries), before, after, names)
        finally:
            client.close()
    finally:
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
