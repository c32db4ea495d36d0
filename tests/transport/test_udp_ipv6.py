"""IPv6 in the compiled poll loop and the transport: address keys of both families, an IPv6
socket on both paths (recvmmsg/sendmmsg and the portable loop), frames coalesced per peer only,
and a key of the other family refused with a clear error instead of sent somewhere else."""
import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aeronpy._udp import UdpSocket, address_family, address_key, address_tuple
from aeronpy.testing.process_cluster import ipv6_loopback_available
from aeronpy.transport import UdpTransport

PATHS = pytest.mark.parametrize("use_mmsg", [True, False], ids=["mmsg", "portable"])


requires_ipv6 = pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback (::1)")


def drain(sock, expect, tries=200):
    got = []
    for _ in range(tries):
        sock.poll(lambda k, m: got.append((k, bytes(m))))
        if len(got) >= expect:
            break
        sock.wait_readable(2_000_000)
    return got


def test_ipv6_address_keys_round_trip_and_sit_above_every_ipv4_key():
    key = address_key("::1", 20101)
    assert key == int.from_bytes(b"\x01" + socket.inet_pton(socket.AF_INET6, "::1")
                                 + (20101).to_bytes(2, "big"), "big")
    assert address_tuple(key) == ("::1", 20101)
    assert address_key("[::1]", 20101) == key                  # brackets allowed
    assert address_key("0:0:0:0:0:0:0:1", 20101) == key        # one key per address
    assert address_family(key) == socket.AF_INET6
    top4 = address_key("255.255.255.255", 65535)
    assert address_family(top4) == socket.AF_INET and top4 < 1 << 48 < key


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.integers(0, 65535))
def test_every_usable_ipv6_address_and_port_round_trips(raw, port):
    import ipaddress
    address = ipaddress.IPv6Address(raw)
    if address.is_link_local or address.ipv4_mapped is not None:
        with pytest.raises(ValueError):
            address_key(str(address), port)
        return
    key = address_key(str(address), port)
    assert address_tuple(key) == (str(address), port)
    assert address_family(key) == socket.AF_INET6


@pytest.mark.parametrize("host, needle", [
    ("fe80::1", "link-local"), ("fe80::1%lo", "scoped"), ("::ffff:10.0.0.1", "IPv4-mapped")])
def test_ipv6_addresses_without_a_usable_key_are_refused(host, needle):
    with pytest.raises(ValueError, match=needle):
        address_key(host, 1)
    with pytest.raises(ValueError, match=needle):
        UdpSocket(host, 0)


@requires_ipv6
@PATHS
def test_an_ipv6_socket_sends_receives_and_answers_the_source(use_mmsg):
    with UdpSocket("::1", 0, use_mmsg=use_mmsg) as a, UdpSocket("::1", 0, use_mmsg=use_mmsg) as b:
        assert a.family == b.family == socket.AF_INET6
        to_b = address_key("::1", b.local_address[1])
        for i in range(100):
            assert a.queue(to_b, b"m%03d" % i) == 1
        a.flush()                               # (a full batch went out from queue() itself)
        assert a.datagrams_out == 100
        got = drain(b, 100)
        assert [m for _k, m in got] == [b"m%03d" % i for i in range(100)]
        source = {k for k, _m in got}
        assert source == {address_key("::1", a.local_address[1])}
        b.send_to(source.pop(), b"back")                    # the key a poll gave: a reply
        assert drain(a, 1) == [(to_b, b"back")]
        assert b.datagrams_in == 100 and a.datagrams_in == 1


@requires_ipv6
def test_ipv6_frames_coalesce_per_peer_and_never_across_peers():
    """Coalescing compares a 64-bit digest, then the address: frames to two peers,
    interleaved, each reach only their own peer, in order, in fewer datagrams than frames."""
    with UdpSocket("::1", 0) as a, UdpSocket("::1", 0) as b, UdpSocket("::1", 0) as c:
        to_b, to_c = (address_key("::1", s.local_address[1]) for s in (b, c))
        for i in range(40):
            a.queue_frame(to_b, b"b%02d," % i)
            a.queue_frame(to_c, b"c%02d," % i)
        a.flush()
        got_b = b"".join(m for _k, m in drain(b, 1))
        got_c = b"".join(m for _k, m in drain(c, 1))
        assert got_b == b"".join(b"b%02d," % i for i in range(40))
        assert got_c == b"".join(b"c%02d," % i for i in range(40))
        assert a.counters()["frames_coalesced"] >= 40      # 80 frames, at least 40 packed
        assert a.datagrams_out < 80


@requires_ipv6
@pytest.mark.parametrize("bad", [address_key("127.0.0.1", 9), -1, 1 << 200, "::1", None, 2.5])
def test_an_ipv6_socket_refuses_any_other_key(bad):
    with UdpSocket("::1", 0) as s:
        for send in (lambda: s.queue(bad, b"x"), lambda: s.queue_frame(bad, b"x"),
                     lambda: s.queue_parts(bad, b"x", b"y")):
            with pytest.raises(ValueError, match="not an address key of this socket's family"):
                send()
        assert s.queued == 0 and s.flush() == 0


@pytest.mark.parametrize("bad", [-1, 1 << 48, 1 << 70, "127.0.0.1", None])
def test_an_ipv4_socket_refuses_any_other_key(bad):
    with UdpSocket("127.0.0.1", 0) as s:
        with pytest.raises(ValueError, match=r"this socket's family \(IPv4\)"):
            s.queue(bad, b"x")
        if ipv6_loopback_available():
            with pytest.raises(ValueError, match=r"\(IPv4\)"):
                s.queue_frame(address_key("::1", 9), b"x")
        assert s.queued == 0


@requires_ipv6
def test_an_ipv6_socket_is_ipv6_only():
    """Bound to the IPv6 wildcard it would otherwise also hear IPv4 senders, under keys of
    IPv4-mapped addresses it could not name. The control, a dual-stack socket, hears one."""
    def hears_ipv4(port: int, poll) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as v4:
            v4.sendto(b"from ipv4", ("127.0.0.1", port))
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            if poll():
                return True
            time.sleep(0.01)
        return False

    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as dual:
        dual.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        dual.bind(("::", 0))
        dual.setblocking(False)

        def poll_dual() -> bool:
            try:
                return dual.recvfrom(64)[0] == b"from ipv4"
            except BlockingIOError:
                return False
        assert hears_ipv4(dual.getsockname()[1], poll_dual)           # the control
    with UdpSocket("::", 0) as s:
        assert not hears_ipv4(s.local_address[1], lambda: s.poll(lambda k, m: None) > 0)


@requires_ipv6
def test_a_transport_refuses_a_peer_of_the_other_family():
    with UdpTransport("::1", 0, 7, 0) as t6:
        with pytest.raises(ValueError, match="is IPv4, but this transport's socket is IPv6"):
            t6.add_peer(1, "127.0.0.1", 20101)
        t6.add_peer(1, "::1", 20101)                       # its own family is fine
    with UdpTransport("127.0.0.1", 0, 7, 0) as t4:
        with pytest.raises(ValueError, match="is IPv6, but this transport's socket is IPv4"):
            t4.add_peer(1, "::1", 20101)


def test_ipv6_keys_do_not_depend_on_socket_inet_ntop(monkeypatch):
    """PySyncObj (imported by the benchmarks) replaces socket.inet_ntop on every platform with
    a Windows-only function; address keys must not go through it."""
    def broken(*args):
        raise SystemError("Invalid platform. ctypes.windll must be available.")
    monkeypatch.setattr(socket, "inet_ntop", broken)
    monkeypatch.setattr(socket, "inet_pton", broken)
    key = address_key("2001:db8::5", 7)
    assert address_tuple(key) == ("2001:db8::5", 7)
