"""The compiled streams (aeronpy._streams) against the Python they were ported from: the
stream classes against the reference model (reference_streams.py, the Python classes as they
were), the compiled ``DatagramWalker`` against ``reference_streams.reference_on_datagram``. Random inputs (in
order, out of order, duplicated, lost, fragmented, malformed, forged) go to both; everything
observable (returns, exceptions, emitted frames, deliveries, counters, positions) must match.
Each comparison has a negative control: a deliberately wrong implementation it catches.
"""
import random

import pytest

from aeronpy._frame import DATA, FrameReader, FrameWriter
from aeronpy._udp import UdpSocket, address_key
from aeronpy.transport.counters import TransportCounters
from aeronpy.transport.streams import (
    BACK_PRESSURED, CLOSED, NOT_CONNECTED, StreamConfig, StreamReceiver, StreamSender,
)
from aeronpy.transport.udp import UdpTransport

from . import reference_streams as reference

MS = 1_000_000
CFG = StreamConfig(mtu_bytes=160, window_bytes=1024, send_buffer_bytes=4096,
                   max_message_bytes=2048, nak_retry_ns=5 * MS, retransmit_linger_ns=2 * MS)
SEEDS = range(40)


def _state(obj, names):
    return {n: getattr(obj, n) for n in names}


# ---------------------------------------------------------------- sender
SENDER_FIELDS = ("tail_position", "sent_position", "acked_position", "receiver_window",
                 "low_position", "_head", "_next", "_last_emit_ns", "_quiet_heartbeats")


class _DoubleCountingSender(reference.StreamSender):
    """Negative control: an implementation that counts a one-frame message twice."""

    def offer(self, payload, now_ns):
        result = super().offer(payload, now_ns)
        if len(payload) < 100 and isinstance(result, int) and result > 0:
            self._c.messages_out += 1
        return result


def _sender_trace(seed: int, cls, secret=None) -> list:
    rng = random.Random(seed)
    emitted, counters = [], TransportCounters()
    s = cls(FrameWriter(1, 0, 1, 42, secret), emitted.append, CFG, counters)
    offer = s.offer
    trace, now = [], 0
    for _ in range(300):
        now += rng.randrange(0, 3 * MS)
        op = rng.random()
        if op < 0.7:
            n = rng.choice([0, 1, 5, 32, 100, 120, 130, 200, 500, 2048, 2049])
            kind = rng.choice([bytes, bytes, bytes, bytearray, memoryview])
            payload = kind(rng.randbytes(n))
            try:
                trace.append(("offer", offer(payload, now)))
            except Exception as exc:   # the same error either way
                trace.append(("offer", type(exc).__name__))
        elif op < 0.85:
            consumed = rng.randint(s.acked_position, s.sent_position + (8 if rng.random() < 0.1 else 0))
            trace.append(("status", s.on_status(consumed, rng.choice([0, 160, 512, 1024]), now)))
        elif op < 0.95:
            position = rng.randint(0, max(0, s.sent_position))
            trace.append(("nak", s.on_nak(position, rng.randint(1, 400), now)))
        else:
            trace.append(("work", s.do_work(now)))
        trace.append(_state(s, SENDER_FIELDS))
    trace.append(emitted)
    trace.append(counters.snapshot())
    return trace


@pytest.mark.parametrize("secret", [None, b"k" * 16])
def test_compiled_sender_matches_the_reference(secret):
    for seed in SEEDS:
        assert _sender_trace(seed, StreamSender, secret) == \
            _sender_trace(seed, reference.StreamSender, secret), seed


def test_sender_comparison_catches_a_wrong_sender():
    assert _sender_trace(1, _DoubleCountingSender) != _sender_trace(1, StreamSender)


# ---------------------------------------------------------------- receiver
RECEIVER_FIELDS = ("expected_position", "high_position", "_last_status_position", "_pending_bytes")


class _StatusForgettingReceiver(reference.StreamReceiver):
    """Negative control: a fast path that forgets the STATUS due after a delivery."""

    def on_data(self, position, fragment_flags, message_length, payload, handler, peer_id, now_ns):
        if position == self.expected_position and fragment_flags == 3 and \
                self._assembly is None and not self._pending:
            self.expected_position = self.high_position = position + len(payload)
            self._c.messages_in += 1
            handler(peer_id, payload)
            return 1
        return super().on_data(position, fragment_flags, message_length, payload, handler,
                               peer_id, now_ns)


def _lossy(rng, frames) -> list:
    """Frames lost, duplicated and reordered on the way."""
    out = []
    for f in frames:
        r = rng.random()
        if r < 0.05:
            continue
        out.append(f)
        if r < 0.1:
            out.append(f)
    for _ in range(len(out) // 8):
        i = rng.randrange(len(out) - 1) if len(out) > 1 else 0
        out[i:i + 2] = out[i:i + 2][::-1]
    return out


def _receiver_trace(seed: int, cls) -> list:
    """A real sender and the receiver under test joined by a lossy wire both ways (NAKs and
    STATUS go back), with SETUP jumps now and then; the trace of the receiver's side."""
    rng = random.Random(seed)
    to_rx, to_tx, got, counters = [], [], [], TransportCounters()
    tx = StreamSender(FrameWriter(1, 0, 1, 42), to_rx.append, CFG, TransportCounters())
    rx = cls(42, FrameWriter(1, 1, 1, 7), to_tx.append, CFG, counters)
    on_data = rx.on_data
    reader, writer, trace, now = FrameReader(), FrameWriter(1, 0, 1, 42), [], 0

    def handler(peer_id, message):
        got.append((peer_id, bytes(message)))
    for _ in range(200):
        now += rng.randrange(0, 3 * MS)
        for _ in range(rng.randrange(5)):
            tx.offer(rng.randbytes(rng.choice([1, 20, 32, 32, 60, 100, 300])), now)
        tx.do_work(now)
        frames = _lossy(rng, to_rx)
        to_rx.clear()
        ahead = [p for p in tx._positions[tx._head:tx._next] if p > rx.expected_position]
        if ahead and rng.random() < 0.03:     # a jump to a frame boundary the sender holds
            frames.insert(0, writer.setup(rng.choice(ahead)))
        for frame in frames:
            kind = reader.read(frame)
            if kind == DATA:
                trace.append(on_data(reader.position, reader.fragment_flags,
                                     reader.message_length, reader.payload(frame), handler, 3, now))
            elif kind == 4:
                rx.on_heartbeat(reader.position, now)
            else:
                trace.append(rx.on_setup(reader.position, handler, 3, now))
        trace.append(rx.do_work(now))
        trace.append(_state(rx, RECEIVER_FIELDS))
        for frame in _lossy(rng, to_tx):
            kind = reader.read(frame)
            if kind == 3:
                tx.on_status(reader.position, reader.length, now)
            else:
                tx.on_nak(reader.position, reader.length, now)
        to_tx.clear()
    return trace + [got, counters.snapshot()]


def test_compiled_receiver_matches_the_reference():
    for seed in SEEDS:
        fast = _receiver_trace(seed, StreamReceiver)
        assert fast == _receiver_trace(seed, reference.StreamReceiver), seed
        assert fast[-1]["messages_in"] > 100 and fast[-1]["messages_reassembled"] > 5
        assert fast[-1]["naks_sent"] > 0 and fast[-1]["duplicates"] > 0


def test_receiver_comparison_catches_a_wrong_receiver():
    assert _receiver_trace(1, _StatusForgettingReceiver) != _receiver_trace(1, StreamReceiver)


def test_a_message_counts_as_delivered_when_the_handler_raises():
    counters = TransportCounters()
    rx = StreamReceiver(42, FrameWriter(1, 1, 1, 7), [].append, CFG, counters)

    def handler(_peer, _message):
        raise RuntimeError("service failed")
    with pytest.raises(RuntimeError):
        rx.on_data(0, 3, 4, b"abcd", handler, 0, 0)
    assert rx.expected_position == 4 and counters.messages_in == 1


# ---------------------------------------------------------------- datagram walk
def _transport_pair(secret, sink_port):
    pair = []
    for _ in range(2):
        t = UdpTransport("127.0.0.1", 0, cluster_id=5, sender_id=1, secret=secret, epoch=77,
                         config=CFG, mtu=CFG.mtu_bytes, accept_clients=True, max_clients=3)
        t.add_peer(0, "127.0.0.1", sink_port)
        t._now_ns = 0
        pair.append(t)
    return pair


def _datagrams(rng, secret, sink_key):
    """Datagrams from member 0 (and its restarts), clients and strangers, some mangled; MACed
    (with a secret) for member 1, the sink."""
    sources = [(sink_key, FrameWriter(5, 0, 1001, 11, secret, destination=1)),
               (sink_key, FrameWriter(5, 0, 1001, 12, secret, destination=1)),                  # a restart
               (sink_key + 1, FrameWriter(5, -1, 1001, 21, secret, destination=1)),             # clients
               (sink_key + 2, FrameWriter(5, -1, 1001, 22, secret, destination=1)),
               (sink_key + 3, FrameWriter(5, 9, 1001, 31, secret, destination=1)),              # unknown member
               (sink_key + 1, FrameWriter(6, -1, 1001, 21, secret, destination=1)),             # wrong cluster
               (sink_key + 1, FrameWriter(5, -1, 1002, 21, secret, destination=1)),             # wrong stream
               (sink_key + 2, FrameWriter(5, -1, 1001, 22, b"other" if secret else None))]
    weights = [30, 3, 20, 10, 2, 2, 2, 2]
    tails, held = {}, {}
    out = []
    for _ in range(400):
        i = rng.choices(range(len(sources)), weights)[0]
        key, w = sources[i]
        frames = []
        for _ in range(rng.choice([1, 1, 2, 3, 6])):
            tail = tails.get(i, 0)
            r = rng.random()
            if r < 0.75:
                n = rng.choice([1, 8, 32, 32, 60])
                if held.get(i) and rng.random() < 0.5:
                    frames.append(held.pop(i))           # a late (retransmitted) frame
                    continue
                frame = w.data(tail, 3, n, rng.randbytes(n))
                tails[i] = tail + n
                r = rng.random()
                if r < 0.05:
                    held[i] = frame                      # sent later: a gap, then repaired
                    continue
                if r < 0.1:
                    frames.append(w.data(max(0, tail - 40), 3, n, rng.randbytes(n)))  # replay
                frames.append(frame)
            elif r < 0.8:
                frames.append(w.data(tail, 1, 100, rng.randbytes(50)))   # a first fragment
                tails[i] = tail + 50
            elif r < 0.85:
                frames.append(w.heartbeat(tail + rng.choice([0, 0, 30])))
            elif r < 0.9:
                jump = rng.choice([0, 64])
                frames.append(w.setup(tail + jump))
                tails[i] = tail + jump
            elif r < 0.95:
                frames.append(w.status(rng.choice([77, 77, 78]), rng.randrange(64), 1024))
            else:
                frames.append(w.nak(rng.choice([77, 78]), rng.randrange(64), rng.randint(1, 64)))
        if not frames:
            continue
        datagram = bytearray(b"".join(frames))
        r = rng.random()
        if r < 0.05:
            datagram[rng.randrange(len(datagram))] ^= 1 << rng.randrange(8)
        elif r < 0.08:
            del datagram[rng.randrange(len(datagram)):]
        elif r < 0.09:
            datagram = bytearray(rng.randbytes(rng.randrange(0, 80)))
        out.append((key, bytes(datagram)))
    return out


def _walk_trace(t, use_compiled: bool, datagrams, rng, python_walk=None) -> list:
    got, trace = [], []
    t._handler = lambda peer_id, message: got.append((peer_id, bytes(message)))
    python_walk = python_walk or (lambda key, dg: reference.reference_on_datagram(t, key, dg))
    walk = t._on_datagram_bound if use_compiled else python_walk
    for key, datagram in datagrams:
        t._now_ns += rng.randrange(0, 3 * MS)
        walk(key, memoryview(datagram))
        trace.append(sorted((p, tuple(sorted(t.stream_state(p).items()))) for p in t.peer_ids()))
    counters = t.counters.snapshot()
    return trace + [got, counters, t.socket.queued]


@pytest.mark.parametrize("secret", [None, b"s" * 16])
def test_compiled_datagram_walk_matches_the_reference_loop(secret):
    with UdpSocket("127.0.0.1", 0) as sink:
        sink_port = sink.local_address[1]
        sink_key = address_key("127.0.0.1", sink_port)
        for seed in range(8):
            datagrams = _datagrams(random.Random(seed), secret, sink_key)
            a, b = _transport_pair(secret, sink_port)
            try:
                fast = _walk_trace(a, True, datagrams, random.Random(seed))
                slow = _walk_trace(b, False, datagrams, random.Random(seed))
            finally:
                a.close()
                b.close()
            assert fast == slow, seed
            assert fast[-2]["messages_in"] > 100 and sum(
                v for k, v in fast[-2].items() if k.startswith("drop_")) > 10


def test_datagram_walk_comparison_catches_a_wrong_walker():
    with UdpSocket("127.0.0.1", 0) as sink:
        sink_port = sink.local_address[1]
        datagrams = _datagrams(random.Random(3), None, address_key("127.0.0.1", sink_port))
        a, b = _transport_pair(None, sink_port)
        try:
            # wrong on purpose: a walker that stops after the first frame of a datagram
            walker = b._on_datagram_bound
            wrong = lambda key, dg: walker(key, dg[:int.from_bytes(dg[:4], "little")])  # noqa: E731
            assert _walk_trace(a, True, datagrams, random.Random(3)) != \
                _walk_trace(b, False, datagrams, random.Random(3), python_walk=wrong)
        finally:
            a.close()
            b.close()


def test_compiled_send_returns_the_stream_codes():
    cfg = StreamConfig(mtu_bytes=160, window_bytes=1024, send_buffer_bytes=256, max_message_bytes=128)
    with UdpTransport("127.0.0.1", 0, cluster_id=5, sender_id=1, config=cfg, mtu=160) as t:
        t.add_peer(0, "127.0.0.1", t.local_address[1])
        assert t.send(7, b"x") == NOT_CONNECTED
        assert t.send(0, b"a" * 100) == 100 and t.send(0, b"b" * 100) == 200
        assert t.send(0, b"c" * 100) == BACK_PRESSURED
        t.close()
        assert t.send(0, b"x") == CLOSED
