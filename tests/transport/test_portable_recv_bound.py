"""One poll takes at most `limit` datagrams off the socket, truncated ones included, on both
receive paths. The portable (recvfrom) path skipped truncated datagrams without counting them
against the limit, so a flood of oversize datagrams kept one call looping while it lasted
(found by the transport review)."""
import socket
import time

import pytest

from aeronpy._udp import UdpSocket

PATHS = pytest.mark.parametrize("use_mmsg", [True, False], ids=["mmsg", "portable"])


@PATHS
def test_a_flood_of_oversize_datagrams_is_taken_at_most_limit_per_poll(use_mmsg):
    with UdpSocket(max_datagram_bytes=100, use_mmsg=use_mmsg) as rx:
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for _ in range(50):
                tx.sendto(b"x" * 500, rx.local_address[:2])   # each above max_datagram_bytes
            tx.sendto(b"ok", rx.local_address[:2])
            deadline = time.monotonic() + 5
            while not rx.wait_readable(1_000_000) and time.monotonic() < deadline:
                pass
            got = []
            assert rx.poll(lambda key, data: got.append(bytes(data)), 8) == 0
            assert rx.truncated == 8                         # 8 taken, none delivered
            for _ in range(20):
                rx.poll(lambda key, data: got.append(bytes(data)), 8)
            assert rx.truncated == 50 and got == [b"ok"]
        finally:
            tx.close()
