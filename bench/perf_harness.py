"""CPU cost per replicated message, the figure the hot-path work in bench/results/perf.md is
measured by. On a shared machine wall-clock throughput moves 2x between runs; CPU time per
message barely moves, and on 2 cores it is what bounds throughput.

    python bench/perf_harness.py inproc [--messages N] [--profile]
        3 ClusterNodes and a client in this one thread, each driven by do_work(): CPU us per
        message of the whole path (no scheduling, no other process), optionally with cProfile.
    python bench/perf_harness.py processes [--seconds S] [--spin]
        3 node processes (ProcessCluster) and a client here: msgs/s and CPU us per message of
        the client, the leader and each follower (from /proc). The client idles on an empty
        poll, as `aeronpy bench` does; --spin makes it busy-poll instead.
    python bench/perf_harness.py serial [--requests N] [--file-sync data]
        3 node processes and one request() at a time: latency and CPU us per request of
        each process (the Python work on one request's path); optionally durable.
    python bench/perf_harness.py cycles [--requests N]
        3 ClusterNodes and a client in this one thread, one request at a time: the wall time
        of each node's do_work(), split into cycles that did work and empty ones (the fixed
        cost every duty cycle pays), per node and per request.

Both: EchoService, 32-byte messages, 512 offers in flight.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from aeronpy.client import ClusterClient, _Backoff  # noqa: E402

WINDOW = 512
PAYLOAD = b"x" * 32
ECHO = "aeronpy.testing.services:EchoService"


def _windowed(client, count: int, pump, idle=None) -> None:
    """Keep WINDOW offers in flight until ``count`` replies came back; ``pump()`` runs the nodes."""
    replies = [0]

    def on_reply(_cid, _payload) -> None:
        replies[0] += 1
    sent = 0
    deadline = time.monotonic() + 120
    while replies[0] < count and time.monotonic() < deadline:
        while sent < count and sent - replies[0] < WINDOW and client.offer(PAYLOAD) > 0:
            sent += 1
        pump()
        got = client.poll_egress(on_reply)
        if idle is not None:
            idle(got)
    if replies[0] < count:
        raise SystemExit(f"only {replies[0]} of {count} replies within 120 s")


# 3 ClusterNodes and a connected client in this thread (moved to aeronpy.testing, where the
# tests use it too; the name stays for the scripts that import it from here)
from aeronpy.testing.inproc import inproc_cluster as _inproc_cluster  # noqa: E402


def inproc(messages: int, profile: bool) -> None:
    with _inproc_cluster() as (_nodes, pump, client):
        _windowed(client, 2_000, pump)                          # warm up
        profiler = cProfile.Profile() if profile else None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        _windowed(client, messages, pump)
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        print(f"in-process, {messages} x 32 B: CPU {cpu / messages * 1e6:.1f} us per message "
              f"({messages / wall:,.0f} msgs/s wall, one thread){' [profiled]' if profile else ''}")
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def cycles(requests: int) -> None:
    """Wall time per duty cycle of each node, one request at a time, all in this thread."""
    clock = time.perf_counter_ns
    stats = [[0, 0, 0, 0] for _ in range(3)]   # work cycles, their ns, empty cycles, their ns
    measuring = [False]

    def timed_pump(nodes):
        def pump() -> None:
            for node, st in zip(nodes, stats):
                t0 = clock()
                work = node.do_work()
                elapsed = clock() - t0
                if measuring[0]:
                    if work:
                        st[0] += 1
                        st[1] += elapsed
                    else:
                        st[2] += 1
                        st[3] += elapsed
        return pump
    replies = [0]

    def on_reply(_cid, _payload) -> None:
        replies[0] += 1

    with _inproc_cluster(timed_pump) as (nodes, pump, client):
        def one_request() -> None:
            target = replies[0] + 1
            client.offer(PAYLOAD)
            deadline = time.monotonic() + 5
            while replies[0] < target and time.monotonic() < deadline:
                pump()
                client.poll_egress(on_reply)
            time.sleep(0.0002)        # a gap between requests, as at a fixed offered rate
            pump()
            pump()
        for _ in range(300):
            one_request()                                        # warm up
        measuring[0] = True
        for _ in range(requests):
            one_request()
        for node, (wn, wns, en, ens) in zip(nodes, stats):
            print(f"{node.role.name:8s} work cycles {wn / requests:.2f}/req at {wns / max(1, wn) / 1e3:.1f} us, "
                  f"empty cycles {en / requests:.2f}/req at {ens / max(1, en) / 1e3:.1f} us; "
                  f"{(wns + ens) / requests / 1e3:.1f} us per request")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes(seconds: float, spin: bool) -> None:
    from aeronpy.testing.process_cluster import ProcessCluster
    with ProcessCluster(3, services=[ECHO]) as cluster:
        cluster.start()
        if cluster.leader(timeout_s=30) is None:
            raise SystemExit("no leader")
        client = ClusterClient.connect(cluster.ingress_endpoints, timeout_s=10)
        idle = None if spin else _Backoff()
        rate_probe = time.perf_counter()
        _windowed(client, 5_000, lambda: None, idle)
        per_second = 5_000 / (time.perf_counter() - rate_probe)
        count = max(10_000, int(per_second * seconds))
        pids = {i: p.pid for i, p in cluster.procs.items()}
        before = {i: _cpu_seconds(p) for i, p in pids.items()}
        cpu0, wall0 = time.process_time(), time.perf_counter()
        _windowed(client, count, lambda: None, idle)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        after = {i: _cpu_seconds(p) for i, p in pids.items()}
        leader = cluster.leader(timeout_s=1)
        parts = [f"client {cpu / count * 1e6:.1f}"] + [
            f"{'leader' if i == leader else 'follower'} {(after[i] - before[i]) / count * 1e6:.1f}"
            for i in sorted(pids)]
        print(f"3 processes + client ({'spinning' if spin else 'idling'} client), {count} x 32 B: "
              f"{count / wall:,.0f} msgs/s; CPU us per message: {', '.join(parts)}")
        client.close()


def serial(requests: int, file_sync: str = "none") -> None:
    """One request() at a time against 3 node processes: CPU us per request of each process.

    The sum over the processes is the Python work on a request's path (plus the empty duty
    cycles a wake-up costs); with the wake-up floor of bench/latency_floor.py it bounds the
    latency a request can have here."""
    from aeronpy.testing.process_cluster import ProcessCluster
    from aeronpy.testing.histogram import Histogram
    # the nodes import this checkout's aeronpy too (an A/B against a built copy elsewhere)
    with ProcessCluster(3, services=[ECHO], config={"file_sync": file_sync},
                        env={"PYTHONPATH": REPO_ROOT}) as cluster:
        cluster.start()
        if cluster.leader(timeout_s=30) is None:
            raise SystemExit("no leader")
        client = ClusterClient.connect(cluster.ingress_endpoints, timeout_s=10)
        for _ in range(500):
            client.request(PAYLOAD, timeout_s=5.0)                # warm up
        pids = {i: p.pid for i, p in cluster.procs.items()}
        before = {i: _cpu_seconds(p) for i, p in pids.items()}
        hist = Histogram()
        cpu0 = time.process_time()
        deadline = time.monotonic() + 120
        done = 0
        while done < requests and time.monotonic() < deadline:
            start = time.monotonic_ns()
            client.request(PAYLOAD, timeout_s=5.0)
            hist.record(time.monotonic_ns() - start)
            done += 1
        cpu = time.process_time() - cpu0
        after = {i: _cpu_seconds(p) for i, p in pids.items()}
        leader = cluster.leader(timeout_s=1)
        per = {i: (after[i] - before[i]) / done * 1e6 for i in pids}
        parts = [f"client {cpu / done * 1e6:.1f}"] + [
            f"{'leader' if i == leader else 'follower'} {per[i]:.1f}" for i in sorted(pids)]
        total = cpu / done * 1e6 + sum(per.values())
        lat = hist.summary_us()
        print(f"serial request(), file_sync {file_sync}, {done} x 32 B: p50 {lat['p50_us']:.0f} us, p99 {lat['p99_us']:.0f} us; "
              f"CPU us per request: {', '.join(parts)}; all processes {total:.1f}")
        client.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("inproc")
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--profile", action="store_true")
    p = sub.add_parser("processes")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--spin", action="store_true")
    p = sub.add_parser("serial")
    p.add_argument("--requests", type=int, default=5_000)
    p.add_argument("--file-sync", choices=("none", "data", "full"), default="none")
    p = sub.add_parser("cycles")
    p.add_argument("--requests", type=int, default=2_000)
    args = parser.parse_args(argv)
    if args.mode == "inproc":
        inproc(args.messages, args.profile)
    elif args.mode == "cycles":
        cycles(args.requests)
    elif args.mode == "serial":
        serial(args.requests, args.file_sync)
    else:
        processes(args.seconds, args.spin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
