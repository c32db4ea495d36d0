"""Lone requests: what a request costs when requests are far apart (an order now and then).

    python bench/lone_requests.py [--rate 20] [--count 200] [--json]

A fresh 3-node ``ProcessCluster`` (EchoService, default config) and one blocking client, which
warms up, then sends ``--count`` requests paced at ``--rate`` per second, polling between them
(waking for its own timers: ``next_due_ns``).
Printed: the round-trip latency (p50, p90, p99, max) and, per request, the datagrams the client
received and each member's datagrams sent and stream STATUS and HEARTBEAT frames beyond what the
same members send idle for as long (measured right after). A request needs one datagram back (its reply,
which carries the acknowledgement of the request); anything more is a wake-up of the client
and work for the members.

Run it on two trees in turn (``PYTHONPATH=<tree> python <tree>/bench/lone_requests.py``) to
compare; bench/RESULTS.md section 17 has the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from aeronpy import ClusterClient  # noqa: E402
from aeronpy.testing.process_cluster import ProcessCluster  # noqa: E402

SERVICE = "aeronpy.testing.services:EchoService"
KINDS = ("stream_status_sent", "stream_heartbeats_sent", "frames_out")


def _percentile(sorted_values, q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def run(rate: float, count: int) -> dict:
    with ProcessCluster(members=3, services=[SERVICE]) as cluster:
        cluster.start()
        leader = cluster.leader(20.0)
        if leader is None:
            raise SystemExit("no leader elected within 20 s")
        with ClusterClient.connect(cluster.ingress_endpoints, timeout_s=10.0) as client:
            for i in range(50):                          # warm-up, then let it all go quiet
                client.request(b"warm %d" % i, timeout_s=5.0)
            time.sleep(1.5)
            before = [cluster.read_counters(m) for m in range(3)]
            received0 = client._transport.datagrams_received()
            latencies = []
            start = time.monotonic()
            deadline = start + count / rate + 60.0      # a bound on the whole run
            for i in range(count):
                sent = time.perf_counter_ns()
                client.request(b"lone %d" % i, timeout_s=5.0)
                latencies.append((time.perf_counter_ns() - sent) / 1000)
                due = start + (i + 1) / rate
                while time.monotonic() < due and time.monotonic() < deadline:
                    client.poll_egress(lambda correlation_id, payload: None)
                    # wait for the next request or the client's own timers, whichever is first
                    timers_s = (client.next_due_ns() - time.monotonic_ns()) / 1e9
                    client.wait_for_egress(min(0.005, max(0.0, min(due - time.monotonic(), timers_s))))
            busy_s = time.monotonic() - start
            received = client._transport.datagrams_received() - received0
            after = [cluster.read_counters(m) for m in range(3)]
            time.sleep(busy_s)                           # the same members idle for as long
            idle = [cluster.read_counters(m) for m in range(3)]
    latencies.sort()
    members = {}
    for m in range(3):
        members[m] = {kind: round(((after[m].get(kind, 0) - before[m].get(kind, 0))
                                   - (idle[m].get(kind, 0) - after[m].get(kind, 0))) / count, 2)
                      for kind in KINDS}
        members[m]["leader"] = m == leader
    return {"rate_per_s": rate, "requests": count,
            "latency_us": {"p50": round(_percentile(latencies, 0.5), 1),
                           "p90": round(_percentile(latencies, 0.9), 1),
                           "p99": round(_percentile(latencies, 0.99), 1),
                           "max": round(latencies[-1], 1)},
            "client_datagrams_received_per_request": round(received / count, 2),
            "members_beyond_idle_per_request": members}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 0 < args.rate <= 1000 or not 10 <= args.count <= 100_000:
        parser.error("--rate in (0, 1000], --count in [10, 100000]")
    result = run(args.rate, args.count)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    lat = result["latency_us"]
    print(f"{result['requests']} lone requests at {result['rate_per_s']:g}/s: latency p50 "
          f"{lat['p50']} us, p90 {lat['p90']}, p99 {lat['p99']}, max {lat['max']}")
    print(f"client: {result['client_datagrams_received_per_request']} datagrams received per request")
    for m, row in result["members_beyond_idle_per_request"].items():
        role = "leader  " if row["leader"] else "follower"
        print(f"member {m} ({role}): per request beyond idle: datagrams {row['frames_out']} "
              f"(STATUS {row['stream_status_sent']}, HEARTBEAT {row['stream_heartbeats_sent']}; a "
              "STATUS may ride in a datagram with data)")


if __name__ == "__main__":
    main()
