"""Found by bench/pause_trial (SIGSTOP of a real leader): a leader that was stopped resumes
still leading an old term for at least part of one duty cycle, with a socket full of client
datagrams sent while it was stopped. A client that connected meanwhile (to the new leader)
sends every other keepalive to it (an idle client probes another member, in turn). The stale
leader does not know that session and answers "unknown session" (EVENT_CLOSED), and the
client accepted a close from any member, whatever its term: a live session ended for no reason.
Both halves, narrowly, in-process; both fixed (the stale leader leaves a keepalive naming a
newer term unanswered, counted keepalive_newer_term; the client ignores a close from an older
term, counted stale_closes)."""

from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientState

from tests.cluster.fakes import FakeWorld
from tests.cluster.test_client_core import connected



def test_a_leader_told_of_a_newer_term_by_a_keepalive_does_not_close_the_session():
    w = FakeWorld()                                    # member 0 leads term 1
    w.connect()
    newer_term = w.term + 2                            # the client's session opened in term 3
    w.ingress(0, "c2:7000", P.SessionKeepAlive(4242, newer_term))
    events = w.take(0, P.SessionEvent, "c2:7000")
    assert not [e for e in events if e.code == P.EVENT_CLOSED], events


def test_a_client_ignores_unknown_session_from_a_member_of_an_older_term():
    c = connected()                                    # session 42, leader m1 in term 3
    c.on_egress(P.SessionEvent(0, 42, P.EVENT_CLOSED, 0, 2, "unknown session"), 0)
    assert c.state is ClientState.CONNECTED


def test_a_close_from_the_clients_own_term_still_ends_the_session():
    """The control: the fix must keep a real close (same or newer term) final."""
    c = connected()
    c.on_egress(P.SessionEvent(0, 42, P.EVENT_CLOSED, 1, 3, "unknown session"), 0)
    assert c.state is ClientState.CLOSED
