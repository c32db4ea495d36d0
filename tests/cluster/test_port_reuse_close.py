"""A client that reconnects from the same address (a gateway bound to a fixed port) while its
previous session is still open: when the old session closes (times out, say), the node must not
free the transport place the new session's client now holds. Found by the session-churn memory
review: the old session's close expired whoever held the endpoint, and the new client came back
as a new peer after a SETUP jump (egress_not_for_us), with messages in flight to re-send."""
from aeronpy.cluster import protocol as P

from .fakes import FakeWorld


def test_closing_one_of_two_sessions_at_one_endpoint_keeps_the_transport_place():
    freed = []
    w = FakeWorld(on_session_closed=freed.append)
    w.elect(0)
    w.settle()
    old = w.connect(0, endpoint="gw:9000", nonce=1, correlation_id=1)
    new = w.connect(0, endpoint="gw:9000", nonce=2, correlation_id=2)
    assert old != new
    w.ingress(0, "gw:9000", P.SessionClose(old, w.term))
    w.settle()
    assert old not in w.modules[0].sessions and new in w.modules[0].sessions
    assert freed == []                      # the new session's client keeps its place
    w.ingress(0, "gw:9000", P.SessionClose(new, w.term))
    w.settle()
    assert freed == ["gw:9000"]             # the control: the last one frees it
