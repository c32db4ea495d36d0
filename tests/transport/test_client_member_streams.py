"""Client transports and members' streams to them, as the end-to-end tests exposed:
a client matches member frames by source address (it is given endpoints, not member ids),
and a member that forgot a silent client and hears from it again (same address and epoch)
starts its new stream past the old one, so the client's image never sees positions go back."""
from aeronpy.transport import StreamConfig, UdpTransport
from tests.transport.harness import Endpoint, LOOPBACK, run_until


def _member(member_id, **kw):
    return Endpoint(UdpTransport(LOOPBACK, 0, 0, member_id, accept_clients=True, **kw))


def _client(*members):
    c = Endpoint(UdpTransport(LOOPBACK, 0, 0, -1, config=StreamConfig(idle_interval_ns=20_000_000)))
    for peer_id, m in enumerate(members):      # the client's own numbering, not member ids
        c.t.add_peer(peer_id, *m.t.local_address)
    return c


def test_client_matches_member_frames_by_address_not_sender_id():
    m2, m0 = _member(2), _member(0)
    c = _client(m2, m0)          # peer 0 is member 2, peer 1 is member 0
    try:
        c.queue(0, [b"to-2"])
        c.queue(1, [b"to-0"])
        assert run_until(lambda: m2.received and m0.received, [m2, m0, c], timeout_s=5)
        (ref2,), (ref0,) = m2.received.keys(), m0.received.keys()
        m2.queue(ref2, [b"from-2"])
        m0.queue(ref0, [b"from-0"])
        assert run_until(lambda: c.got(0) and c.got(1), [m2, m0, c], timeout_s=5)
        assert c.got(0) == [b"from-2"] and c.got(1) == [b"from-0"]
        assert c.t.counters.drops["unknown_member"] == 0
    finally:
        for e in (m2, m0, c):
            e.t.close()


def test_member_that_forgot_a_client_reaches_it_again():
    lost = []
    m = _member(1, client_timeout_ns=200_000_000, on_client_lost=lost.append)
    c = _client(m)
    try:
        c.queue(0, [b"hello"])
        assert run_until(lambda: m.received, [m, c], timeout_s=5)
        (ref,) = m.received.keys()
        m.queue(ref, [b"reply-%d" % i for i in range(20)])
        assert run_until(lambda: len(c.got(0)) == 20, [m, c], timeout_s=5)
        # the client goes silent (not polled), the member forgets it
        assert run_until(lambda: lost, [m], timeout_s=5)
        c.queue(0, [b"back again"])
        assert run_until(lambda: len(m.received) == 2 and m.got(min(m.received)), [m, c], timeout_s=5)
        new_ref = min(m.received)
        assert new_ref != ref and m.got(new_ref)[-1] == b"back again"
        m.queue(new_ref, [b"welcome back"])
        assert run_until(lambda: len(c.got(0)) == 21, [m, c], timeout_s=5), c.t.snapshot_counters()
        assert c.got(0)[-1] == b"welcome back"
    finally:
        m.t.close()
        c.t.close()
