"""``next_due_ns`` of a stream's sender and receiver: exactly when ``do_work`` next acts.

An idle node parks until the earliest of these (tests/cluster/test_node_idle_park.py), so
each is checked exactly: nothing is sent a nanosecond before the due time, something at it.
"""
from .test_streams import CFG, MS, deliver, make


def _nothing_before_something_at(part, wire, due):
    wire.take()
    assert part.do_work(due - 1) == 0 and wire.take() == []
    assert part.do_work(due) > 0 and wire.take() != []


def test_an_idle_sender_is_due_at_its_keepalive():
    tx, _rx, to_rx, _to_tx, _cs, _cr = make()
    assert tx.next_due_ns() == CFG.idle_interval_ns
    _nothing_before_something_at(tx, to_rx, tx.next_due_ns())


def test_a_sender_with_unacknowledged_data_is_due_at_its_heartbeat():
    tx, _rx, to_rx, _to_tx, _cs, _cr = make()
    tx.offer(b"x" * 10, 3 * MS)
    assert tx.next_due_ns() == 3 * MS + CFG.heartbeat_interval_ns
    _nothing_before_something_at(tx, to_rx, tx.next_due_ns())


def test_a_sender_whose_frames_wait_for_the_window_is_due_now():
    tx, _rx, _to_rx, _to_tx, _cs, _cr = make()
    tx.offer(b"x" * 2000, 0)                  # more than the 1 KiB window
    assert tx.next_due_ns() == 0


def test_a_receiver_is_due_at_its_status_after_progress_then_at_its_keepalive():
    tx, rx, to_rx, to_tx, _cs, _cr = make()
    tx.offer(b"m", 0)
    got = []
    deliver(rx, to_rx.take(), got, now=1 * MS)
    assert rx.next_due_ns() <= 1 * MS            # its first STATUS: at once
    rx.do_work(1 * MS)
    assert rx.next_due_ns() == 1 * MS + CFG.idle_interval_ns    # nothing new consumed
    tx.offer(b"n", 5 * MS)
    deliver(rx, to_rx.take(), got, now=5 * MS)
    assert got == [b"m", b"n"]
    due = rx.next_due_ns()
    assert due == 5 * MS + CFG.status_prompt_ns                 # progress: once the sender is quiet
    _nothing_before_something_at(rx, to_tx, due)
    assert rx.next_due_ns() == due + CFG.idle_interval_ns
    _nothing_before_something_at(rx, to_tx, rx.next_due_ns())


def test_a_receiver_with_an_open_gap_is_due_at_its_next_nak():
    tx, rx, to_rx, to_tx, _cs, cr = make()
    for i in range(3):
        tx.offer(b"m%d" % i, 0)
    f0, _f1, f2 = to_rx.take()
    deliver(rx, [f0, f2], [], now=0)
    assert cr.naks_sent == 1
    rx.do_work(0)                              # its STATUS for the progress, if any
    to_tx.take()
    due = rx.next_due_ns()
    assert due == CFG.nak_retry_ns
    _nothing_before_something_at(rx, to_tx, due)
    assert cr.naks_sent == 2
