"""ClusterClient.wait_for_egress: a paced sender's wait that a reply can end early."""
from __future__ import annotations

import socket
import threading
import time

from aeronpy import ClusterClient
from aeronpy.testing.process_cluster import free_udp_ports


def _client() -> ClusterClient:
    # nobody listens there: the client keeps trying to connect, which is all these tests need
    return ClusterClient.open(f"127.0.0.1:{free_udp_ports(1)[0]}")


def _local(client: ClusterClient) -> tuple:
    host, port = client._transport.local_endpoint.rsplit(":", 1)
    return host, int(port)


def test_without_input_it_returns_false_after_the_timeout():
    client = _client()
    try:
        client.poll_egress(lambda *_: None)
        start = time.monotonic()
        assert client.wait_for_egress(0.05) is False
        assert 0.04 <= time.monotonic() - start < 2.0
        start = time.monotonic()
        assert client.wait_for_egress(0) is False and time.monotonic() - start < 0.5
    finally:
        client.close()


def test_a_datagram_ends_the_wait_early():
    """Would take the whole 5 s if the wait ignored the socket (e.g. a plain sleep)."""
    client = _client()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        timer = threading.Timer(0.05, sender.sendto, (b"\x00" * 8, _local(client)))
        timer.start()
        start = time.monotonic()
        assert client.wait_for_egress(5.0) is True
        assert time.monotonic() - start < 2.0
        timer.join()
        client.poll_egress(lambda *_: None)       # the junk datagram is read and dropped
        assert client.wait_for_egress(0) is False
    finally:
        sender.close()
        client.close()


class _NoSocketTransport:
    local_endpoint = "mem:1"

    def send(self, endpoint, message):
        pass

    def poll(self, handler, limit=64):
        return 0

    def close(self):
        pass


def test_a_transport_without_a_socket_sleeps_briefly_and_says_false():
    client = ClusterClient.open("127.0.0.1:9", transport=_NoSocketTransport())
    start = time.monotonic()
    assert client.wait_for_egress(10.0) is False
    assert time.monotonic() - start < 1.0
