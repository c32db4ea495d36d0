"""Loss, duplication and reordering injected at the socket layer (a lossy proxy): every
message is still delivered exactly once, in order, and NAK/retransmit work is observed."""
import random

import pytest

from tests.transport.harness import (
    LossyProxy, check_exactly_once_in_order, numbered, pair, run_until,
)


@pytest.mark.parametrize("use_mmsg", [True, False], ids=["mmsg", "portable"])
@pytest.mark.parametrize("seed", [1, 2])
def test_exactly_once_in_order_under_loss_duplication_reordering(use_mmsg, seed):
    rng = random.Random(seed)
    a, b, proxies = pair(use_mmsg=use_mmsg, via=lambda target: LossyProxy(
        target, random.Random(rng.random()), drop=0.05, duplicate=0.05, reorder=0.05))
    to_b, to_a = numbered(1500, rng), numbered(400, rng)
    a.queue(1, to_b)
    b.queue(0, to_a)
    try:
        done = run_until(lambda: len(b.got(0)) >= len(to_b) and len(a.got(1)) >= len(to_a),
                         [a, b], proxies, timeout_s=30)
        check_exactly_once_in_order(to_b, b.got(0))
        check_exactly_once_in_order(to_a, a.got(1))
        assert done
        # the faults really happened, and the streams repaired them
        assert all(p.dropped > 0 and p.duplicated > 0 and p.reordered > 0 for p in proxies)
        assert b.t.counters.naks_sent > 0 and a.t.counters.naks_received > 0
        assert a.t.counters.retransmits > 0
        assert b.t.counters.duplicates > 0
        assert b.t.counters.messages_reassembled > 0
    finally:
        for e in (a, b):
            e.t.close()
        for p in proxies:
            p.close()


def test_one_mebibyte_message_reassembled_through_loss():
    rng = random.Random(11)
    a, b, proxies = pair(via=lambda target: LossyProxy(target, random.Random(rng.random()),
                                                       drop=0.02, reorder=0.02))
    big = [rng.randbytes(1 << 20), b"after", rng.randbytes(3 << 19)]
    a.queue(1, big)
    try:
        assert run_until(lambda: len(b.got(0)) >= 3, [a, b], proxies, timeout_s=30)
        check_exactly_once_in_order(big, b.got(0))
        assert a.t.counters.retransmits > 0
        assert b.t.counters.messages_reassembled == 2
    finally:
        for e in (a, b):
            e.t.close()
        for p in proxies:
            p.close()


def test_tail_loss_recovered_by_heartbeat():
    """The last frames of a burst are lost: only the HEARTBEAT reveals the gap."""
    rng = random.Random(5)
    a, b, proxies = pair(via=lambda target: LossyProxy(target, random.Random(rng.random())))
    pab = proxies[0]
    try:
        a.queue(1, [b"first"])
        assert run_until(lambda: b.got(0) == [b"first"], [a, b], proxies, timeout_s=5)
        pab.drop = 1.0          # the next message vanishes entirely...
        a.t.send(1, b"lost-tail")
        a.t.flush()
        assert run_until(lambda: pab.dropped >= 1, [a, b], proxies, timeout_s=5)
        pab.drop = 0.0          # ...and nothing else is sent, so only a heartbeat shows it
        assert run_until(lambda: len(b.got(0)) == 2, [a, b], proxies, timeout_s=5)
        assert b.got(0) == [b"first", b"lost-tail"]
        assert a.t.counters.heartbeats_sent > 0 and b.t.counters.naks_sent > 0
    finally:
        for e in (a, b):
            e.t.close()
        for p in proxies:
            p.close()


def test_negative_control_checker_and_proxy_detect_faults():
    """The checker fails on loss, duplication and reordering; and raw datagrams through the
    proxy (no stream) really arrive lossy, so the tests above could fail."""
    sent = [b"a", b"b", b"c"]
    for bad in ([b"a", b"c"], [b"a", b"b", b"b", b"c"], [b"b", b"a", b"c"]):
        with pytest.raises(AssertionError):
            check_exactly_once_in_order(sent, bad)
    import socket
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    proxy = LossyProxy(sink.getsockname(), random.Random(3), drop=0.2, duplicate=0.1, reorder=0.1)
    src = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        raw = [i.to_bytes(4, "little") for i in range(300)]
        for m in raw:
            src.sendto(m, proxy.address)
        got = []
        for _ in range(200):
            proxy.pump()
            try:
                while True:
                    got.append(sink.recv(64))
            except BlockingIOError:
                pass
            if not proxy.held and proxy.seen >= len(raw):
                break
        with pytest.raises(AssertionError):
            check_exactly_once_in_order(raw, got)
    finally:
        for s in (sink, src):
            s.close()
        proxy.close()
