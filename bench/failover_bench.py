"""Failover time of a real 3-process cluster on loopback, with default settings.

    python bench/failover_bench.py [--trials 20] [--handover-trials 10] [--idle-seconds 5]

Three ``aeronpy node`` processes run the CounterService (aeronpy.testing.services). A client
keeps requesting; each trial:
  kill -9   SIGKILL the leader (and reap it), then request until a reply arrives: the time
            from the kill to that reply is the failover time (the old leader is dead before
            the request leaves, so the commit is the new leader's). The killed member is then
            restarted and the next trial waits until it has caught up.
  SIGTERM   the leader hands over (core.transfer_leadership on close): time from the signal to
            the reply of a request sent as soon as a successor shows in its counters file.
Baselines in the same run: the steady-state request round trip, and the configured timeouts
(a follower may not start an election before ``election_timeout_ms`` of silence).
Idle CPU: each node's share of a CPU over ``--idle-seconds`` with nothing to do, from
/proc/PID/stat (utime + stime), for the default ``backoff`` idle strategy and for ``sleep``
(fixed 1 ms sleeps) as the reference.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aeronpy  # noqa: E402
from aeronpy.cluster.config import NodeConfig  # noqa: E402
from aeronpy.errors import ClusterTimeoutError, NotConnectedError  # noqa: E402
from aeronpy.testing.process_cluster import ProcessCluster  # noqa: E402

SERVICE = "aeronpy.testing.services:CounterService"
ADD = struct.Struct("<q")
ADD_ONE = ADD.pack(1)


def percentiles(values: list) -> dict:
    s = sorted(values)

    def pick(q: float) -> float:
        return s[min(len(s) - 1, int(q * len(s)))]
    return {"n": len(s), "min": s[0], "p50": pick(0.5), "p90": pick(0.9), "max": s[-1],
            "mean": statistics.fmean(s)}


def fmt_ms(stats: dict) -> str:
    return (f"n={stats['n']} min={stats['min'] * 1e3:.0f} p50={stats['p50'] * 1e3:.0f} "
            f"p90={stats['p90'] * 1e3:.0f} max={stats['max'] * 1e3:.0f} ms")


def request_until_reply(client, within_s: float = 15.0) -> float:
    """Request until one reply arrives; returns the monotonic time of that reply."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            client.request(ADD_ONE, timeout_s=max(0.1, deadline - time.monotonic()))
            return time.monotonic()
        except (ClusterTimeoutError, NotConnectedError):
            if time.monotonic() >= deadline:
                raise


def wait_caught_up(pc: ProcessCluster, member: int, timeout_s: float = 20.0) -> bool:
    def done() -> bool:
        mine = (pc.read_counters(member) or {}).get("commit_index", -1)
        return all(mine >= (pc.read_counters(o) or {}).get("commit_index", 0)
                   for o in range(pc.members) if o != member and pc.alive(o))
    return pc.wait_for(done, timeout_s)


def hammer(client, seconds: float) -> list:
    """Back-to-back requests for ``seconds``; returns their round trips."""
    rtts = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        client.request(ADD_ONE, timeout_s=5)
        rtts.append(time.perf_counter() - t0)
    return rtts


def kill_trials(pc: ProcessCluster, client, trials: int, log) -> tuple:
    failovers, rtts = [], []
    for trial in range(trials):
        rtts += hammer(client, 0.3)
        leader = pc.leader(timeout_s=10)
        term = pc.read_counters(leader)["leadership_term"]
        killed_at = time.monotonic()
        pc.kill(leader, signal.SIGKILL)
        replied_at = request_until_reply(client)
        failovers.append(replied_at - killed_at)
        successor = pc.leader(timeout_s=5, exclude={leader})
        new_term = pc.read_counters(successor)["leadership_term"] if successor is not None else -1
        log(f"kill -9 trial {trial + 1}: leader {leader} (term {term}) -> {successor} "
            f"(term {new_term}) in {failovers[-1] * 1e3:.0f} ms")
        pc.start_member(leader)
        if not wait_caught_up(pc, leader):
            raise RuntimeError(f"restarted member {leader} did not catch up")
    return failovers, rtts


def handover_trials(pc: ProcessCluster, client, trials: int, log) -> list:
    times = []
    for trial in range(trials):
        hammer(client, 0.3)
        leader = pc.leader(timeout_s=10)
        term = pc.read_counters(leader)["leadership_term"]
        started = time.monotonic()
        pc.procs[leader].send_signal(signal.SIGTERM)
        successor = pc.leader(timeout_s=10, exclude={leader}, min_term=term + 1, interval_s=0.001)
        replied_at = request_until_reply(client)
        times.append(replied_at - started)
        code = pc.procs[leader].wait(timeout=10)
        log(f"SIGTERM trial {trial + 1}: leader {leader} -> {successor} in "
            f"{times[-1] * 1e3:.0f} ms (exit code {code})")
        pc.start_member(leader)
        if not wait_caught_up(pc, leader):
            raise RuntimeError(f"restarted member {leader} did not catch up")
    return times


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])      # utime + stime


def idle_cpu(strategy: str, seconds: float) -> dict:
    """Per-node CPU % and duty cycles/s of an idle 3-node cluster (no client)."""
    with ProcessCluster(3, services=[SERVICE], config={"idle_strategy": strategy}) as pc:
        pc.start()
        if pc.leader(timeout_s=30) is None:
            raise RuntimeError("no leader")
        time.sleep(1.0)                            # let start-up work settle
        pids = {m: pc.procs[m].pid for m in range(pc.members)}
        roles = {m: (pc.read_counters(m) or {}).get("role") for m in pids}
        cycles0 = {m: pc.read_counters(m)["duty_cycles"] for m in pids}
        ticks0 = {m: cpu_ticks(p) for m, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        hz = os.sysconf("SC_CLK_TCK")
        out = {}
        for m, pid in pids.items():
            out[m] = {"role": "leader" if roles[m] == 2 else "follower",
                      "cpu_percent": round(100.0 * (cpu_ticks(pid) - ticks0[m]) / hz / elapsed, 2),
                      "duty_cycles_per_s": round((pc.read_counters(m)["duty_cycles"] - cycles0[m]) / elapsed)}
        return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--handover-trials", type=int, default=10)
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--json", action="store_true", help="print one JSON document at the end")
    args = ap.parse_args(argv)
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else print
    defaults = NodeConfig.__dataclass_fields__
    timeouts = {k: defaults[k].default for k in ("election_timeout_ms", "heartbeat_interval_ms",
                                                 "leader_heartbeat_timeout_ms")}
    result: dict = {"settings": {"defaults": timeouts, "trials": args.trials,
                                 "handover_trials": args.handover_trials}}
    with ProcessCluster(3, services=[SERVICE]) as pc:
        pc.start()
        if pc.leader(timeout_s=30) is None:
            raise RuntimeError("no leader")
        client = aeronpy.ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
        try:
            failovers, rtts = kill_trials(pc, client, args.trials, log)
            handovers = handover_trials(pc, client, args.handover_trials, log)
        finally:
            client.close()
    result["request_rtt_s"] = percentiles(rtts)
    result["kill9_failover_s"] = percentiles(failovers)
    result["sigterm_handover_s"] = percentiles(handovers)
    election_s = timeouts["election_timeout_ms"] / 1e3
    result["ratios"] = {
        "kill9_p50_over_election_timeout": result["kill9_failover_s"]["p50"] / election_s,
        "handover_p50_over_election_timeout": result["sigterm_handover_s"]["p50"] / election_s,
        "handover_p50_over_kill9_p50": result["sigterm_handover_s"]["p50"] / result["kill9_failover_s"]["p50"],
    }
    if args.idle_seconds > 0:
        result["idle_cpu"] = {s: idle_cpu(s, args.idle_seconds) for s in ("backoff", "sleep")}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"defaults: {timeouts}")
    print(f"steady-state request round trip: {fmt_ms(result['request_rtt_s'])} "
          f"(p50 {result['request_rtt_s']['p50'] * 1e6:.0f} us)")
    print(f"kill -9 -> first commit by the new leader: {fmt_ms(result['kill9_failover_s'])}")
    print(f"SIGTERM hand-over -> new leader serving:   {fmt_ms(result['sigterm_handover_s'])}")
    print("ratios: " + ", ".join(f"{k}={v:.3f}" for k, v in result["ratios"].items()))
    for strategy, nodes in result.get("idle_cpu", {}).items():
        print(f"idle CPU ({strategy}): " + "; ".join(
            f"node {m} {v['role']}: {v['cpu_percent']:.1f}% ({v['duty_cycles_per_s']} cycles/s)"
            for m, v in nodes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
