"""Gaps found by mutation testing (round 2, /work/notes/trials/mutants2): each test here failed
with one mutant of aeronpy/transport/udp.py or admission.py applied, and passes on the real code."""
import socket
import time

from aeronpy._frame import UNFRAGMENTED, FrameWriter
from aeronpy._udp import address_key
from aeronpy.transport import UdpTransport
from tests.transport.harness import Endpoint, LOOPBACK, pair, run_until


def test_a_replayed_frame_of_a_members_earlier_run_from_its_own_address_is_a_stale_epoch():
    # (mutant U04: the old epoch not retired at a restart.) test_restart's replay comes from a
    # stranger's address and is refused before its epoch is looked at; this one comes from the
    # member's own address, where only the retired epoch tells it from a second restart.
    a, b, _ = pair(epochs=(111, 900))
    a_port = a.t.local_address[1]
    try:
        a.queue(1, [b"old-%d" % i for i in range(5)])
        assert run_until(lambda: len(b.got(0)) == 5, [a, b], timeout_s=10)
        a.t.close()
        a = Endpoint(UdpTransport(LOOPBACK, a_port, 7, 0, epoch=222))     # restart, same port
        a.t.add_peer(1, *b.t.local_address)
        a.queue(1, [b"new-0"])
        assert run_until(lambda: len(b.got(0)) == 6, [a, b], timeout_s=10)
        assert b.t.counters.peer_restarts == 1
        ghost = FrameWriter(7, 0, 1001, 111).data(0, UNFRAGMENTED, 5, b"ghost")
        a.t.socket.queue(address_key(*b.t.local_address), ghost)     # from a's own port
        a.t.socket.flush()
        drops = b.t.counters.drops
        assert run_until(lambda: drops["stale_epoch"] == 1, [a, b], timeout_s=5)
        assert b.t.stream_state(0)["peer_epoch"] == 222
        assert b.t.counters.peer_restarts == 1
        assert b"ghost" not in b.got(0)
    finally:
        a.t.close()
        b.t.close()


def test_a_new_clients_first_heartbeat_opens_its_peer():
    # (mutant U07: a client only on DATA.) A connected client with nothing to send only
    # HEARTBEATs; after a server restart that is the first frame the server sees of it.
    events = []
    srv = UdpTransport(LOOPBACK, 0, 7, 0, accept_clients=True,
                       on_new_client=lambda pid, addr: events.append((pid, addr)))
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        raw.bind((LOOPBACK, 0))
        raw.sendto(FrameWriter(7, -1, 1001, 4242).heartbeat(0), srv.local_address)
        for _ in range(200):               # bounded: 200 polls of at most 10 ms
            srv.poll(lambda pid, msg: None)
            if events:
                break
            srv.wait_readable(10_000_000)
        assert events == [(-2, raw.getsockname())]
        assert srv.client_ids() == [-2]
        assert srv.counters.drops["unknown_peer"] == 0
    finally:
        raw.close()
        srv.close()


def test_a_silent_member_peer_is_never_expired_like_a_client():
    # (mutant U16: every silent peer expired.) A member partitioned away for longer than
    # client_timeout_ns must still be a peer when it comes back: only clients are forgotten.
    lost = []
    a = Endpoint(UdpTransport(LOOPBACK, 0, 7, 0, accept_clients=True, client_timeout_ns=50_000_000,
                              on_client_lost=lost.append))
    b = Endpoint(UdpTransport(LOOPBACK, 0, 7, 1))
    a.t.add_peer(1, *b.t.local_address)
    b.t.add_peer(0, *a.t.local_address)
    try:
        b.queue(0, [b"hello"])
        assert run_until(lambda: a.got(1) == [b"hello"], [a, b], timeout_s=10)
        a.t.do_work(time.monotonic_ns() + 100 * a.t.client_timeout_ns)   # long silence
        assert lost == [] and a.t.peer_ids() == [1]
        assert a.t.send(1, b"still there") > 0
    finally:
        a.t.close()
        b.t.close()
