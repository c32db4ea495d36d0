"""Gaps found by mutation testing (round 3, /work/notes/trials/mutants3): each test here failed
with one mutant of csrc/_streams.pyx applied (the diff beside its id there), and passes on the
real code. No network: the stream halves driven directly, on given times."""
from aeronpy._frame import FrameWriter
from aeronpy.transport.counters import TransportCounters
from aeronpy.transport.streams import StreamConfig, StreamReceiver
from tests.transport.test_status_piggyback import QUIET, _pair, _poll_until

MS = 1_000_000
CFG = StreamConfig(mtu_bytes=128, window_bytes=1024, send_buffer_bytes=4096,
                   max_message_bytes=2048, nak_retry_ns=5 * MS, retransmit_linger_ns=2 * MS)
WHOLE = 3   # FRAGMENT_BEGIN | FRAGMENT_END


def _receiver():
    counters = TransportCounters()
    return StreamReceiver(42, FrameWriter(1, 1, 1, 7), [].append, CFG, counters), counters


def test_a_frame_held_out_of_order_must_end_inside_the_window():
    # (mutant Q19: only the frame's start checked against the window.) A frame that starts
    # inside the window but ends past it is dropped, not held: a live sender never sends one
    # out of order (it sends past the window only the frame at the acknowledged position).
    rx, counters = _receiver()
    got = []
    handler = lambda _peer, message: got.append(bytes(message))    # noqa: E731
    window = CFG.window_bytes
    rx.on_data(window - 40, WHOLE, 60, b"x" * 60, handler, 0, 0)    # ends 20 bytes past it
    assert counters.drops["beyond_window"] == 1
    assert rx._pending == {} and got == []
    # the control: a frame ending exactly at the window's end is held, and delivered once
    # the gap before it is filled
    rx.on_data(window - 60, WHOLE, 60, b"y" * 60, handler, 0, 0)
    assert counters.drops["beyond_window"] == 1 and list(rx._pending) == [window - 60]
    rx.on_data(0, WHOLE, window - 60, b"z" * (window - 60), handler, 0, 1 * MS)
    assert got == [b"z" * (window - 60), b"y" * 60]


def test_a_last_fragment_that_ends_short_of_the_declared_length_drops_the_message():
    # (mutant Q22: the END fragment's end not compared with the declared length.) The message
    # was delivered at its declared length, its missing bytes zeros: bytes no one sent.
    rx, counters = _receiver()
    got = []
    handler = lambda _peer, message: got.append(bytes(message))    # noqa: E731
    rx.on_data(0, 1, 100, b"a" * 60, handler, 0, 0)        # BEGIN of a 100-byte message
    rx.on_data(60, 2, 100, b"b" * 20, handler, 0, 0)       # END at 80
    assert got == [] and counters.drops["malformed"] == 1
    # the control: the stream goes on, and a consistent message after it is delivered whole
    rx.on_data(80, 1, 50, b"c" * 30, handler, 0, 0)
    rx.on_data(110, 2, 50, b"d" * 20, handler, 0, 0)
    assert got == [b"c" * 30 + b"d" * 20] and counters.drops["malformed"] == 1


def test_no_status_rides_with_our_data_when_nothing_new_was_consumed():
    # (mutant Q27: a STATUS rode on every send once the last was status_piggyback_ns old.) A
    # member streaming to a peer that sends it nothing would add a STATUS repeating the same
    # position to each of its datagrams, for ever.
    a, b, _ca, cb = _pair(StreamConfig(status_piggyback_ns=MS, **QUIET))
    try:
        got_b, got_a = [], []
        assert a.send(1, b"request") > 0
        a.flush()
        assert _poll_until(b, got_b, 1)
        for i in range(4):                      # b streams on; a sends nothing more
            cb.now += 2 * MS
            b.poll(lambda _peer, _message: None)    # a send is stamped with the last poll's time
            assert b.send(0, b"r%d" % i) > 0
            b.flush()
        assert _poll_until(a, got_a, 4)
        assert b.counters.status_sent == 1      # the first reply's, acknowledging the request
        # the control: once b consumed something new, its next send carries a STATUS again
        assert a.send(1, b"again") > 0
        a.flush()
        assert _poll_until(b, got_b, 2)
        cb.now += 2 * MS
        b.poll(lambda _peer, _message: None)
        assert b.send(0, b"r4") > 0
        assert b.counters.status_sent == 2
    finally:
        a.close()
        b.close()
