"""``UdpTransport.expire_client``: a client whose session closed gives back its place among
``max_clients`` soon after, however it keeps sending, not only after ``client_timeout_ns`` of
silence (a gateway closing and reopening sessions filled the table with closed ones)."""
from __future__ import annotations

from aeronpy.transport.udp import CLIENT_SENDER_ID, UdpTransport
from tests.transport.harness import FakeClock

MS = 1_000_000
LOOPBACK = "127.0.0.1"


def _member_and_client():
    clock = FakeClock()
    lost = []
    member = UdpTransport(LOOPBACK, 0, 7, 0, accept_clients=True, clock=clock,
                          client_timeout_ns=10_000 * MS, on_client_lost=lost.append)
    client = UdpTransport(LOOPBACK, 0, 7, CLIENT_SENDER_ID, clock=clock)
    client.add_peer(0, *member.local_address)
    assert client.send(0, b"hello") > 0
    client.flush()
    got = []
    for _ in range(500):
        member.poll(lambda peer, message: got.append(peer))
        if got:
            break
        member.wait_readable(2 * MS)
    assert got and member.client_ids() == [got[0]]
    return member, client, clock, lost, got[0]


def test_an_expired_client_is_let_go_at_its_time_and_not_before():
    member, client, clock, lost, ref = _member_and_client()
    try:
        assert member.expire_client(ref, 500 * MS)
        assert member.next_due_ns() <= clock.now + 500 * MS
        clock.now += 499 * MS
        member.do_work(clock.now)
        assert member.client_ids() == [ref] and lost == []
        clock.now += 2 * MS
        member.do_work(clock.now)
        assert member.client_ids() == [] and lost == [ref]
        assert member.counters.clients_lost == 1
    finally:
        member.close()
        client.close()


def test_control_without_expiry_the_client_stays_for_its_timeout():
    member, client, clock, lost, ref = _member_and_client()
    try:
        clock.now += 501 * MS
        member.do_work(clock.now)
        assert member.client_ids() == [ref] and lost == []
    finally:
        member.close()
        client.close()


def test_only_clients_expire_and_an_earlier_time_wins():
    member, client, clock, lost, ref = _member_and_client()
    try:
        member.add_peer(3, LOOPBACK, 9)
        assert not member.expire_client(3, MS)          # a member: never
        assert not member.expire_client(-999, MS)       # no such client
        assert member.expire_client(ref, 900 * MS)
        assert member.expire_client(ref, 100 * MS)      # the earlier time
        assert member.expire_client(ref, 800 * MS)      # a later one does not postpone it
        clock.now += 101 * MS
        member.do_work(clock.now)
        assert lost == [ref]
    finally:
        member.close()
        client.close()


def test_keep_client_undoes_an_expiry():
    """A session opened at the client's address again (it closed and reconnected at once from
    the same port): the node keeps the place its old session's close was letting go."""
    member, client, clock, lost, ref = _member_and_client()
    try:
        assert member.expire_client(ref, 500 * MS)
        assert member.keep_client(ref)
        assert not member.keep_client(-999)             # no such client
        clock.now += 501 * MS
        member.do_work(clock.now)
        assert member.client_ids() == [ref] and lost == []
    finally:
        member.close()
        client.close()
