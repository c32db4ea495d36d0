"""The compiled poll loop, on both paths: recvmmsg/sendmmsg (Linux) and the portable
recvfrom/sendto fallback that macOS and Windows use (forced here with use_mmsg=False)."""
import socket
import sys
import time

import pytest

from aeronpy import _udp
from aeronpy._udp import UdpSocket, address_key, address_tuple

PATHS = pytest.mark.parametrize("use_mmsg", [True, False], ids=["mmsg", "portable"])


def drain(sock, limit=10_000, tries=200):
    got = []
    for _ in range(tries):
        if sock.poll(lambda k, m: got.append((k, bytes(m))), limit) == 0 and got:
            break
        sock.wait_readable(1_000_000)
    return got


def test_address_key_round_trip():
    key = address_key("127.0.0.1", 20101)
    assert key == (0x7F000001 << 16) | 20101
    assert address_tuple(key) == ("127.0.0.1", 20101)
    with pytest.raises(ValueError):
        address_key("127.0.0.1", 70000)


def test_mmsg_flag_reflects_platform_and_request():
    assert _udp.HAVE_MMSG is sys.platform.startswith("linux")
    with UdpSocket(use_mmsg=False) as s:
        assert s.use_mmsg is False
    with UdpSocket(use_mmsg=True) as s:
        assert s.use_mmsg is _udp.HAVE_MMSG


@PATHS
def test_batches_delivered_in_order_with_counters(use_mmsg):
    with UdpSocket(use_mmsg=use_mmsg, batch=16) as a, UdpSocket(use_mmsg=use_mmsg, batch=16) as b:
        kb = address_key(*b.local_address)
        sent = [i.to_bytes(2, "little") * (i % 50 + 1) for i in range(200)]
        for m in sent[:100]:
            assert a.queue(kb, m) == 1        # batch of 16 flushes itself when full
        for m in sent[100:]:
            assert a.queue_parts(kb, m[:1], m[1:]) == 1
        a.flush()
        assert a.queued == 0
        got = drain(b)
        assert [m for _, m in got] == sent
        assert {k for k, _ in got} == {address_key(*a.local_address)}
        size = sum(map(len, sent))
        assert a.datagrams_out == 200 and a.bytes_out == size
        assert b.datagrams_in == 200 and b.bytes_in == size


@PATHS
def test_poll_respects_limit_and_views_are_read_only(use_mmsg):
    with UdpSocket(use_mmsg=use_mmsg) as a, UdpSocket(use_mmsg=use_mmsg) as b:
        kb = address_key(*b.local_address)
        for i in range(10):
            a.queue(kb, bytes([i]) * 10)
        a.flush()
        b.wait_readable(100_000_000)
        time.sleep(0.01)
        views = []
        assert b.poll(lambda k, m: views.append(m), 3) == 3
        assert views[0].readonly and len(views[0]) == 10
        with pytest.raises(TypeError):
            views[0][0] = 1
        assert len(drain(b)) == 7


@PATHS
def test_oversize_and_truncated_datagrams_are_counted_not_raised(use_mmsg):
    with UdpSocket(use_mmsg=use_mmsg, max_datagram_bytes=100) as small, \
            UdpSocket(use_mmsg=use_mmsg) as big:
        ks = address_key(*small.local_address)
        assert small.queue(address_key(*big.local_address), b"x" * 101) == 0
        assert small.counters()["oversize_out"] == 1
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            raw.sendto(b"y" * 500, small.local_address)
            raw.sendto(b"z" * 100, small.local_address)
        finally:
            raw.close()
        got = drain(small)
        assert [m for _, m in got] == [b"z" * 100]
        assert small.truncated == 1
        del ks


@PATHS
def test_send_to_closed_port_never_raises(use_mmsg):
    with UdpSocket(use_mmsg=use_mmsg) as a:
        dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dead.bind(("127.0.0.1", 0))
        kd = address_key(*dead.getsockname())
        dead.close()                                  # ICMP port unreachable comes back
        for _ in range(20):
            a.queue(kd, b"hello")
            a.flush()
            a.poll(lambda k, m: None, 8)
        c = a.counters()
        assert c["other_errors"] == 0
        assert c["datagrams_out"] + c["conn_refused"] >= 20


def test_wait_readable_times_out_and_wakes():
    with UdpSocket() as a, UdpSocket() as b:
        assert b.wait_readable(20_000_000) is False
        assert b.wait_readable(0) is False
        a.send_to(address_key(*b.local_address), b"wake")
        assert b.wait_readable(2_000_000_000) is True


def test_socket_buffer_sizes_configurable_and_close_is_safe():
    s = UdpSocket(rcvbuf_bytes=1 << 20, sndbuf_bytes=1 << 19)
    assert s.rcvbuf_bytes >= 1 << 20 and s.sndbuf_bytes >= 1 << 19   # Linux doubles them
    s.close()
    s.close()
    assert s.poll(lambda k, m: None, 10) == 0 and s.flush() == 0 and s.queue(1, b"x") == 0
    with pytest.raises(ValueError):
        UdpSocket(batch=0)
    with pytest.raises(ValueError):
        UdpSocket(max_datagram_bytes=10)


def test_wait_readable_honours_a_sub_millisecond_timeout():
    """A client parks until its next scheduled send: a 200 us wait must not last a whole ms
    (it was rounded up to whole milliseconds before). On Linux the wait is ppoll's; the
    best of 20 waits is taken, so a busy machine delays some waits, not the check."""
    with UdpSocket("127.0.0.1", 0) as sock:
        best = min(_timed_wait(sock, 200_000) for _ in range(20))
    if sys.platform.startswith("linux"):
        assert best < 900_000, f"a 200 us wait took at least {best} ns"
    assert best >= 150_000, f"a 200 us wait returned after {best} ns"


def _timed_wait(sock, timeout_ns: int) -> int:
    start = time.monotonic_ns()
    assert sock.wait_readable(timeout_ns) is False
    return time.monotonic_ns() - start
