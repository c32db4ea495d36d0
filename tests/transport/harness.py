"""Test harness for the transport: a lossy UDP proxy on loopback and bounded pump loops.

The proxy sits between two transports and drops, duplicates and reorders datagrams with a
seeded ``random.Random``, so faults are injected at the socket layer without any hook in the
code under test. Every loop here is bounded by an iteration count and a wall-clock deadline.
"""
from __future__ import annotations

import random
import socket
import time
from typing import Callable, Iterable

from aeronpy.transport import BACK_PRESSURED, UdpTransport

LOOPBACK = "127.0.0.1"


class LossyProxy:
    """Forwards datagrams arriving on its own port to ``target`` with injected faults."""

    def __init__(self, target: tuple, rng: random.Random, drop: float = 0.0,
                 duplicate: float = 0.0, reorder: float = 0.0, max_held: int = 16,
                 record: bool = False):
        self.target = target
        self.rng = rng
        self.drop, self.duplicate, self.reorder = drop, duplicate, reorder
        self.max_held = max_held
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)
        self.held: list[bytes] = []
        self.recorded: list[bytes] = [] if record else None
        self.seen = self.dropped = self.duplicated = self.reordered = self.forwarded = 0

    @property
    def address(self) -> tuple:
        return self.sock.getsockname()

    def _forward(self, data: bytes) -> None:
        try:
            self.sock.sendto(data, self.target)
            self.forwarded += 1
        except OSError:
            pass   # a full buffer is one more loss

    def pump(self, limit: int = 512) -> int:
        rng = self.rng
        n = 0
        for _ in range(limit):
            try:
                data, _ = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            n += 1
            self.seen += 1
            if self.recorded is not None:
                self.recorded.append(data)
            if rng.random() < self.drop:
                self.dropped += 1
                continue
            copies = 2 if rng.random() < self.duplicate else 1
            self.duplicated += copies - 1
            for _ in range(copies):
                if rng.random() < self.reorder:
                    self.held.append(data)
                    self.reordered += 1
                else:
                    self._forward(data)
        while self.held and (len(self.held) > self.max_held or rng.random() < 0.3):
            self._forward(self.held.pop(rng.randrange(len(self.held))))
        return n

    def close(self) -> None:
        self.sock.close()


class Endpoint:
    """A transport plus what it received, per peer, as bytes."""

    def __init__(self, transport: UdpTransport):
        self.t = transport
        self.received: dict[int, list[bytes]] = {}
        self.outbox: dict[int, list[bytes]] = {}

    def on_message(self, peer_id: int, message: memoryview) -> None:
        self.received.setdefault(peer_id, []).append(bytes(message))

    def got(self, peer_id: int) -> list:
        return self.received.get(peer_id, [])

    def queue(self, peer_id: int, messages: Iterable[bytes]) -> None:
        self.outbox.setdefault(peer_id, []).extend(messages)

    def offer_pending(self) -> None:
        """Offer queued messages until back pressure (the caller's retry loop)."""
        for peer_id, box in self.outbox.items():
            i = 0
            while i < len(box):
                r = self.t.send(peer_id, box[i])
                if r == BACK_PRESSURED:
                    break
                assert r > 0, r
                i += 1
            del box[:i]

    def step(self) -> int:
        self.offer_pending()
        work = self.t.poll(self.on_message, 256)
        return work + self.t.do_work()


def run_until(predicate: Callable[[], bool], endpoints, proxies=(), timeout_s: float = 20.0,
              max_iterations: int = 500_000) -> bool:
    """Drive every endpoint and proxy until ``predicate()`` or a bound is hit."""
    deadline = time.monotonic() + timeout_s
    for i in range(max_iterations):
        work = 0
        for e in endpoints:
            work += e.step()
        for p in proxies:
            work += p.pump()
        if predicate():
            return True
        if i % 64 == 0 and time.monotonic() > deadline:
            return False
        if not work and endpoints:
            endpoints[0].t.wait_readable(200_000)   # idle: 0.2 ms
    return False


def check_exactly_once_in_order(sent: list, received: list) -> None:
    """Raise AssertionError unless ``received`` is exactly ``sent`` (no loss/dup/reorder)."""
    if received == sent:
        return
    for i, (a, b) in enumerate(zip(sent, received)):
        if a != b:
            raise AssertionError(f"message {i} differs: sent {a[:16]!r}.. got {b[:16]!r}..")
    raise AssertionError(f"sent {len(sent)} messages, received {len(received)}")


def numbered(count: int, rng: random.Random, max_size: int = 3000) -> list:
    """``count`` distinct messages of random sizes (some larger than the MTU)."""
    out = []
    for i in range(count):
        size = rng.choice((8, 32, 200, 1024, max_size)) if max_size > 8 else 8
        head = i.to_bytes(8, "little")
        out.append(head + rng.randbytes(max(0, rng.randrange(size) - 8)))
    return out


def pair(cluster_id=7, secret=None, use_mmsg=True, via=None, config=None, epochs=(None, None)):
    """Two member transports 0 and 1 on loopback; ``via(target) -> proxy`` interposes proxies."""
    a = UdpTransport(LOOPBACK, 0, cluster_id, 0, secret=secret, use_mmsg=use_mmsg, config=config,
                     epoch=epochs[0])
    b = UdpTransport(LOOPBACK, 0, cluster_id, 1, secret=secret, use_mmsg=use_mmsg, config=config,
                     epoch=epochs[1])
    proxies = []
    if via is not None:
        pab, pba = via(b.local_address), via(a.local_address)
        proxies = [pab, pba]
        a.add_peer(1, *pab.address)
        b.add_peer(0, *pba.address)
    else:
        a.add_peer(1, *b.local_address)
        b.add_peer(0, *a.local_address)
    return Endpoint(a), Endpoint(b), proxies


class FakeClock:
    """A transport clock the test moves by hand (``clock.now += ...``), in ns."""

    def __init__(self, now_ns: int = 10_000_000):
        self.now = now_ns

    def __call__(self) -> int:
        return self.now
