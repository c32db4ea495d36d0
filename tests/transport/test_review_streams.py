"""Review tests of the stream halves under faults: a handler that raises while held frames are
being drained, forged positions, and a sender restart in the middle of a reassembly.
No network: a sender and a receiver wired through lists, with a fake clock."""
import pytest

from aeronpy._frame import DATA, HEARTBEAT, FrameReader, FrameWriter
from aeronpy.transport.counters import TransportCounters
from aeronpy.transport.streams import StreamConfig, StreamReceiver, StreamSender
from tests.transport.test_streams import control

MS = 1_000_000
CFG = StreamConfig(mtu_bytes=128, window_bytes=1024, send_buffer_bytes=4096,
                   max_message_bytes=2048, nak_retry_ns=5 * MS, retransmit_linger_ns=2 * MS)


def make(epoch=42):
    to_rx, to_tx = [], []
    cs, cr = TransportCounters(), TransportCounters()
    tx = StreamSender(FrameWriter(1, 0, 1, epoch), to_rx.append, CFG, cs)
    rx = StreamReceiver(epoch, FrameWriter(1, 1, 1, 7), to_tx.append, CFG, cr)
    return tx, rx, to_rx, to_tx, cs, cr


def feed_rx(rx, frames, handler, now):
    r = FrameReader()
    for f in frames:
        t = r.read(f)
        if t == DATA:
            rx.on_data(r.position, r.fragment_flags, r.message_length, r.payload(f), handler, 0, now)
        elif t == HEARTBEAT:
            rx.on_heartbeat(r.position, now)
        else:
            rx.on_setup(r.position, handler, 0, now)


def feed_tx(tx, frames, now):
    control(tx, frames, now)           # NAK and STATUS frames to the sender


def pump(tx, rx, to_rx, to_tx, handler, now, steps=400, step_ns=MS, until=None):
    """Run both halves with a lossless wire for ``steps`` fake milliseconds (or until
    ``until()`` holds)."""
    for _ in range(steps):
        now += step_ns
        tx.do_work(now)
        frames, to_rx[:] = list(to_rx), []
        feed_rx(rx, frames, handler, now)
        rx.do_work(now)
        frames, to_tx[:] = list(to_tx), []
        feed_tx(tx, frames, now)
        if until is not None and until():
            break
    return now


def test_handler_exception_while_draining_held_frames_does_not_stall_the_stream():
    """poll()'s contract: a handler exception counts that message as delivered and the rest is
    repaired like any loss. A message held out of order and due next when the handler raised
    used to stay held for ever: the NAK of a gap of length 0 was never sent, and no frame came
    to drain it, so the stream stalled (and its sender back-pressured for good)."""
    tx, rx, to_rx, to_tx, cs, cr = make()
    got = []
    raise_on = {b"first"}

    def handler(_pid, message):
        m = bytes(message)
        if m in raise_on:
            raise_on.discard(m)
            raise RuntimeError("service failed")
        got.append(m)

    tx.offer(b"first", 0)
    tx.offer(b"second", 0)
    f1, f2 = to_rx[:]
    to_rx.clear()
    feed_rx(rx, [f2], handler, 0)              # held out of order
    with pytest.raises(RuntimeError):
        feed_rx(rx, [f1], handler, 0)          # delivered (raises); "second" now due next
    assert rx.expected_position == 5
    pump(tx, rx, to_rx, to_tx, handler, 0, steps=300)
    assert got == [b"second"]
    assert rx.expected_position == 11 and not rx._pending
    # and the stream still carries new messages
    tx.offer(b"third", 400 * MS)
    pump(tx, rx, to_rx, to_tx, handler, 400 * MS, steps=50)
    assert got == [b"second", b"third"]


def test_handler_exception_in_setup_drain_does_not_stall_the_stream():
    tx, rx, to_rx, to_tx, cs, cr = make()
    got = []
    calls = []

    def handler(_pid, message):
        calls.append(bytes(message))
        if len(calls) == 1:
            raise RuntimeError("service failed")
        got.append(bytes(message))

    for m in (b"a1", b"b2", b"c3"):
        tx.offer(m, 0)
    fa, fb, fc = to_rx[:]
    to_rx.clear()
    feed_rx(rx, [fb, fc], handler, 0)                  # held at 2 and 4
    w = FrameWriter(1, 0, 1, 42)
    with pytest.raises(RuntimeError):
        rx.on_setup(2, handler, 0, 0)                  # jump to 2: b2 raises, c3 still held
    pump(tx, rx, to_rx, to_tx, handler, 0, steps=300)
    assert got == [b"c3"] and rx.expected_position == 6
    del w, fa


def test_a_forged_heartbeat_position_is_not_nakked_for_ever():
    """A HEARTBEAT claiming a position the sender never reached (forged, bit-flipped, or a
    spoofed "client") made the receiver NAK a gap that can never be filled every nak_retry_ns
    for as long as the peer lives: an endless NAK stream (2000 NAKs from one datagram over a
    client's 10 s timeout). Now the gap is at most a window deep and closes at the sender's
    next HEARTBEAT."""
    tx, rx, to_rx, to_tx, cs, cr = make()
    got = []
    handler = lambda _p, m: got.append(bytes(m))     # noqa: E731
    tx.offer(b"hello", 0)
    now = pump(tx, rx, to_rx, to_tx, handler, 0, steps=5)
    assert got == [b"hello"]
    rx.on_heartbeat(1 << 40, now)                      # far beyond expected + window
    naks_before = cr.naks_sent
    now = pump(tx, rx, to_rx, to_tx, handler, now, steps=500)    # 0.5 s of fake time
    # the sender's next (idle) HEARTBEAT names its real tail and ends the bogus gap
    bound = CFG.idle_interval_ns // CFG.nak_retry_ns + 2
    assert cr.naks_sent - naks_before <= bound, cr.naks_sent - naks_before
    assert rx.high_position == rx.expected_position == 5
    naks_before = cr.naks_sent
    now = pump(tx, rx, to_rx, to_tx, handler, now, steps=500)
    assert cr.naks_sent == naks_before
    tx.offer(b"world", now)
    pump(tx, rx, to_rx, to_tx, handler, now, steps=20)
    assert got == [b"hello", b"world"]


def test_a_forged_heartbeat_within_the_window_is_not_nakked_for_ever():
    tx, rx, to_rx, to_tx, cs, cr = make()
    got = []
    handler = lambda _p, m: got.append(bytes(m))     # noqa: E731
    tx.offer(b"hello", 0)
    now = pump(tx, rx, to_rx, to_tx, handler, 0, steps=5)
    rx.on_heartbeat(rx.expected_position + 300, now)
    now = pump(tx, rx, to_rx, to_tx, handler, now, steps=500)
    naks_before = cr.naks_sent
    now = pump(tx, rx, to_rx, to_tx, handler, now, steps=500)
    assert cr.naks_sent == naks_before and rx.high_position == rx.expected_position


def test_tail_loss_and_receiver_restart_still_repaired_after_the_heartbeat_rules():
    """The heartbeat rules keep the two jobs of a HEARTBEAT: tail loss is NAKed, and a
    receiver far behind (restarted) is brought forward."""
    tx, rx, to_rx, to_tx, cs, cr = make()
    got = []
    handler = lambda _p, m: got.append(bytes(m))     # noqa: E731
    sent = [b"m%03d" % i for i in range(600)]          # 2400 bytes: past the 1024 window
    for m in sent[:10]:
        tx.offer(m, 0)
    to_rx.clear()                                      # the whole burst is lost
    now = pump(tx, rx, to_rx, to_tx, handler, 0, steps=200)
    assert got == sent[:10]
    for m in sent[10:]:
        assert tx.offer(m, now) > 0
        now = pump(tx, rx, to_rx, to_tx, handler, now, steps=1)
    now = pump(tx, rx, to_rx, to_tx, handler, now, steps=200)
    assert got == sent
    # a restarted receiver: a fresh image at 0 while the sender is at 2400
    rx2 = StreamReceiver(42, FrameWriter(1, 1, 1, 7), to_tx.append, CFG, cr)
    got2 = []
    tx.offer(b"after", now)
    to_rx.clear()                                      # and that frame is lost too
    pump(tx, rx2, to_rx, to_tx, lambda _p, m: got2.append(bytes(m)), now, steps=300)
    assert got2 == [b"after"]                          # jumped forward by SETUP, then NAKed
    assert rx2.expected_position == tx.sent_position


def test_frames_held_out_of_order_are_bounded_in_count_not_only_in_bytes():
    """The out-of-order buffer was bounded by payload bytes (the window) only: 1-byte frames
    held out of order cost ~136 bytes each, so one peer (one "client" of up to max_clients)
    pinned ~18 MB with a 128 KiB window. Held frames are now also bounded in number, and
    the stream still completes: what did not fit is NAKed and resent."""
    cfg = StreamConfig()
    to_rx, to_tx = [], []
    cs, cr = TransportCounters(), TransportCounters()
    tx = StreamSender(FrameWriter(1, 0, 1, 42), to_rx.append, cfg, cs)
    rx = StreamReceiver(42, FrameWriter(1, 1, 1, 7), to_tx.append, cfg, cr)
    got = []
    handler = lambda _p, m: got.append(bytes(m))     # noqa: E731
    sent = [bytes([i % 251 + 1]) for i in range(20000)]
    for m in sent:
        assert tx.offer(m, 0) > 0
    del to_rx[0]                                       # the first frame is lost
    feed_rx(rx, list(to_rx), handler, 0)
    to_rx.clear()
    assert len(rx._pending) <= cfg.window_bytes // 16
    assert cr.drops["beyond_window"] > 0 and not got
    pump(tx, rx, to_rx, to_tx, handler, 0, steps=2000, until=lambda: len(got) == len(sent))
    assert got == sent


def test_a_window_that_does_not_fit_the_wire_is_refused_at_configuration():
    # STATUS and NAK carry the window as an i32: 2**31 or more raised out of every duty cycle
    from aeronpy.transport import StreamConfig
    with pytest.raises(ValueError, match="below 2\\*\\*31"):
        StreamConfig(window_bytes=2**31)
    assert StreamConfig(window_bytes=2**31 - 1).window_bytes == 2**31 - 1
