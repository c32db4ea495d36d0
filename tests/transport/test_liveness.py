"""Peer liveness: idle streams keep each other alive with heartbeats/status; a peer that
stops is reported dead after liveness_timeout_ns."""
import time

from aeronpy.transport import UdpTransport
from tests.transport.harness import Endpoint, LOOPBACK, run_until

MS = 1_000_000


def test_idle_peers_stay_alive_and_a_stopped_peer_is_declared_dead():
    a = Endpoint(UdpTransport(LOOPBACK, 0, 7, 0, liveness_timeout_ns=600 * MS))
    b = Endpoint(UdpTransport(LOOPBACK, 0, 7, 1, liveness_timeout_ns=600 * MS))
    a.t.add_peer(1, *b.t.local_address)
    b.t.add_peer(0, *a.t.local_address)
    try:
        assert not a.t.peer_alive(1)                       # never heard
        assert run_until(lambda: a.t.peer_alive(1) and b.t.peer_alive(0), [a, b], timeout_s=5)
        end = time.monotonic() + 1.0                       # idle longer than the timeout: alive
        run_until(lambda: time.monotonic() > end, [a, b], timeout_s=2)
        assert a.t.peer_alive(1) and b.t.peer_alive(0)
        assert a.t.counters.heartbeats_sent > 0
        b.t.close()                                        # b stops
        assert run_until(lambda: not a.t.peer_alive(1), [a], timeout_s=5)
        assert a.t.peer_alive(0) is False and a.t.peer_alive(99) is False
    finally:
        a.t.close()
        b.t.close()
