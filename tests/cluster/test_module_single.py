"""ConsensusModule on one member (a fake core that commits whatever the test settles)."""
import pytest

from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P
from aeronpy.cluster.module_config import SecretAuthenticator
from aeronpy.cluster.container import ServiceError
from aeronpy.cluster.module import ModuleState
from aeronpy.errors import MessageTooLargeError
from aeronpy.service import CloseReason, ClusteredService

from .fakes import FakeWorld, RecordingService

C1 = "c1:7000"


def msg(session_id, seq, payload=b"x", service_id=0, correlation_id=None):
    return P.SessionMessage(session_id, seq, 100 + seq if correlation_id is None else correlation_id,
                            service_id, payload)


def test_connect_opens_a_session_after_the_open_is_applied():
    w = FakeWorld()
    w.ingress(0, C1, P.SessionConnect(1, 11, C1))
    assert w.take(0, P.SessionEvent) == []              # nothing before the open is applied
    assert w.log_types()[-1] == E.SESSION_OPEN
    w.settle()
    [ok] = w.take(0, P.SessionEvent, C1)
    assert ok.code == P.EVENT_OK and ok.correlation_id == 1
    assert ok.session_id == 2                           # the SESSION_OPEN's log index
    assert ok.detail == "m0:9000"
    assert w.services(0)[0].events[0][:2] == ("open", 2)


def test_reconnect_with_same_nonce_does_not_open_twice():
    w = FakeWorld()
    sid = w.connect()
    w.ingress(0, C1, P.SessionConnect(1, 11, C1))
    w.settle()
    [ok] = w.take(0, P.SessionEvent)
    assert ok.session_id == sid and ok.code == P.EVENT_OK
    assert w.log_types().count(E.SESSION_OPEN) == 1


def test_message_is_applied_and_answered_with_its_correlation_id_and_ack():
    w = FakeWorld()
    sid = w.connect()
    w.ingress(0, C1, msg(sid, 1, b"hello", correlation_id=77))
    w.settle()
    [reply] = w.take(0, P.EgressMessage, C1)
    assert (reply.session_id, reply.correlation_id, reply.ack_seq, reply.payload) == (sid, 77, 1, b"re:hello")
    assert w.services(0)[0].messages == [b"hello"]


def test_message_sent_twice_is_sequenced_once_and_the_resend_gets_the_cached_reply():
    w = FakeWorld()
    sid = w.connect()
    w.ingress(0, C1, msg(sid, 1, b"a"))
    w.ingress(0, C1, msg(sid, 1, b"a"))                 # before apply: already sequenced
    assert w.log_types().count(E.SESSION_MESSAGE) == 1
    w.settle()
    first = w.take(0, P.EgressMessage)
    w.ingress(0, C1, msg(sid, 1, b"a"))                 # after apply: answered from the cache
    w.settle()
    again = w.take(0, P.EgressMessage)
    assert w.services(0)[0].messages == [b"a"]
    assert again == first and w.modules[0].counters["replies_from_cache"] == 1


def test_resend_of_an_applied_message_without_reply_is_acked():
    class Silent(ClusteredService):
        pass
    w = FakeWorld(services=lambda: [Silent()])
    sid = w.connect()
    w.ingress(0, C1, msg(sid, 1))
    w.settle()
    assert w.take(0, P.SessionAck) == [P.SessionAck(sid, 1, 1)]
    w.ingress(0, C1, msg(sid, 1))
    w.collect()
    assert w.take(0, P.SessionAck) == [P.SessionAck(sid, 1, 1)]
    assert w.log_types().count(E.SESSION_MESSAGE) == 1


def test_sequence_gap_is_not_proposed():
    w = FakeWorld()
    sid = w.connect()
    w.ingress(0, C1, msg(sid, 2))
    assert E.SESSION_MESSAGE not in w.log_types()
    assert w.modules[0].counters["ingress_seq_gap"] == 1


def test_duplicate_entry_in_the_log_is_applied_once():
    """Two leaders may both sequence a message; apply skips the second copy."""
    w = FakeWorld()
    sid = w.connect()
    w.ingress(0, C1, msg(sid, 1, b"once"))
    w.cores[0].log.entries.append(w.cores[0].log.entries[-1])
    w.settle()
    assert w.services(0)[0].messages == [b"once"]
    assert w.modules[0].counters["duplicate_message_skipped"] == 1


def test_authentication_rejected_reaches_the_client_and_nothing_is_logged():
    w = FakeWorld(authenticator=SecretAuthenticator(b"s3cret"))
    before = list(w.log_types())
    w.ingress(0, C1, P.SessionConnect(5, 1, C1, b"wrong"))
    [event] = w.take(0, P.SessionEvent, C1)
    assert event.code == P.EVENT_AUTHENTICATION_REJECTED and event.correlation_id == 5
    assert w.log_types() == before
    assert w.connect(credentials=b"s3cret") > 0


def test_unknown_session_id_is_refused():
    w = FakeWorld()
    w.connect()
    w.ingress(0, "evil:1", msg(999, 1))
    [event] = w.take(0, P.SessionEvent, "evil:1")
    assert event.code == P.EVENT_CLOSED and event.session_id == 999
    assert E.SESSION_MESSAGE not in w.log_types()


def test_another_clients_session_id_is_refused():
    w = FakeWorld()
    sid = w.connect()
    w.ingress(0, "evil:1", msg(sid, 1))
    w.ingress(0, "evil:1", P.SessionClose(sid, 1))
    assert [e.code for e in w.take(0, P.SessionEvent, "evil:1")] == [P.EVENT_ERROR, P.EVENT_ERROR]
    assert E.SESSION_MESSAGE not in w.log_types() and E.SESSION_CLOSE not in w.log_types()
    assert w.modules[0].counters["ingress_session_client_mismatch"] == 2


def test_session_times_out_after_silence_and_keepalive_prevents_it():
    w = FakeWorld(session_timeout_ns=1_000)
    sid = w.connect()
    w.tick(600)
    w.ingress(0, C1, P.SessionKeepAlive(sid, 1))
    w.tick(600)
    assert E.SESSION_CLOSE not in w.log_types()
    w.tick(500)
    w.tick(0)                                           # proposed once only
    assert w.log_types().count(E.SESSION_CLOSE) == 1
    w.settle()
    assert ("close", sid, CloseReason.TIMEOUT) in w.services(0)[0].events
    [closed] = w.take(0, P.SessionEvent, C1)
    assert closed.code == P.EVENT_CLOSED and closed.detail == "TIMEOUT"
    assert sid not in w.modules[0].sessions


def test_close_by_client():
    w = FakeWorld()
    sid = w.connect()
    w.ingress(0, C1, P.SessionClose(sid, 1))
    w.settle()
    assert ("close", sid, CloseReason.CLIENT_ACTION) in w.services(0)[0].events
    assert w.services(0)[0].cluster.client_sessions == ()


class Closer(RecordingService):
    def on_session_message(self, session, timestamp_ns, message):
        super().on_session_message(session, timestamp_ns, message)
        if bytes(message) == b"bye":
            assert self.cluster.close_client_session(session.id)


def test_close_by_service_reaches_every_service_after_the_callback():
    w = FakeWorld(services=lambda: [Closer(), RecordingService()])
    sid = w.connect()
    w.ingress(0, C1, msg(sid, 1, b"bye"))
    w.settle()
    for service in w.services(0):
        assert ("close", sid, CloseReason.SERVICE_ACTION) in service.events
    events = w.take(0, P.SessionEvent, C1)
    assert [e.code for e in events] == [P.EVENT_CLOSED]
    # the reply was made before the close, and its ack came with it
    assert [r.payload for r in w.take(0, P.EgressMessage)] == [b"re:bye"]


def test_messages_reach_only_the_named_service_and_opens_reach_all():
    w = FakeWorld(services=lambda: [RecordingService(), RecordingService()])
    sid = w.connect()
    w.ingress(0, C1, msg(sid, 1, b"to0", service_id=0))
    w.ingress(0, C1, msg(sid, 2, b"to1", service_id=1))
    w.ingress(0, C1, msg(sid, 3, b"nobody", service_id=7))
    w.settle()
    s0, s1 = w.services(0)
    assert s0.messages == [b"to0"] and s1.messages == [b"to1"]
    assert s0.events[0][0] == s1.events[0][0] == "open"
    # refused at ingress with an error the client turns into MessageRejectedError; its
    # placeholder entry still consumes the seq, so later messages flow on
    assert w.modules[0].counters["ingress_unknown_service"] == 1
    assert [e.detail for e in w.take(0, P.SessionEvent) if e.code == P.EVENT_ERROR] == \
        [P.DETAIL_UNKNOWN_SERVICE]
    assert w.modules[0].sessions.get(sid).last_applied_seq == 3    # the bad one still consumed its seq


def test_oversized_ingress_is_refused_and_oversized_response_stops_the_node():
    class Big(ClusteredService):
        def on_session_message(self, session, timestamp_ns, message):
            session.offer(b"y" * 65)
    w = FakeWorld(services=lambda: [Big()], max_message_bytes=64)
    sid = w.connect()
    w.ingress(0, C1, msg(sid, 1, b"x" * 65))
    [error] = w.take(0, P.SessionEvent)
    assert (error.code, error.detail, error.correlation_id) == (P.EVENT_ERROR, "message too large", 101)
    w.settle()      # Big would fail the node if it saw the placeholder (its reply is too large)
    # the refused message consumed seq 1 with a placeholder no service sees, and is acked, so
    # it leaves the client's window instead of blocking every later message as a seq gap
    assert w.modules[0].sessions.get(sid).last_applied_seq == 1
    assert w.modules[0].counters["rejected_message_skipped"] == 1
    assert [a.ack_seq for a in w.take(0, P.SessionAck)] == [1]
    w.ingress(0, C1, msg(sid, 1, b"x" * 65))             # re-sent: refused again, acked again
    assert [e.detail for e in w.take(0, P.SessionEvent)] == ["message too large"]
    w.settle()
    assert [a.ack_seq for a in w.take(0, P.SessionAck)] == [1]
    assert w.log_types().count(E.SESSION_MESSAGE) == 1
    w.ingress(0, C1, msg(sid, 2, b"x" * 64))
    with pytest.raises(ServiceError) as info:
        w.settle()
    assert isinstance(info.value.cause, MessageTooLargeError)


def test_service_exception_fails_the_module_and_every_later_apply():
    class Boom(ClusteredService):
        def on_session_message(self, session, timestamp_ns, message):
            raise RuntimeError("bug")
    w = FakeWorld(services=lambda: [Boom()])
    sid = w.connect()
    w.ingress(0, C1, msg(sid, 1))
    w.ingress(0, C1, msg(sid, 2))
    with pytest.raises(ServiceError, match="RuntimeError: bug") as info:
        w.settle()
    assert info.value.index == w.cores[0].log.last_index - 1
    module = w.modules[0]
    assert module.failure is info.value and module.container.errors == 1
    with pytest.raises(ServiceError):
        w.apply()
    assert module.tick(w.now_ns) == 0
    assert module.state is ModuleState.FAILED


def test_egress_to_a_vanished_client_is_bounded():
    class Chatty(ClusteredService):
        def on_session_message(self, session, timestamp_ns, message):
            for _ in range(10):
                session.offer(b"z")
    w = FakeWorld(services=lambda: [Chatty()], egress_queue_max=4)
    sid = w.connect()
    w.ingress(0, C1, msg(sid, 1))
    w.replicate()
    w.cores[0].commit_index = w.cores[0].log.last_index
    module = w.modules[0]
    for i in range(module.applied_index + 1, w.cores[0].commit_index + 1):
        module.apply(i, *w.cores[0].log.entries[i - 1])
    assert len(module.egress) == 4 and module.counters["egress_dropped"] == 6
    sent = []
    assert module.drain_egress(lambda ref, m: sent.append(m) or len(sent) < 2) == 1
    assert module.egress.backlog(C1) == 3              # a full client keeps its backlog


def test_cluster_time_is_the_leaders_clock_in_the_entry_and_never_goes_back():
    w = FakeWorld()
    sid = w.connect()
    w.now_ns = 5_000
    w.ingress(0, C1, msg(sid, 1))
    w.settle()
    stamps = [e[-1] for e in w.services(0)[0].events if e[0] == "message"]
    assert stamps == [1_000_000_000]                    # clock went backwards: clamped
    w.now_ns = 2_000_000_000
    w.ingress(0, C1, msg(sid, 2))
    w.settle()
    assert w.services(0)[0].events[-1][-1] == 2_000_000_000
    assert w.services(0)[0].cluster.time_ns == 2_000_000_000


class _BuggyAuthenticator(SecretAuthenticator):
    """Looks credentials up in a table and forgets that unknown ones raise KeyError."""

    def authenticate(self, credentials, response_endpoint):
        return {b"s3cret": True, b"wrong": False}[bytes(credentials)]


def test_an_authenticator_that_raises_refuses_the_client_and_the_leader_carries_on():
    """Found while documenting the API: the exception escaped the duty cycle and stopped the
    leader, and a client retrying its credentials would then stop each new leader in turn."""
    reported = []
    w = FakeWorld(authenticator=_BuggyAuthenticator(b"unused"),
                  on_authenticator_error=reported.append)
    before = list(w.log_types())
    w.ingress(0, C1, P.SessionConnect(5, 1, C1, b"unknown token"))
    [event] = w.take(0, P.SessionEvent, C1)
    assert event.code == P.EVENT_AUTHENTICATION_REJECTED and event.correlation_id == 5
    counters = w.modules[0].counters
    assert counters["authenticator_errors"] == 1 and counters["authentication_rejected"] == 1
    assert [type(e) for e in reported] == [KeyError]
    assert w.log_types() == before
    assert w.connect(credentials=b"s3cret") > 0          # and the leader goes on serving


@pytest.mark.parametrize("service_id", [-1, -7, 2**31 - 1])
def test_a_message_for_a_service_id_out_of_range_is_refused_at_ingress(service_id):
    """-1 is also the log's placeholder for a refused message: a raw client (the library's
    own refuses a negative id before sending) must get an error, not a placeholder entry
    of its choosing that reaches no service."""
    w = FakeWorld()
    sid = w.connect()
    w.ingress(0, C1, msg(sid, 1, b"x", service_id=service_id))
    w.ingress(0, C1, msg(sid, 2, b"after"))
    w.settle()
    assert w.modules[0].counters["ingress_unknown_service"] == 1
    assert w.services(0)[0].messages == [b"after"]
