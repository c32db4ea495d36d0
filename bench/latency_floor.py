"""The floor under aeronpy's request latency on this machine: the same message path with no
Raft, no codec and no service, just processes handing a 32-byte datagram on over loopback.

    python bench/latency_floor.py [--requests N]

Two shapes, each with blocking receives (a process sleeps in the kernel until its datagram
comes, as aeronpy's default idle strategy does) and with busy polling (a process spins on a
non-blocking socket, as ``idle_strategy = "busy-spin"`` does):

* ``ping-pong``: 2 processes, one round trip.
* ``cluster path``: 4 processes shaped like a request to a 3-node cluster. The client sends to
  the leader, the leader sends to both followers, each follower answers the leader, and the
  leader answers the client on the first follower answer (a quorum of 2 of 3). That is 4
  wake-ups in a row, the minimum for a replicated request with a separate client.

Whatever aeronpy does per hop comes on top of these figures, so they bound what its latency
benchmark can reach here. Every loop is bounded by count and by a deadline.
"""
from __future__ import annotations

import argparse
import os
import resource
import socket
import sys
import time

PAYLOAD = b"x" * 32
DEADLINE_S = 60.0
WARM = 200                   # untimed requests first (their CPU is counted in CPU us/req too)


def _sock(blocking: bool) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(blocking)
    if blocking:
        s.settimeout(5.0)            # a lost datagram ends the run instead of hanging it
    return s


def _recv(s: socket.socket, spin: bool) -> bytes:
    if not spin:
        return s.recv(2048)
    end = time.monotonic() + 5.0
    while True:
        try:
            return s.recv(2048)
        except BlockingIOError:
            if time.monotonic() > end:
                raise TimeoutError("no datagram within 5 s")


def _child(role: str, socks: dict, spin: bool, count: int) -> None:
    """Forward datagrams until ``count`` were handled (or the deadline passes)."""
    me = socks[role]
    end = time.monotonic() + DEADLINE_S
    handled = 0
    try:
        while handled < count and time.monotonic() < end:
            data = _recv(me, spin)
            if role == "echo":
                me.sendto(data, socks["client"].getsockname())
            elif role == "leader":
                if data[:1] == b"c":            # from the client: replicate to both followers
                    me.sendto(b"f" + data[1:], socks["f1"].getsockname())
                    me.sendto(b"f" + data[1:], socks["f2"].getsockname())
                    # quorum: the first follower answer to this request (a late answer to
                    # the previous one carries another number and does not count)
                    while _recv(me, spin) != b"a" + data[1:]:
                        handled += 1
                    me.sendto(data, socks["client"].getsockname())
                # a late second answer ("a") is read here and ignored
            else:                                # follower
                me.sendto(b"a" + data[1:], socks["leader"].getsockname())
            handled += 1
    except (TimeoutError, socket.timeout):
        pass
    os._exit(0)


def _run(shape: str, spin: bool, requests: int) -> list[int]:
    roles = ["client", "echo"] if shape == "ping-pong" else ["client", "leader", "f1", "f2"]
    socks = {r: _sock(not spin) for r in roles}
    target = "echo" if shape == "ping-pong" else "leader"
    warm = WARM
    # the leader also reads the late second answers: it handles up to 2 datagrams per request
    per_child = {"echo": warm + requests, "leader": 2 * (warm + requests),
                 "f1": warm + requests, "f2": warm + requests}
    pids = []
    for role in roles[1:]:
        pid = os.fork()
        if pid == 0:
            _child(role, socks, spin, per_child[role])
        pids.append(pid)
    client = socks["client"]
    out = []
    try:
        for i in range(warm + requests):
            start = time.perf_counter_ns()
            client.sendto(b"c" + i.to_bytes(4, "little") + PAYLOAD, socks[target].getsockname())
            _recv(client, spin)
            if i >= warm:
                out.append(time.perf_counter_ns() - start)
    finally:
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        for s in socks.values():
            s.close()
    return out


def _pct(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * q))] / 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args(argv)
    print(f"latency floor, {args.requests} x 32 B, {os.cpu_count()} CPUs, "
          f"load {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'shape':<34}{'p50 us':>9}{'p90 us':>9}{'p99 us':>9}{'CPU us/req':>12}{'(sys)':>8}")
    for shape in ("ping-pong", "cluster path"):
        for spin in (False, True):
            before = _cpu_s()
            name = f"{shape} ({'busy poll' if spin else 'blocking'})"
            try:
                lat = sorted(_run(shape, spin, args.requests))
            except TimeoutError as exc:      # spinners starving each other can stall a hop
                print(f"{name:<34}  gave up: {exc}", flush=True)
                continue
            user, sys_ = (b - a for a, b in zip(before, _cpu_s()))
            per = 1e6 / (args.requests + WARM)
            print(f"{name:<34}{_pct(lat, 0.5):>9.1f}{_pct(lat, 0.9):>9.1f}{_pct(lat, 0.99):>9.1f}"
                  f"{(user + sys_) * per:>12.1f}{sys_ * per:>8.1f}", flush=True)
    return 0


def _cpu_s() -> tuple:
    """(user, system) CPU seconds of this process and its finished children: every process of
    a shape, so CPU us/req is what one request costs the machine (the kernel's loopback
    delivery and process wake-ups are most of it: the "sys" column)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + kids.ru_utime, me.ru_stime + kids.ru_stime


if __name__ == "__main__":
    sys.exit(main())
