"""Several whole frames per datagram (Aeron's batching): a burst of small messages costs one
datagram per MTU, not one per message, and every stream guarantee still holds."""
import random

import pytest

from aeronpy._frame import UNFRAGMENTED, FrameError, FrameReader, FrameWriter
from aeronpy._udp import UdpSocket
from tests.transport.harness import (
    LossyProxy, check_exactly_once_in_order, pair, run_until,
)

PATHS = pytest.mark.parametrize("use_mmsg", [True, False], ids=["mmsg", "portable"])


def drain(sock, tries=200):
    got = []
    for _ in range(tries):
        if sock.poll(lambda k, m: got.append(bytes(m)), 1024) == 0 and got:
            break
        sock.wait_readable(1_000_000)
    return got


@PATHS
def test_frames_to_one_peer_share_datagrams_up_to_the_limit(use_mmsg):
    with UdpSocket(max_datagram_bytes=100, use_mmsg=use_mmsg) as rx, \
            UdpSocket(max_datagram_bytes=100, use_mmsg=use_mmsg) as tx:
        key = (0x7F000001 << 16) | rx.local_address[1]
        frames = [bytes([i]) * 30 for i in range(7)]      # 3 fit in 100 bytes, the 4th does not
        for f in frames:
            assert tx.queue_frame(key, f) == 1
        assert tx.queued == 3                              # 30+30+30 | 30+30+30 | 30
        assert tx.flush() == 3
        got = drain(rx)
        assert got == [b"".join(frames[0:3]), b"".join(frames[3:6]), frames[6]]
        assert tx.counters()["frames_coalesced"] == 4
        assert tx.queue_frame(key, b"x" * 101) == 0        # one frame above the limit: refused
        assert tx.counters()["oversize_out"] == 1


def test_order_per_peer_is_kept_when_peers_interleave():
    with UdpSocket() as rx1, UdpSocket() as rx2, UdpSocket() as tx:
        k1 = (0x7F000001 << 16) | rx1.local_address[1]
        k2 = (0x7F000001 << 16) | rx2.local_address[1]
        for i in range(6):
            tx.queue_frame(k1 if i % 2 == 0 else k2, b"%d;" % i)
        assert tx.queued == 2                              # one datagram per peer
        tx.flush()
        assert drain(rx1) == [b"0;2;4;"]
        assert drain(rx2) == [b"1;3;5;"]


def test_plain_queue_never_coalesces():
    with UdpSocket() as rx, UdpSocket() as tx:
        key = (0x7F000001 << 16) | rx.local_address[1]
        for i in range(5):
            tx.queue(key, b"m%d" % i)
        assert tx.queued == 5
        tx.flush()
        assert drain(rx) == [b"m%d" % i for i in range(5)]


def test_reader_walks_packed_frames_and_checks_each_length():
    w = FrameWriter(7, 0, 1001, 5)
    frames = [w.data(0, UNFRAGMENTED, 3, b"abc"), w.heartbeat(3), w.status(9, 12, 4096)]
    datagram = b"".join(frames)
    r = FrameReader()
    offset, seen = 0, []
    while offset < len(datagram):
        seen.append(r.read_at(datagram, offset))
        if seen[-1] == 1:
            assert bytes(r.payload(datagram)) == b"abc"
        offset = r.frame_end
    assert seen == [1, 4, 3] and offset == len(datagram)
    with pytest.raises(FrameError) as err:
        r.read(datagram)                                   # read(): exactly one frame
    assert err.value.reason == "length"
    with pytest.raises(FrameError) as err:
        r.read_at(datagram[:-1], len(frames[0]) + len(frames[1]))   # cut last frame
    assert err.value.reason == "length"


def test_packed_frames_carry_their_own_mac():
    secret = b"k" * 16
    w = FrameWriter(7, 0, 1001, 5, secret=secret)
    a, b = w.heartbeat(1), w.heartbeat(2)
    datagram = a + b
    r = FrameReader(secret)
    assert r.read_at(datagram, 0) == 4 and r.mac_ok(datagram)
    assert r.read_at(datagram, r.frame_end) == 4 and r.mac_ok(datagram) and r.position == 2
    forged = bytearray(datagram)
    forged[-1] ^= 1                                        # break the second frame's MAC
    assert r.read_at(bytes(forged), len(a)) == 4 and not r.mac_ok(bytes(forged))


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "one-per-datagram"])
def test_a_burst_of_small_messages_uses_fewer_datagrams(coalesce):
    a, b, _ = pair()
    a.t.coalesce = b.t.coalesce = coalesce
    # peers already exist with their emitters: rebuild them with the chosen mode
    for t in (a.t, b.t):
        for peer_id in list(t.peer_ids()):
            address = t.peer_address(peer_id)
            t.remove_peer(peer_id)
            t.add_peer(peer_id, *address)
    try:
        sent = [b"msg-%04d" % i for i in range(300)]
        a.queue(1, sent)
        assert run_until(lambda: len(b.got(0)) == len(sent), [a, b], timeout_s=10)
        check_exactly_once_in_order(sent, b.got(0))
        datagrams = a.t.socket_counters()["datagrams_out"]
        if coalesce:
            assert datagrams < len(sent) // 10, datagrams     # ~28 frames per 1408-byte datagram
            assert a.t.socket_counters()["frames_coalesced"] > 0
        else:
            assert datagrams >= len(sent)
            assert a.t.socket_counters()["frames_coalesced"] == 0
    finally:
        a.t.close()
        b.t.close()


def test_loss_of_a_packed_datagram_is_repaired():
    rng = random.Random(11)
    a, b, proxies = pair(via=lambda target: LossyProxy(target, rng, drop=0.2, reorder=0.1))
    try:
        sent = [b"m%05d" % i for i in range(3000)]
        a.queue(1, sent)
        assert run_until(lambda: len(b.got(0)) >= len(sent), [a, b], proxies, timeout_s=30)
        check_exactly_once_in_order(sent, b.got(0))
        assert proxies[0].dropped > 0 and a.t.counters.retransmits > 0
        assert a.t.socket_counters()["frames_coalesced"] > 0
    finally:
        for p in proxies:
            p.close()
        a.t.close()
        b.t.close()


def test_garbage_after_a_good_frame_is_dropped_once_and_the_good_frame_delivered():
    import socket as _socket
    a, b, _ = pair()
    raw = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        w = FrameWriter(7, 0, 1001, a.t.epoch)
        raw.sendto(w.data(0, UNFRAGMENTED, 5, b"first") + b"\x01\x02garbage", b.t.local_address)
        assert run_until(lambda: b.got(0) == [b"first"], [a, b], timeout_s=5)
        assert run_until(lambda: b.t.counters.drops["malformed"] == 1, [a, b], timeout_s=5)
    finally:
        raw.close()
        a.t.close()
        b.t.close()
