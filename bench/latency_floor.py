"""The floor under aeronpy's request latency on this machine: the same message path with no
Raft, no codec and no service, just processes handing a 32-byte datagram on over loopback.

    python bench/latency_floor.py [--requests N] [--rate R]

Two shapes, each with blocking receives (a process sleeps in the kernel until its datagram
comes, as aeronpy's default idle strategy does) and with busy polling (a process spins on a
non-blocking socket, as ``idle_strategy = "busy-spin"`` does), and a third:

* ``ping-pong``: 2 processes, one round trip.
* ``cluster path``: 4 processes shaped like a request to a 3-node cluster. The client sends to
  the leader, the leader sends to both followers, each follower answers the leader, and the
  leader answers the client on the first follower answer (a quorum of 2 of 3). That is 4
  wake-ups in a row, the minimum for a replicated request with a separate client.
* ``cluster path, open loop``: the same 4 processes with requests offered at ``--rate`` per
  second (10,000 by default) on a fixed schedule, many in flight, as aeronpy's latency
  benchmark offers them; blocking receives only (4 spinners starve on 2 cores).

Whatever aeronpy does per hop comes on top of these figures, so they bound what its latency
benchmark can reach here. Every loop is bounded by count and by a deadline.
"""
from __future__ import annotations

import argparse
import os
import resource
import select
import socket
import sys
import time

PAYLOAD = b"x" * 32
DEADLINE_S = 60.0
LOST_AFTER_NS = 1_000_000_000   # open loop: unanswered this long after the last send = lost
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
    """Forward datagrams until ``count`` were handled (or the deadline passes). Runs in a
    forked child: whatever happens, it ends in os._exit and never returns into the parent's
    code (a test runner's, say)."""
    try:
        _forward(role, socks, spin, count)
    finally:
        os._exit(0)


def _forward(role: str, socks: dict, spin: bool, count: int) -> None:
    me = socks["leader" if role == "leader-open" else role]
    end = time.monotonic() + DEADLINE_S
    handled = 0
    waiting = set()
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
            elif role == "leader-open":         # many requests in flight: event by event
                if data[:1] == b"c":
                    waiting.add(data[1:5])
                    me.sendto(b"f" + data[1:], socks["f1"].getsockname())
                    me.sendto(b"f" + data[1:], socks["f2"].getsockname())
                elif data[1:5] in waiting:      # the first follower answer: a quorum
                    waiting.discard(data[1:5])
                    me.sendto(b"c" + data[1:], socks["client"].getsockname())
            else:                                # follower
                me.sendto(b"a" + data[1:], socks["leader"].getsockname())
            handled += 1
    except (TimeoutError, socket.timeout):
        pass


def _fork_children(children: list, socks: dict, spin: bool) -> list[int]:
    """One forked process per ``(role, datagrams to handle)``; their pids."""
    pids = []
    for role, count in children:
        pid = os.fork()
        if pid == 0:
            _child(role, socks, spin, count)
        pids.append(pid)
    return pids


def _reap(pids: list, socks: dict) -> None:
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    for sock in socks.values():
        sock.close()


def _run(shape: str, spin: bool, requests: int) -> list[int]:
    roles = ["client", "echo"] if shape == "ping-pong" else ["client", "leader", "f1", "f2"]
    socks = {r: _sock(not spin) for r in roles}
    target = "echo" if shape == "ping-pong" else "leader"
    warm = WARM
    # the leader also reads the late second answers: it handles up to 2 datagrams per request
    per_child = {"echo": warm + requests, "leader": 2 * (warm + requests),
                 "f1": warm + requests, "f2": warm + requests}
    pids = _fork_children([(role, per_child[role]) for role in roles[1:]], socks, spin)
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
        _reap(pids, socks)
    return out


def _run_open_loop(rate: float, requests: int, lost: list) -> list[int]:
    """The cluster path with requests offered on an open-loop schedule of ``rate``/s (many in
    flight), as aeronpy's latency benchmark offers them: latency from each send to its answer.
    Every process blocks in the kernel until its next datagram; the client waits in select
    until an answer comes or its next send is due. Nothing re-sends: ``lost[0]`` is set to the
    requests still unanswered 1 s after the last send (more than 1% raises TimeoutError)."""
    roles = ["client", "leader", "f1", "f2"]
    socks = {r: _sock(True) for r in roles}
    total = WARM + requests
    # the leader handles 3 datagrams per request: 1 from the client, 2 follower answers
    pids = _fork_children([("leader-open", 3 * total), ("f1", total), ("f2", total)], socks, False)
    client = socks["client"]
    client.setblocking(False)
    leader = socks["leader"].getsockname()
    gap_ns = int(1e9 / rate)
    sent: dict = {}
    out = []
    try:
        start = time.perf_counter_ns()
        due = start
        i = 0
        deadline = time.monotonic() + DEADLINE_S
        while (i < total or sent) and time.monotonic() < deadline:
            if i >= total and time.perf_counter_ns() - due > LOST_AFTER_NS:
                break                            # the rest were lost (UDP, nothing re-sends)
            now = time.perf_counter_ns()
            while i < total and due <= now:
                client.sendto(b"c" + i.to_bytes(4, "little") + PAYLOAD, leader)
                sent[i] = time.perf_counter_ns()
                i += 1
                due += gap_ns
            wait_ns = due - time.perf_counter_ns() if i < total else 50_000_000
            if wait_ns > 0:
                select.select([client], [], [], wait_ns / 1e9)
            while True:
                try:
                    data = client.recv(2048)
                except BlockingIOError:
                    break
                rid = int.from_bytes(data[1:5], "little")
                begun = sent.pop(rid, None)
                if begun is not None and rid >= WARM:
                    out.append(time.perf_counter_ns() - begun)
        if len(sent) > total // 100:
            raise TimeoutError(f"{len(sent)} of {total} requests unanswered")
        lost[0] = len(sent)
    finally:
        _reap(pids, socks)
    return out


def _pct(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * q))] / 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=10_000.0,
                        help="offered rate of the open-loop cluster path (default 10000/s)")
    args = parser.parse_args(argv)
    if args.requests <= 0 or args.rate <= 0:
        parser.error("--requests and --rate must be positive")
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
            _print_row(name, lat, before, args.requests)
    name = f"cluster path, open loop {args.rate:,.0f}/s"
    before = _cpu_s()
    lost = [0]
    try:
        lat = sorted(_run_open_loop(args.rate, args.requests, lost))
        _print_row(name, lat, before, args.requests)
        if lost[0]:
            print(f"  ({lost[0]} of {args.requests + WARM} datagrams lost on the way: not counted)")
    except TimeoutError as exc:
        print(f"{name:<34}  gave up: {exc}", flush=True)
    return 0


def _print_row(name: str, lat: list, before: tuple, requests: int) -> None:
    user, sys_ = (b - a for a, b in zip(before, _cpu_s()))
    per = 1e6 / (requests + WARM)
    print(f"{name:<34}{_pct(lat, 0.5):>9.1f}{_pct(lat, 0.9):>9.1f}{_pct(lat, 0.99):>9.1f}"
          f"{(user + sys_) * per:>12.1f}{sys_ * per:>8.1f}", flush=True)


def _cpu_s() -> tuple:
    """(user, system) CPU seconds of this process and its finished children: every process of
    a shape, so CPU us/req is what one request costs the machine (the kernel's loopback
    delivery and process wake-ups are most of it: the "sys" column)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + kids.ru_utime, me.ru_stime + kids.ru_stime


if __name__ == "__main__":
    sys.exit(main())
