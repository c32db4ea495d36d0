"""Streams without a network: a sender and a receiver wired through lists of frames, so
single rules (NAK rate limit, retransmit linger, window, SETUP, reassembly) are checked
exactly and deterministically."""
import pytest

from aeronpy._frame import DATA, FrameReader, FrameWriter
from aeronpy.transport.counters import TransportCounters
from aeronpy.transport.streams import BACK_PRESSURED, StreamConfig, StreamReceiver, StreamSender

MS = 1_000_000
CFG = StreamConfig(mtu_bytes=128, window_bytes=1024, send_buffer_bytes=4096,
                   max_message_bytes=2048, nak_retry_ns=5 * MS, retransmit_linger_ns=2 * MS)


class Wire:
    def __init__(self):
        self.frames = []

    def __call__(self, frame):
        self.frames.append(bytes(frame))

    def take(self):
        out, self.frames = self.frames, []
        return out


def make(epoch=42):
    to_rx, to_tx = Wire(), Wire()
    cs, cr = TransportCounters(), TransportCounters()
    tx = StreamSender(FrameWriter(1, 0, 1, epoch), to_rx, CFG, cs)
    rx = StreamReceiver(epoch, FrameWriter(1, 1, 1, 7), to_tx, CFG, cr)
    return tx, rx, to_rx, to_tx, cs, cr


def deliver(rx, frames, got, now=0):
    r = FrameReader()
    for f in frames:
        if r.read(f) == DATA:
            rx.on_data(r.position, r.fragment_flags, r.message_length, r.payload(f),
                       lambda pid, m: got.append(bytes(m)), 0, now)
        else:
            rx.on_heartbeat(r.position, now)


def control(tx, frames, now=0):
    r = FrameReader()
    for f in frames:
        t = r.read(f)
        if t == 2:
            tx.on_nak(r.position, r.length, now)
        elif t == 3:
            tx.on_status(r.position, r.length, now)


def test_fragmentation_and_window_limit():
    tx, rx, to_rx, to_tx, cs, cr = make()
    msg = (bytes(range(250)) * 8)                      # 2000 bytes in 88-byte fragments
    assert tx.offer(msg, 0) == 2000
    frames = to_rx.take()
    assert len(frames) == 1024 // tx.max_fragment_bytes   # the rest waits for the window
    assert tx.sent_position <= CFG.window_bytes
    got = []
    deliver(rx, frames, got)
    control(tx, to_tx.take())                          # STATUS at window/4 opens the window
    for _ in range(5):
        deliver(rx, to_rx.take(), got)
        control(tx, to_tx.take())
        tx.do_work(0)
    assert got == [msg] and cr.messages_reassembled == 1


def test_gap_is_naked_once_then_retried_after_interval():
    tx, rx, to_rx, to_tx, cs, cr = make()
    for i in range(3):
        tx.offer(b"m%d" % i, 0)
    f0, f1, f2 = to_rx.take()
    got = []
    deliver(rx, [f0, f2], got, now=0)
    assert got == [b"m0"] and cr.naks_sent == 1
    deliver(rx, [f2], got, now=1 * MS)                  # duplicate: no new NAK
    rx.do_work(2 * MS)
    assert cr.naks_sent == 1 and cr.duplicates == 1
    rx.do_work(6 * MS)                                 # retry after nak_retry_ns
    assert cr.naks_sent == 2
    naks = [f for f in to_tx.take() if FrameReader().read(f) == 2]
    control(tx, naks[:1], now=10 * MS)
    control(tx, naks[1:], now=11 * MS)                 # within linger: not resent again
    assert cs.retransmits == 1
    deliver(rx, to_rx.take(), got, now=12 * MS)
    assert got == [b"m0", b"m1", b"m2"]


def test_back_pressure_when_send_buffer_full_and_release_on_status():
    tx, rx, to_rx, to_tx, cs, cr = make()
    n = 0
    while tx.offer(b"x" * 100, 0) != BACK_PRESSURED:
        n += 1
        assert n < 1000
    assert n * 100 <= CFG.send_buffer_bytes and cs.back_pressured == 1
    tx.on_status(tx.sent_position, CFG.window_bytes, 0)
    assert tx.offer(b"x" * 100, 0) > 0


def test_setup_moves_a_restarted_receiver_forward_and_skips_partial_message():
    tx, rx, to_rx, to_tx, cs, cr = make()
    tx.offer(b"a" * 50, 0)
    tx.on_status(50, CFG.window_bytes, 0)              # acknowledged by the old receiver
    tx.offer(b"b" * 300, 0)                             # fragmented
    frames = to_rx.take()
    got = []
    deliver(rx, frames[2:], got)                        # new image: gap from 0, NAK(0)
    control(tx, to_tx.take(), now=1 * MS)
    assert cs.setups_sent == 1
    r = FrameReader()
    setup = [f for f in to_rx.take() if r.read(f) == 5][0]
    r.read(setup)
    assert r.position == 50
    rx.on_setup(r.position, lambda pid, m: got.append(bytes(m)), 0, 2 * MS)
    assert cr.setup_jumps == 1 and got == []            # the held fragments are mid-message
    deliver(rx, frames[1:2], got)                       # the BEGIN fragment arrives (resent)
    assert got == [b"b" * 300]


def test_out_of_order_buffer_bounded_by_window():
    tx, rx, to_rx, to_tx, cs, cr = make()
    got = []
    w = FrameWriter(1, 0, 1, 42)
    far = w.data(CFG.window_bytes + 10, 3, 5, b"later")
    deliver(rx, [far], got)
    assert cr.drops["beyond_window"] == 1 and got == []


def test_config_validation():
    with pytest.raises(ValueError):
        StreamConfig(mtu_bytes=20)
    with pytest.raises(ValueError):
        StreamConfig(window_bytes=100)
    with pytest.raises(ValueError):
        StreamConfig(max_message_bytes=10 << 20, send_buffer_bytes=1 << 20)


def test_reassembly_room_grows_with_the_fragments_not_the_declared_length():
    """One datagram declaring a 4 MiB message once made the receiver allocate 4 MiB at once
    (an unauthenticated client could pin gigabytes with kilobytes). The room now starts small
    and doubles as fragments arrive, capped at the declared length; a whole message still
    arrives intact (the control)."""
    big = StreamConfig(mtu_bytes=1408, window_bytes=8 * 1024 * 1024,
                       send_buffer_bytes=8 * 1024 * 1024, max_message_bytes=4 * 1024 * 1024)
    cs, cr = TransportCounters(), TransportCounters()
    to_rx, to_tx = Wire(), Wire()
    tx = StreamSender(FrameWriter(1, 0, 1, 42), to_rx, big, cs)
    rx = StreamReceiver(42, FrameWriter(1, 1, 1, 7), to_tx, big, cr)
    msg = bytes(range(256)) * (3 * 1024 * 1024 // 256 + 7)       # ~3 MiB in ~2,300 fragments
    assert tx.offer(msg, 0) == len(msg)
    frames = to_rx.take()
    got = []
    deliver(rx, frames[:1], got)                                  # the first fragment alone
    assert got == [] and len(rx._assembly) <= 16 * 1024
    deliver(rx, frames[1:], got)
    assert got == [msg] and cr.messages_reassembled == 1


def test_a_fragment_past_the_declared_length_drops_the_message():
    cs, cr = TransportCounters(), TransportCounters()
    rx = StreamReceiver(42, FrameWriter(1, 1, 1, 7), Wire(), CFG, cr)
    got = []
    rx.on_data(0, 1, 100, b"a" * 60, lambda pid, m: got.append(bytes(m)), 0, 0)   # BEGIN
    rx.on_data(60, 0, 100, b"b" * 60, lambda pid, m: got.append(bytes(m)), 0, 0)  # 120 > 100
    assert got == [] and cr.drops["malformed"] == 1
