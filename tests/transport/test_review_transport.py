"""Review tests of UdpTransport under faults: a peer restart in the middle of a fragmented
message, and a client transport given two spellings of one endpoint."""
from aeronpy._frame import BEGIN, FrameWriter
from aeronpy._udp import address_key
from aeronpy.transport import StreamConfig, UdpTransport
from tests.transport.harness import Endpoint, LOOPBACK, check_exactly_once_in_order, run_until


def test_member_restart_mid_reassembly_counts_the_abandoned_message():
    """A member restarting (new epoch) while we hold part of a fragmented message of its
    old incarnation: that message is lost (documented), and counted as incomplete_message
    like every other abandoned reassembly. It used to vanish without a count."""
    b = UdpTransport(LOOPBACK, 0, 7, 1, epoch=900)
    try:
        b.add_peer(0, LOOPBACK, 40000)
        key = address_key(LOOPBACK, 40000)
        got = []
        b._handler = lambda pid, m: got.append((pid, bytes(m)))
        old = FrameWriter(7, 0, 1001, 111)
        b._on_datagram_bound(key, memoryview(old.data(0, BEGIN, 3000, b"x" * 1000)))
        assert b.stream_state(0)["received"] == 1000 and not got
        new = FrameWriter(7, 0, 1001, 222)
        b._on_datagram_bound(key, memoryview(new.data(0, 3, 5, b"hello")))
        assert got == [(0, b"hello")]
        assert b.counters.peer_restarts == 1
        assert b.counters.drops["incomplete_message"] == 1
    finally:
        b.close()


def test_client_with_two_spellings_of_one_endpoint_keeps_one_stream():
    """A client transport is given endpoints, not member ids; two endpoint strings of one
    address (``localhost:P`` and ``127.0.0.1:P``: a configured name and the address a leader
    names in a redirect) became two peers, each with its own stream from position 0 under
    the client's one epoch. The server sees one (address, epoch) stream: the second stream's
    messages were duplicates of positions already consumed, silently dropped, and the first
    stream's STATUS went to the second peer, so the first sender never saw an ack."""
    srv = Endpoint(UdpTransport(LOOPBACK, 0, 7, 0, accept_clients=True))
    c = Endpoint(UdpTransport(LOOPBACK, 0, 7, -1, config=StreamConfig(idle_interval_ns=20_000_000)))
    port = srv.t.local_address[1]
    try:
        c.t.add_peer(0, "127.0.0.1", port)
        c.t.add_peer(1, "localhost", port)
        sent = []
        for i in range(40):
            m = b"msg-%d" % i
            c.queue(i % 2, [m])
            sent.append(m)
            c.offer_pending()
        assert run_until(lambda: sum(map(len, srv.received.values())) >= len(sent),
                         [srv, c], timeout_s=3)
        (client_id,) = srv.t.client_ids()
        check_exactly_once_in_order(sent, srv.got(client_id))
        # egress reaches the client, and both of its senders are acknowledged
        srv.queue(client_id, [b"reply"])
        assert run_until(lambda: c.got(0) + c.got(1) == [b"reply"], [srv, c], timeout_s=3)
        assert run_until(lambda: all(c.t.stream_state(p)["acked"] == c.t.stream_state(p)["tail"]
                                     for p in (0, 1)), [srv, c], timeout_s=3)
    finally:
        srv.t.close()
        c.t.close()


def test_removing_one_spelling_of_an_endpoint_keeps_the_other():
    srv = Endpoint(UdpTransport(LOOPBACK, 0, 7, 0, accept_clients=True))
    c = Endpoint(UdpTransport(LOOPBACK, 0, 7, -1))
    port = srv.t.local_address[1]
    try:
        c.t.add_peer(0, "127.0.0.1", port)
        c.t.add_peer(1, "localhost", port)
        assert c.t.remove_peer(0)
        c.queue(1, [b"one"])
        assert run_until(lambda: sum(map(len, srv.received.values())) == 1, [srv, c], timeout_s=3)
        (client_id,) = srv.t.client_ids()
        srv.queue(client_id, [b"two"])
        assert run_until(lambda: c.got(1) == [b"two"], [srv, c], timeout_s=3)
    finally:
        srv.t.close()
        c.t.close()


def test_a_position_at_the_int64_limit_cannot_crash_the_duty_cycle():
    """A client (ingress has no MAC) jumps its own stream to the largest position with a
    SETUP, then sends DATA there: the receiver's expected position wrapped negative, and the
    next STATUS (``FrameWriter.status`` refuses a negative position) raised ValueError out of
    ``do_work`` on every duty cycle: one client stopped the member's loop for good."""
    import socket
    srv = Endpoint(UdpTransport(LOOPBACK, 0, 7, 0, accept_clients=True))
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind((LOOPBACK, 0))
    try:
        w = FrameWriter(7, -1, 1001, 4242)
        top = (1 << 63) - 1
        for frame in (w.data(0, 3, 2, b"hi"), w.setup(top - 3), w.data(top - 3, 3, 8, b"x" * 8),
                      w.setup(top), w.data(top, 3, 1, b"y"), w.heartbeat(top)):
            raw.sendto(frame, srv.t.local_address)
        assert run_until(lambda: srv.t.socket.datagrams_in >= 6, [srv], timeout_s=3)
        run_until(lambda: False, [srv], timeout_s=0.3)   # STATUS and NAK timers run
        (client_id,) = srv.t.client_ids()
        assert srv.got(client_id) == [b"hi"]
        state = srv.t.stream_state(client_id)
        assert 0 <= state["received"] <= top
        assert srv.t.counters.drops["malformed"] >= 1
    finally:
        raw.close()
        srv.t.close()


import pytest  # noqa: E402


def test_a_frame_for_one_member_replayed_to_another_is_refused():
    """With a secret, a DATA frame member 0 sent to member 1, replayed to member 2 from member
    0's (spoofed) address, passes every check at member 2: same cluster, stream, sender,
    epoch (one epoch per process, for every destination), and a valid MAC, since the MAC
    covered no destination. Member 2 delivered member 1's message as member 0's, and member
    0's real frame at that place in its stream to member 2 was then a duplicate. The MAC is
    now bound to the destination member: the replay fails it and is counted as bad_mac, while
    member 0's own frames to member 2 still pass."""
    secret = b"s" * 16
    t0 = UdpTransport(LOOPBACK, 0, 7, 0, secret=secret, epoch=10)
    t1 = UdpTransport(LOOPBACK, 0, 7, 1, secret=secret, epoch=11)
    t2 = UdpTransport(LOOPBACK, 0, 7, 2, secret=secret, epoch=12)
    try:
        for t in (t1, t2):
            t.add_peer(0, *t0.local_address)
        t0.add_peer(1, *t1.local_address)
        t0.add_peer(2, *t2.local_address)
        from aeronpy.transport.counters import TransportCounters
        from aeronpy.transport.streams import StreamSender
        captured, own = [], []  # what member 0's streams to members 1 and 2 put on the wire
        StreamSender(t0._peers[1].writer, captured.append, t0.config,
                     TransportCounters()).offer(b"for member 1 only", 0)
        StreamSender(t0._peers[2].writer, own.append, t0.config,
                     TransportCounters()).offer(b"for member 2", 0)
        key0 = address_key(*t0.local_address)
        got = []
        t2._handler = lambda pid, m: got.append((pid, bytes(m)))
        bad_mac = t2.counters.drops["bad_mac"]
        for frame in captured:
            t2._on_datagram_bound(key0, memoryview(frame))
        assert got == []
        assert t2.counters.drops["bad_mac"] == bad_mac + len(captured)
        for frame in own:                    # control: member 0's frame for member 2 passes
            t2._on_datagram_bound(key0, memoryview(frame))
        assert got == [(0, b"for member 2")]
    finally:
        for t in (t0, t1, t2):
            t.close()
