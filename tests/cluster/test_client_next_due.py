"""``ClientCore.next_due_ns``: exactly when ``tick`` next sends something.

``AsyncClusterClient``'s background task waits until then when idle (at most
``IDLE_WAIT_MAX_S``) instead of 1 ms at a time, so each case is checked exactly: a tick a
nanosecond before the due time sends nothing, a tick at it sends. The async client's waits
themselves are checked end to end in tests/e2e/test_aio.py.
"""
from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientState

from .test_client_core import client, connected, sent


def _nothing_before_something_at(c, due):
    sent(c)
    c.tick(due - 1)
    assert sent(c) == []
    c.tick(due)
    assert sent(c) != []


def test_connecting_is_due_at_the_next_attempt():
    c = client(connect_attempt_timeout_ns=1000)
    assert c.next_due_ns() == 0                       # the first connect waits to be taken
    sent(c)
    assert c.next_due_ns() == 1000
    _nothing_before_something_at(c, 1000)


def test_an_idle_session_is_due_at_its_keepalive():
    c = connected(keepalive_interval_ns=100)
    c.offer(b"a", now_ns=60)
    sent(c)
    c.on_egress(P.SessionAck(42, 3, 1), 60)
    assert c.next_due_ns() == 160
    _nothing_before_something_at(c, 160)
    assert c.next_due_ns() == 260                     # the next keepalive after that one


def test_an_unacknowledged_window_is_due_at_its_resend():
    c = connected(keepalive_interval_ns=10_000, resend_timeout_ns=300)
    c.offer(b"a", now_ns=50)
    sent(c)
    due = c.next_due_ns()
    assert due < 50 + 10_000
    _nothing_before_something_at(c, due)


def test_queued_messages_are_due_at_once_and_a_closed_client_never():
    c = connected()
    c.offer(b"a")
    assert c.next_due_ns() == 0
    sent(c)
    c.close(0)
    sent(c)
    assert c.state is ClientState.CLOSED and c.next_due_ns() == 1 << 62

