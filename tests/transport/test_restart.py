"""Restarts: a sender's new epoch resets the receiver's image; frames of the old epoch are
refused; a restarted receiver is brought forward by SETUP."""
import socket

from aeronpy._frame import UNFRAGMENTED, FrameWriter
from aeronpy.transport import UdpTransport
from tests.transport.harness import Endpoint, LOOPBACK, check_exactly_once_in_order, run_until


def test_sender_restart_with_new_epoch_resets_the_image():
    b = Endpoint(UdpTransport(LOOPBACK, 0, 7, 1, epoch=900))
    a = Endpoint(UdpTransport(LOOPBACK, 0, 7, 0, epoch=111))
    a_port = a.t.local_address[1]
    b.t.add_peer(0, LOOPBACK, a_port)
    a.t.add_peer(1, *b.t.local_address)
    try:
        first = [b"old-%d" % i for i in range(50)]
        a.queue(1, first)
        assert run_until(lambda: len(b.got(0)) == 50, [a, b], timeout_s=10)
        a.t.close()                                          # crash
        a = Endpoint(UdpTransport(LOOPBACK, a_port, 7, 0, epoch=222))  # restart: same port
        a.t.add_peer(1, *b.t.local_address)
        second = [b"new-%d" % i for i in range(50)]
        a.queue(1, second)
        assert run_until(lambda: len(b.got(0)) == 100, [a, b], timeout_s=10)
        check_exactly_once_in_order(first + second, b.got(0))
        assert b.t.counters.peer_restarts == 1
        assert b.t.stream_state(0)["peer_epoch"] == 222
        # A delayed or replayed frame of the dead incarnation is refused, not delivered.
        stale = FrameWriter(7, 0, 1001, 111).data(0, UNFRAGMENTED, 5, b"ghost")
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.sendto(stale, b.t.local_address)
        raw.close()
        # (sent from another address, it is refused before its epoch is even looked at)
        drops = b.t.counters.drops
        assert run_until(lambda: drops["stale_epoch"] + drops["unknown_member"] == 1, [a, b],
                         timeout_s=5)
        assert b"ghost" not in b.got(0)
    finally:
        a.t.close()
        b.t.close()


def test_receiver_restart_is_brought_forward_by_setup():
    a = Endpoint(UdpTransport(LOOPBACK, 0, 7, 0))
    b = Endpoint(UdpTransport(LOOPBACK, 0, 7, 1))
    b_port = b.t.local_address[1]
    a.t.add_peer(1, LOOPBACK, b_port)
    b.t.add_peer(0, *a.t.local_address)
    try:
        a.queue(1, [b"before-%d" % i for i in range(100)])
        assert run_until(lambda: len(b.got(0)) == 100 and
                         a.t.stream_state(1)["acked"] == a.t.stream_state(1)["tail"],
                         [a, b], timeout_s=10)
        b.t.close()
        b = Endpoint(UdpTransport(LOOPBACK, b_port, 7, 1))        # fresh image starts at 0
        b.t.add_peer(0, *a.t.local_address)
        after = [b"after-%d" % i for i in range(100)]
        a.queue(1, after)
        assert run_until(lambda: len(b.got(0)) == 100, [a, b], timeout_s=10)
        check_exactly_once_in_order(after, b.got(0))
        assert a.t.counters.setups_sent >= 1 and b.t.counters.setup_jumps >= 1
        assert a.t.counters.peer_restarts == 1
    finally:
        a.t.close()
        b.t.close()
