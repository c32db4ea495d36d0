"""Clients (sender_id -1): a server endpoint admits streams from unknown addresses (ingress),
answers them (egress), tells them apart by (address, epoch), bounds and expires them."""
from aeronpy.transport import StreamConfig, UdpTransport
from tests.transport.harness import Endpoint, LOOPBACK, check_exactly_once_in_order, run_until


def server(**kw):
    events = []
    t = UdpTransport(LOOPBACK, 0, 7, 0, accept_clients=True,
                     on_new_client=lambda pid, addr: events.append(("new", pid, addr)),
                     on_client_lost=lambda pid: events.append(("lost", pid)), **kw)
    return Endpoint(t), events


def client(srv, epoch=None, port=0):
    c = Endpoint(UdpTransport(LOOPBACK, port, 7, -1, epoch=epoch,
                              config=StreamConfig(idle_interval_ns=20_000_000)))
    c.t.add_peer(0, *srv.t.local_address)
    return c


def test_ingress_and_egress_with_dynamic_clients():
    srv, events = server()
    c1, c2 = client(srv), client(srv)
    try:
        c1.queue(0, [b"c1-%d" % i for i in range(100)])
        c2.queue(0, [b"c2-%d" % i for i in range(100)] + [b"z" * 5000])
        assert run_until(lambda: sum(map(len, srv.received.values())) == 201,
                         [srv, c1, c2], timeout_s=10)
        ids = {pid for kind, pid, *_ in events if kind == "new"}
        assert len(ids) == 2 and all(pid < -1 for pid in ids)
        assert sorted(srv.t.client_ids()) == sorted(ids)
        by_addr = {addr: pid for kind, pid, addr in events}
        p1, p2 = by_addr[c1.t.local_address], by_addr[c2.t.local_address]
        check_exactly_once_in_order([b"c1-%d" % i for i in range(100)], srv.got(p1))
        assert srv.got(p2)[-1] == b"z" * 5000
        # egress: the server answers each client through its peer handle
        srv.queue(p1, [b"to-c1-%d" % i for i in range(50)])
        srv.queue(p2, [b"to-c2"])
        assert run_until(lambda: len(c1.got(0)) == 50 and len(c2.got(0)) == 1,
                         [srv, c1, c2], timeout_s=10)
        check_exactly_once_in_order([b"to-c1-%d" % i for i in range(50)], c1.got(0))
        assert c2.got(0) == [b"to-c2"]
        assert srv.t.peer_alive(p1) and c1.t.peer_alive(0)
    finally:
        for e in (srv, c1, c2):
            e.t.close()


def test_client_restart_on_same_address_is_a_new_client_and_old_one_expires():
    srv, events = server(client_timeout_ns=400_000_000)
    c = client(srv, epoch=5)
    port = c.t.local_address[1]
    try:
        c.queue(0, [b"hello"])
        assert run_until(lambda: len(events) == 1, [srv, c], timeout_s=5)
        c.t.close()
        c = client(srv, epoch=6, port=port)
        c.queue(0, [b"again"])
        new_events = lambda: [e for e in events if e[0] != "lost"]   # noqa: E731
        assert run_until(lambda: len(new_events()) == 2, [srv, c], timeout_s=5)
        old, new = new_events()[0][1], new_events()[1][1]
        assert old != new and srv.got(new) == [b"again"]
        # one client per address: the new incarnation replaces the old at once (before, the
        # old one lingered until its timeout, so one socket could fill the client table)
        assert ("lost", old) in events
        assert events.index(("lost", old)) < events.index(new_events()[1])
        assert srv.t.client_ids() == [new]          # the live client stays (heartbeats)
        assert srv.t.send(old, b"x") == -1          # its handle is gone: NOT_CONNECTED
    finally:
        srv.t.close()
        c.t.close()


def test_client_limit_and_member_only_transport():
    srv, events = server(max_clients=1)
    members_only = Endpoint(UdpTransport(LOOPBACK, 0, 7, 1))
    c1, c2 = client(srv), client(srv)
    c3 = client(members_only)
    try:
        c1.queue(0, [b"one"])
        assert run_until(lambda: len(events) == 1, [srv, c1], timeout_s=5)
        c2.queue(0, [b"two"])
        c3.queue(0, [b"three"])
        assert run_until(lambda: srv.t.counters.drops["too_many_clients"] > 0 and
                         members_only.t.counters.drops["unknown_member"] > 0,
                         [srv, c1, c2, c3, members_only], timeout_s=5)
        assert len(events) == 1 and members_only.received == {}
    finally:
        for e in (srv, members_only, c1, c2, c3):
            e.t.close()


def test_one_socket_sending_fresh_epochs_holds_one_client_slot():
    """Found by an adversarial review: 1,100 datagrams from one socket, each with a new epoch,
    filled the client table (max_clients) and locked every new client out until they timed
    out, renewable at ~110 datagrams/s. One address now holds one client: a new epoch there
    replaces the old one, and a replaced epoch cannot come back."""
    srv, events = server(max_clients=4)
    flooder = client(srv, epoch=1000)
    port = flooder.t.local_address[1]
    honest = None
    try:
        for epoch in range(1001, 1013):              # 3x the table, one address
            flooder.t.close()
            flooder = client(srv, epoch=epoch, port=port)
            flooder.queue(0, [b"e%d" % epoch])
            assert run_until(lambda: any(e[0] == "new" and srv.got(e[1]) == [b"e%d" % epoch]
                                         for e in events), [srv, flooder], timeout_s=5)
            assert len(srv.t.client_ids()) == 1
        honest = client(srv)
        honest.queue(0, [b"let me in"])
        assert run_until(lambda: any(srv.got(pid) == [b"let me in"] for pid in srv.t.client_ids()),
                         [srv, honest, flooder], timeout_s=5)
        assert srv.t.counters.drops["too_many_clients"] == 0
        # a late datagram of a replaced epoch is refused, not admitted as a client again
        flooder.t.close()
        flooder = client(srv, epoch=1010, port=port)    # (the last 8 are remembered)
        flooder.queue(0, [b"back from the dead"])
        assert run_until(lambda: srv.t.counters.drops["stale_epoch"] > 0, [srv, flooder],
                         timeout_s=5)
        assert not any(srv.got(pid) == [b"back from the dead"] for pid in srv.t.client_ids())
    finally:
        for e in (srv, flooder, honest):
            if e is not None:
                e.t.close()
