"""Transport throughput over loopback: aeronpy streams vs plain-Python sockets, same run.

Three ways to move N messages of S bytes from one socket to another on 127.0.0.1, all on one
thread (as a node's duty cycle is):
  baseline  plain ``socket.sendto`` / ``socket.recvfrom``, no reliability (losses counted)
  poll_loop ``aeronpy._udp.UdpSocket``: queued batches + sendmmsg/recvmmsg, no reliability
  streams   ``aeronpy.transport.UdpTransport``: reliable ordered flow-controlled streams
Reports messages/s and MB/s of messages *received*, and each as a ratio to the baseline.

    python bench/transport_bench.py [--count 100000] [--repeat 3] [--sizes 32,1024] [--portable]
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aeronpy._udp import UdpSocket, address_key  # noqa: E402
from aeronpy.transport import BACK_PRESSURED, UdpTransport  # noqa: E402

BURST = 64            # messages sent per loop turn before draining the receiver
TIMEOUT_S = 60.0


def bench_baseline(count: int, size: int) -> tuple:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    dest = rx.getsockname()
    payload = b"x" * size
    received = sent = 0
    t0 = time.perf_counter()
    deadline = t0 + TIMEOUT_S
    while sent < count and time.perf_counter() < deadline:
        for _ in range(min(BURST, count - sent)):
            tx.sendto(payload, dest)
            sent += 1
        try:
            while True:
                rx.recvfrom(2048)
                received += 1
        except BlockingIOError:
            pass
    try:
        while True:
            rx.recvfrom(2048)
            received += 1
    except BlockingIOError:
        pass
    elapsed = time.perf_counter() - t0
    tx.close()
    rx.close()
    return received, elapsed


def bench_poll_loop(count: int, size: int, use_mmsg: bool) -> tuple:
    tx = UdpSocket(use_mmsg=use_mmsg, batch=BURST)
    rx = UdpSocket(use_mmsg=use_mmsg, batch=BURST, rcvbuf_bytes=4 << 20)
    key = address_key(*rx.local_address)
    payload = b"x" * size
    got = [0]

    def on_datagram(k, view):
        got[0] += 1
    sent = 0
    t0 = time.perf_counter()
    deadline = t0 + TIMEOUT_S
    while sent < count and time.perf_counter() < deadline:
        for _ in range(min(BURST, count - sent)):
            tx.queue(key, payload)
            sent += 1
        tx.flush()
        rx.poll(on_datagram, 4 * BURST)
    while rx.poll(on_datagram, 4 * BURST):
        pass
    elapsed = time.perf_counter() - t0
    tx.close()
    rx.close()
    return got[0], elapsed


def bench_streams(count: int, size: int, use_mmsg: bool) -> tuple:
    a = UdpTransport("127.0.0.1", 0, 1, 0, use_mmsg=use_mmsg, rcvbuf_bytes=4 << 20)
    b = UdpTransport("127.0.0.1", 0, 1, 1, use_mmsg=use_mmsg, rcvbuf_bytes=4 << 20)
    a.add_peer(1, *b.local_address)
    b.add_peer(0, *a.local_address)
    payload = b"x" * size
    got = [0]

    def on_message(peer_id, message):
        got[0] += 1

    def ignore(peer_id, message):
        pass
    sent = 0
    t0 = time.perf_counter()
    deadline = t0 + TIMEOUT_S
    while got[0] < count and time.perf_counter() < deadline:
        for _ in range(min(BURST, count - sent)):
            if a.send(1, payload) == BACK_PRESSURED:
                break
            sent += 1
        a.do_work()
        b.poll(on_message, 4 * BURST)
        b.do_work()
        a.poll(ignore, BURST)
    elapsed = time.perf_counter() - t0
    counters = a.counters.snapshot()
    a.close()
    b.close()
    return got[0], elapsed, counters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="32,1024")
    ap.add_argument("--portable", action="store_true", help="force the recvfrom/sendto path")
    args = ap.parse_args()
    use_mmsg = not args.portable
    print(f"# {args.count} messages per run, best of {args.repeat}, path="
          f"{'portable' if args.portable else 'mmsg'}, python {sys.version.split()[0]}")
    print(f"{'size':>6} {'method':<10} {'msgs/s':>12} {'MB/s':>9} {'x baseline':>10} {'received':>9}")
    methods = {
        "baseline": lambda size: bench_baseline(args.count, size),
        "poll_loop": lambda size: bench_poll_loop(args.count, size, use_mmsg),
        "streams": lambda size: bench_streams(args.count, size, use_mmsg)[:2],
    }
    for size in (int(s) for s in args.sizes.split(",")):
        best = {}
        for _ in range(args.repeat):       # interleaved, so machine noise hits every method
            for name, run in methods.items():
                n, dt = run(size)
                if name not in best or n / dt > best[name][0]:
                    best[name] = (n / dt, n)
        base = best["baseline"][0]
        for name, (rate, n) in best.items():
            print(f"{size:>6} {name:<10} {rate:>12,.0f} {rate * size / 1e6:>9.1f} "
                  f"{rate / base:>10.2f} {n:>9}")

if __name__ == "__main__":
    main()
