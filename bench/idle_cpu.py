"""What an idle cluster and an idle asyncio client cost: CPU and wake-ups while nothing happens.

    python bench/idle_cpu.py [--seconds 10] [--json]

A fresh 3-node ``ProcessCluster`` (default config, ``backoff`` idle strategy) is left idle
after its election for ``--seconds``: per node, its share of a CPU (utime + stime from
``/proc/PID/stat``), its duty cycles per second (the counters file) and its voluntary context
switches per second (each one a park that ended). Then an ``AsyncClusterClient`` connects,
answers one request, and sits idle for as long: this process's share of a CPU and its
wake-ups per second, and whether a request still goes through after the idle spell.

Run it on two trees in turn (``PYTHONPATH=<tree> python <tree>/bench/idle_cpu.py``) to compare;
bench/RESULTS.md section 9 has the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from aeronpy.aio import AsyncClusterClient  # noqa: E402
from aeronpy.testing.process_cluster import ProcessCluster  # noqa: E402

SERVICE = "aeronpy.testing.services:EchoService"


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime


def wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of ``pid``."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                total += sum(int(line.split()[1]) for line in f
                             if line.startswith("voluntary_ctxt_switches"))
        except OSError:           # a thread that ended meanwhile
            pass
    return total


def idle_nodes(pc: ProcessCluster, seconds: float) -> dict:
    pids = {m: pc.procs[m].pid for m in range(pc.members)}
    roles = {m: (pc.read_counters(m) or {}).get("role") for m in pids}
    before = {m: (cpu_s(p), wakeups(p), pc.read_counters(m)["duty_cycles"]) for m, p in pids.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    out = {}
    for m, pid in pids.items():
        cpu0, wake0, cycles0 = before[m]
        out[m] = {"role": "leader" if roles[m] == 2 else "follower",
                  "cpu_percent": round(100 * (cpu_s(pid) - cpu0) / elapsed, 2),
                  "duty_cycles_per_s": round((pc.read_counters(m)["duty_cycles"] - cycles0) / elapsed),
                  "wakeups_per_s": round((wakeups(pid) - wake0) / elapsed)}
    return out


async def idle_async_client(endpoints: str, seconds: float) -> dict:
    client = await AsyncClusterClient.connect(endpoints, timeout_s=10)
    try:
        await client.request(b"before", timeout_s=5)
        await asyncio.sleep(0.5)
        me = os.getpid()
        cpu0, wake0, t0 = time.process_time(), wakeups(me), time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t0
        out = {"cpu_percent": round(100 * (time.process_time() - cpu0) / elapsed, 2),
               "wakeups_per_s": round((wakeups(me) - wake0) / elapsed)}
        out["request_after_idle"] = await client.request(b"after", timeout_s=5) == b"after"
        return out
    finally:
        await client.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="idle time measured, each part")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args(argv)
    if not 0 < args.seconds <= 3600:
        ap.error("--seconds must be in (0, 3600]")
    with ProcessCluster(3, services=[SERVICE]) as pc:
        pc.start()
        if pc.leader(timeout_s=30) is None:
            raise SystemExit("no leader elected within 30 s")
        time.sleep(1.0)                            # let start-up work settle
        result = {"nodes": idle_nodes(pc, args.seconds),
                  "async_client": asyncio.run(idle_async_client(pc.ingress_endpoints, args.seconds))}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for m, v in result["nodes"].items():
        print(f"node {m} ({v['role']}): {v['cpu_percent']:.2f}% of a CPU, "
              f"{v['duty_cycles_per_s']} duty cycles/s, {v['wakeups_per_s']} wake-ups/s")
    c = result["async_client"]
    print(f"idle AsyncClusterClient's process: {c['cpu_percent']:.2f}% of a CPU, "
          f"{c['wakeups_per_s']} wake-ups/s, request after the idle spell "
          f"{'answered' if c['request_after_idle'] else 'NOT answered'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
