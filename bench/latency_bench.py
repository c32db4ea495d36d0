"""Client round-trip latency and throughput against a real 3-node cluster on loopback.

Runs, against one ``ProcessCluster`` of EchoService nodes:
  udp_baseline  plain-Python UDP echo round trip to a child process (same machine, same run):
                the floor every other figure is divided by
  closed_loop   ``request()`` back to back (one in flight)
  open_loop     ``request()`` at a fixed offered rate (default 10k/s): each request has a
                scheduled send time; latency is measured from the actual send *and* from the
                scheduled time (the latter includes the queueing a slow cluster causes, so
                coordinated omission cannot hide it)
  pipelined     the same offered rate with ``offer`` + ``poll_egress`` (many in flight)
  throughput    32-byte messages with replies, windowed ``offer`` (--window in flight)
Latencies go into ``aeronpy.testing.histogram.Histogram``; figures print as one JSON per line.

    python bench/latency_bench.py [--rate 10000] [--seconds 3] [--window 256] [--idle backoff]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aeronpy.client import ClientConfig, ClusterClient  # noqa: E402
from aeronpy.cluster.codes import BACK_PRESSURED  # noqa: E402
from aeronpy.testing.histogram import Histogram  # noqa: E402
from aeronpy.testing.process_cluster import ProcessCluster  # noqa: E402

PAYLOAD = b"x" * 32
_ECHO_CHILD = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, addr = s.recvfrom(2048)
    if data == b"stop": break
    s.sendto(data, addr)
"""


def report(name: str, hist: Histogram, **extra) -> dict:
    row = {"bench": name, **hist.summary_us(), **extra}
    print(json.dumps(row), flush=True)
    return row


def udp_baseline(count: int) -> dict:
    child = subprocess.Popen([sys.executable, "-c", _ECHO_CHILD], stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1.0)
            hist = Histogram()
            for i in range(count + 100):
                t0 = time.perf_counter_ns()
                s.sendto(PAYLOAD, ("127.0.0.1", port))
                s.recvfrom(2048)
                if i >= 100:
                    hist.record(time.perf_counter_ns() - t0)
            s.sendto(b"stop", ("127.0.0.1", port))
        return report("udp_baseline", hist)
    finally:
        child.wait(timeout=5)


def closed_loop(client: ClusterClient, count: int) -> dict:
    hist = Histogram()
    for _ in range(count):
        t0 = time.perf_counter_ns()
        client.request(PAYLOAD, timeout_s=5.0)
        hist.record(time.perf_counter_ns() - t0)
    return report("closed_loop_request", hist)


def open_loop_request(client: ClusterClient, rate: int, seconds: float) -> list:
    interval_ns = int(1e9 / rate)
    count = int(rate * seconds)
    from_send, from_schedule = Histogram(), Histogram()
    start = time.perf_counter_ns() + 1_000_000
    late = 0
    stop_ns = start + int(2 * seconds * 1e9)     # bounded even when the cluster falls behind
    done = 0
    for i in range(count):
        if time.perf_counter_ns() >= stop_ns:
            break
        done += 1
        scheduled = start + i * interval_ns
        while time.perf_counter_ns() < scheduled:
            pass
        t0 = time.perf_counter_ns()
        late += t0 - scheduled > interval_ns
        client.request(PAYLOAD, timeout_s=5.0)
        t1 = time.perf_counter_ns()
        from_send.record(t1 - t0)
        from_schedule.record(t1 - scheduled)
    achieved = done / ((time.perf_counter_ns() - start) / 1e9)
    return [report("open_loop_request_from_send", from_send, offered_per_s=rate,
                   achieved_per_s=round(achieved), scheduled=count, sent=done),
            report("open_loop_request_from_schedule", from_schedule, offered_per_s=rate,
                   sent_late=late)]


def pipelined(client: ClusterClient, rate: int, seconds: float) -> list:
    interval_ns = int(1e9 / rate)
    count = int(rate * seconds)
    from_send, from_schedule = Histogram(), Histogram()
    sent_at: dict = {}
    received = [0]

    def on_reply(correlation_id: int, payload) -> None:
        t = time.perf_counter_ns()
        scheduled, t0 = sent_at.pop(correlation_id)
        from_send.record(t - t0)
        from_schedule.record(t - scheduled)
        received[0] += 1

    start = time.perf_counter_ns() + 1_000_000
    deadline = start + int((seconds + 10) * 1e9)
    i = 0
    while received[0] < count and time.perf_counter_ns() < deadline:
        now = time.perf_counter_ns()
        while i < count and start + i * interval_ns <= now:
            correlation_id = client.offer(PAYLOAD)
            if correlation_id == BACK_PRESSURED:
                break
            sent_at[correlation_id] = (start + i * interval_ns, time.perf_counter_ns())
            i += 1
        client.poll_egress(on_reply)
    elapsed = (time.perf_counter_ns() - start) / 1e9
    return [report("pipelined_offer_from_send", from_send, offered_per_s=rate,
                   achieved_per_s=round(received[0] / elapsed)),
            report("pipelined_offer_from_schedule", from_schedule, offered_per_s=rate)]


def throughput(client: ClusterClient, seconds: float, window: int) -> dict:
    outstanding = [0]
    received = [0]

    def on_reply(correlation_id: int, payload) -> None:
        outstanding[0] -= 1
        received[0] += 1

    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        while outstanding[0] < window:
            if client.offer(PAYLOAD) <= 0:
                break
            outstanding[0] += 1
        client.poll_egress(on_reply)
    drain_end = time.perf_counter() + 5.0
    while outstanding[0] and time.perf_counter() < drain_end:
        client.poll_egress(on_reply)
    elapsed = time.perf_counter() - start
    row = {"bench": "throughput_32B_with_replies", "window": window, "messages": received[0],
           "seconds": round(elapsed, 2), "msgs_per_s": round(received[0] / elapsed)}
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--idle", default="backoff", help="the nodes' idle_strategy")
    parser.add_argument("--closed-count", type=int, default=3000)
    args = parser.parse_args()
    base = udp_baseline(args.closed_count)
    with ProcessCluster(services=["aeronpy.testing.services:EchoService"],
                        config={"idle_strategy": args.idle}) as cluster:
        cluster.start()
        if cluster.leader(20.0) is None:
            print("no leader elected", file=sys.stderr)
            return 1
        client = ClusterClient.connect(cluster.ingress_endpoints, timeout_s=15.0,
                                       config=ClientConfig(window_messages=max(1024, args.window)))
        try:
            for _ in range(500):                      # warm up
                client.request(PAYLOAD, timeout_s=5.0)
            closed = closed_loop(client, args.closed_count)
            open_loop_request(client, args.rate, args.seconds)
            pipelined(client, args.rate, args.seconds)
            throughput(client, args.seconds, args.window)
        finally:
            client.close()
    print(json.dumps({"bench": "ratio", "closed_loop_p50_over_udp_p50":
                      round(closed["p50_us"] / base["p50_us"], 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
