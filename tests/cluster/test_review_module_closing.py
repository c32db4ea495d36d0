"""Review: ``close_client_session`` of a session that is already closing is False, for every
service alike (docs/programming.md section 2: "False if it is not open or already closing"),
whatever closes it: the client, a timeout or a service."""
import pytest

from aeronpy.cluster import protocol as P
from aeronpy.service import CloseReason

from .fakes import FakeWorld, RecordingService

C1 = "c1:7000"


class CloseAgain(RecordingService):
    def __init__(self):
        super().__init__()
        self.answers = []

    def on_session_message(self, session, timestamp_ns, message):
        super().on_session_message(session, timestamp_ns, message)
        if bytes(message) == b"kick":
            self.answers.append(("kick", self.cluster.close_client_session(session.id)))

    def on_session_close(self, session, timestamp_ns, reason):
        super().on_session_close(session, timestamp_ns, reason)
        self.answers.append((reason, self.cluster.close_client_session(session.id)))


def world():
    return FakeWorld(services=lambda: [CloseAgain(), CloseAgain()], session_timeout_ns=10**9)


def answers(w):
    return [s.answers for s in w.services(0)]


@pytest.mark.parametrize("how", ["client", "timeout", "service"])
def test_closing_session_cannot_be_closed_again(how):
    w = world()
    sid = w.connect()
    if how == "client":
        w.ingress(0, C1, P.SessionClose(sid, w.term))
        reason = CloseReason.CLIENT_ACTION
    elif how == "timeout":
        w.tick(2 * 10**9)
        reason = CloseReason.TIMEOUT
    else:
        w.ingress(0, C1, P.SessionMessage(sid, 1, 1, 0, b"kick"))
        reason = CloseReason.SERVICE_ACTION
    w.settle()
    assert sid not in w.modules[0].sessions
    expected_first = [("kick", True)] if how == "service" else []
    assert answers(w) == [expected_first + [(reason, False)], [(reason, False)]]
    # exactly one close reached each service
    for s in w.services(0):
        assert [e for e in s.events if e[0] == "close"] == [("close", sid, reason)]
