"""Regression for what the bad-input process test found: one forged member frame with a new
epoch, sent from a stranger's address, used to retire the real member's stream for good (its
frames were then all dropped as "stale epoch", and a cluster lost its quorum for ever).

Two member transports on loopback, no secret (the MAC is what stops a stranger who can also
forge the source address; this is about one who cannot).
"""
from __future__ import annotations

import socket
import time

from aeronpy._frame import FrameWriter
from aeronpy.transport.udp import UdpTransport

LOOPBACK = "127.0.0.1"


def _pair():
    a = UdpTransport(LOOPBACK, 0, 7, 0, epoch=111)
    b = UdpTransport(LOOPBACK, 0, 7, 1, epoch=222)
    a.add_peer(1, *b.local_address)
    b.add_peer(0, *a.local_address)
    return a, b


def _deliver(a, b, messages, got, timeout_s: float = 5.0) -> bool:
    for m in messages:
        assert a.send(1, m) > 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(got) < len(messages):
        a.do_work()
        a.poll(lambda *_: None)
        b.poll(lambda peer, payload: got.append((peer, bytes(payload))))
        b.do_work()
    return len(got) == len(messages)


def test_forged_epoch_from_a_stranger_does_not_retire_the_real_member():
    a, b = _pair()
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        got = []
        assert _deliver(a, b, [b"before-%d" % i for i in range(10)], got)
        forged = FrameWriter(7, 0, a.stream_id, 999_999)       # member 0, an epoch it never had
        for frame in (forged.setup(0), forged.heartbeat(0), forged.data(0, 3, 4, b"evil")):
            stranger.sendto(frame, b.local_address)
        got.clear()
        assert _deliver(a, b, [b"after-%d" % i for i in range(10)], got), \
            f"member 0's stream stopped after a forged frame: {b.counters.snapshot()}"
        assert [m for _, m in got] == [b"after-%d" % i for i in range(10)]
        assert b.counters.drops["unknown_member"] >= 3
        assert b.counters.peer_restarts == 0
        assert b.stream_state(0)["peer_epoch"] == 111
    finally:
        stranger.close()
        a.close()
        b.close()


def test_a_member_that_really_restarts_is_still_recognised():
    """Control: a new epoch from the member's own address is a restart, as before."""
    a, b = _pair()
    port = a.local_address[1]
    try:
        got = []
        assert _deliver(a, b, [b"one"], got)
        a.close()
        a = UdpTransport(LOOPBACK, port, 7, 0, epoch=333)
        a.add_peer(1, *b.local_address)
        got.clear()
        assert _deliver(a, b, [b"two"], got)
        assert b.counters.peer_restarts == 1
        assert b.stream_state(0)["peer_epoch"] == 333
    finally:
        a.close()
        b.close()
