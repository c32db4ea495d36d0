"""Flow control: a receiver that does not poll holds the sender to its window, the sender
sees back pressure, memory stays bounded, and everything flows once the receiver polls."""
import random

from aeronpy.transport import BACK_PRESSURED, StreamConfig
from tests.transport.harness import check_exactly_once_in_order, pair, run_until

CFG = StreamConfig(window_bytes=16 * 1024, send_buffer_bytes=64 * 1024,
                   max_message_bytes=32 * 1024)


def test_slow_receiver_back_pressures_sender_with_bounded_memory():
    a, b, _ = pair(config=CFG)
    rng = random.Random(9)
    messages = [rng.randbytes(1000) for _ in range(400)]
    try:
        accepted = 0
        back_pressured = False
        for _ in range(2000):                  # only the sender runs: the receiver is asleep
            r = a.t.send(1, messages[accepted]) if accepted < len(messages) else 0
            if r == BACK_PRESSURED:
                back_pressured = True
            elif r > 0:
                accepted += 1
            a.t.poll(a.on_message, 64)
            a.t.do_work()
            s = a.t.stream_state(1)
            assert s["sent"] - s["acked"] <= CFG.window_bytes          # never beyond the window
            assert s["buffered_bytes"] <= CFG.send_buffer_bytes        # bounded send buffer
        assert back_pressured and a.t.counters.back_pressured > 0
        assert accepted < len(messages)
        assert a.t.stream_state(1)["sent"] <= CFG.window_bytes         # no STATUS came back
        # The receiver wakes up: everything accepted so far, then the rest, arrives in order.
        a.queue(1, messages[accepted:])
        assert run_until(lambda: len(b.got(0)) == len(messages), [a, b], timeout_s=20)
        check_exactly_once_in_order(messages, b.got(0))
        assert b.t.counters.status_sent > 0
    finally:
        a.t.close()
        b.t.close()


def test_message_larger_than_send_buffer_is_refused_clearly():
    import pytest
    from aeronpy.errors import MessageTooLargeError
    a, b, _ = pair(config=CFG)
    try:
        with pytest.raises(MessageTooLargeError):
            a.t.send(1, b"x" * (CFG.max_message_bytes + 1))
        with pytest.raises(ValueError):
            a.t.send(1, b"")
        assert a.t.send(42, b"x") == -1          # NOT_CONNECTED: no such peer
    finally:
        a.t.close()
        b.t.close()
    assert a.t.send(1, b"x") == -4               # CLOSED
