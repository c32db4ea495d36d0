"""Review fuzz of the compiled datagram walk: forged, extreme and inconsistent frames of every
type (positions up to the int64 limit, lying message lengths, wrong epochs, strangers,
clients), packed several to a datagram, never raise out of the walk or the duty cycle and
keep every per-peer buffer within its bound. And a member's real stream, lossy and mixed
with such junk from elsewhere, is still delivered exactly once, in order."""
import random

import pytest

from aeronpy._frame import FrameReader, FrameWriter
from aeronpy._udp import UdpSocket, address_key
from aeronpy.transport import StreamConfig, UdpTransport
from aeronpy.transport.counters import TransportCounters
from aeronpy.transport.streams import StreamSender

MS = 1_000_000
CFG = StreamConfig(mtu_bytes=200, window_bytes=2048, send_buffer_bytes=8192,
                   max_message_bytes=4096)
TOP = (1 << 63) - 1


def _junk_frames(rng, w, own_epoch=77, near=()):
    """Frames of every type from writer ``w``; positions small, huge, at the int64 limit,
    or at one of the positions ``near`` (where a receiver expects the next frame)."""
    frames = []
    for _ in range(rng.choice([1, 1, 2, 4])):
        k = rng.random()
        pos = rng.choice([0, rng.randrange(0, 5000), rng.randrange(0, 1 << 62),
                          TOP - rng.randrange(200)] + list(near))
        if k < 0.5:
            n = rng.randrange(1, 150)
            fl = rng.choice([0, 1, 2, 3])
            ml = n if fl == 3 else rng.choice([n, n + rng.randrange(0, 5000), 4096])
            frames.append(w.data(pos, fl, ml, rng.randbytes(n)))
        elif k < 0.65:
            frames.append(w.nak(rng.choice([own_epoch, own_epoch + 1]), pos,
                                rng.randint(1, (1 << 31) - 1)))
        elif k < 0.8:
            frames.append(w.status(rng.choice([own_epoch, own_epoch + 1]), pos,
                                   rng.randint(0, (1 << 31) - 1)))
        elif k < 0.9:
            frames.append(w.heartbeat(pos))
        else:
            frames.append(w.setup(pos))
    return frames


def _check_bounds(t):
    window_frames = max(CFG.window_bytes >> 4, 1024)
    for p in t._peers.values():
        im = p.image
        if im is not None:
            assert 0 <= im.expected_position <= TOP
            assert im._pending_bytes <= CFG.window_bytes
            assert len(im._pending) <= window_frames
            assert im._pending_bytes == sum(len(v[2]) for v in im._pending.values())
            if im._assembly is not None:
                assert len(im._assembly) <= CFG.max_message_bytes
        s = p.sender
        assert s.buffered_bytes <= CFG.send_buffer_bytes
        assert len(s._recent_retransmits) <= 4096 + 64
    assert len(t.client_ids()) <= t.max_clients


@pytest.mark.parametrize("secret", [None, b"k" * 16])
def test_forged_and_extreme_frames_never_raise_and_stay_bounded(secret):
    with UdpSocket("127.0.0.1", 0) as sink:
        port = sink.local_address[1]
        for seed in range(12):
            rng = random.Random(seed)
            t = UdpTransport("127.0.0.1", 0, 5, 1, secret=secret, epoch=77, config=CFG,
                             mtu=CFG.mtu_bytes, accept_clients=True, max_clients=4,
                             client_timeout_ns=50 * MS)
            try:
                t.add_peer(0, "127.0.0.1", port)
                t.add_peer(2, "127.0.0.1", port + 1)
                t._handler = lambda pid, m: None
                keys = [address_key("127.0.0.1", port + i) for i in range(6)]
                writers = [FrameWriter(5, s, 1001, e, secret, destination=1)   # t is member 1
                           for s in (0, 2, -1, -1, 3) for e in (11, 12, 13)]
                now = 0
                for _ in range(1500):
                    now += rng.randrange(0, 3 * MS)
                    t._now_ns = now
                    near = [p.image.expected_position for p in t._peers.values()
                            if p.image is not None]
                    frames = _junk_frames(rng, rng.choice(writers), near=near)
                    t._on_datagram_bound(rng.choice(keys), memoryview(b"".join(frames)))
                    if rng.random() < 0.3:
                        t.do_work(now)          # STATUS / NAK / HEARTBEAT timers: never raise
                    _check_bounds(t)
                t.do_work(now + 10 * CFG.idle_interval_ns)
                assert t.counters.dropped > 100
            finally:
                t.close()


@pytest.mark.parametrize("secret", [None, b"k" * 16])
def test_a_real_stream_survives_loss_and_junk_from_elsewhere(secret):
    """Member 0's real stream to us (lost, duplicated, reordered) mixed with junk from
    strangers, clients, other members and (with a secret) bad-MAC frames from member 0's own
    address: every message exactly once, in order."""
    with UdpSocket("127.0.0.1", 0) as sink:
        port = sink.local_address[1]
        member_key = address_key("127.0.0.1", port)
        rng = random.Random(5)
        t = UdpTransport("127.0.0.1", 0, 5, 1, secret=secret, epoch=77, config=CFG,
                         mtu=CFG.mtu_bytes, accept_clients=True, max_clients=4)
        try:
            t.add_peer(0, "127.0.0.1", port)
            t.add_peer(2, "127.0.0.1", port + 1)
            got = []
            t._handler = lambda pid, m: got.append((pid, bytes(m)))
            real = FrameWriter(5, 0, 1001, 11, secret, destination=1)   # t is member 1
            wire = []
            tx = StreamSender(real, wire.append, CFG, TransportCounters())
            junk_writers = [FrameWriter(5, s, 1001, e, secret, destination=1) for s in (2, -1, 3) for e in (21, 22)]
            if secret:
                junk_writers.append(FrameWriter(5, 0, 1001, 11, b"wrong key"))
            strangers = [address_key("127.0.0.1", port + i) for i in range(1, 5)]
            sent = [rng.randbytes(rng.choice([1, 30, 150, 400, 3000])) for _ in range(300)]
            pending = list(sent)
            reader = FrameReader(secret, destination=0)      # t's NAK/STATUS to member 0
            now = 0
            for _ in range(20000):
                now += rng.randrange(0, 2 * MS)
                t._now_ns = now
                while pending and tx.offer(pending[0], now) > 0:
                    pending.pop(0)
                tx.do_work(now)
                frames, wire[:] = wire[:], []
                rng.shuffle(frames) if rng.random() < 0.2 else None
                for f in frames:
                    r = rng.random()
                    if r < 0.1:
                        continue                                   # lost
                    t._on_datagram_bound(member_key, memoryview(f))
                    if r < 0.15:
                        t._on_datagram_bound(member_key, memoryview(f))   # duplicated
                    if rng.random() < 0.3:
                        w = rng.choice(junk_writers)
                        key = member_key if w.sender_id == 0 else rng.choice(strangers)
                        t._on_datagram_bound(key, memoryview(b"".join(_junk_frames(rng, w))))
                t.do_work(now)
                # our answers to member 0 (NAK, STATUS) go back to its sender, lossy too
                while True:
                    n = sink.poll(lambda _k, d: feedback.append(bytes(d)), 64) \
                        if (feedback := []) is not None else 0
                    for d in feedback:
                        off = 0
                        while off < len(d):
                            kind = reader.read_at(d, off)
                            off = reader.frame_end
                            if rng.random() < 0.1:
                                continue
                            if kind == 2:
                                tx.on_nak(reader.position, reader.length, now)
                            elif kind == 3:
                                tx.on_status(reader.position, reader.length, now)
                    if n == 0:
                        break
                if not pending and len([m for p, m in got if p == 0]) == len(sent):
                    break
            assert [m for p, m in got if p == 0] == sent
        finally:
            t.close()
