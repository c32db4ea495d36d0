"""Review: ``ClientSession.offer`` bounds the reply by its size in bytes (what is cached and
sent), not by ``len()`` of whatever buffer the service passed (an array of 8-byte items has
len() of an eighth of its size), as ``Cluster.offer`` already does."""
from array import array

import pytest

from aeronpy.cluster import protocol as P
from aeronpy.cluster.container import ServiceError
from aeronpy.errors import MessageTooLargeError

from .fakes import FakeWorld, RecordingService

C1 = "c1:7000"


class ArrayReply(RecordingService):
    def on_session_message(self, session, timestamp_ns, message):
        n = int(bytes(message))
        session.offer(array("q", [7] * n))          # 8 * n bytes, len() n


def world():
    return FakeWorld(services=lambda: [ArrayReply()], max_message_bytes=64)


def test_a_reply_within_the_bound_in_bytes_is_sent_whole():
    w = world()
    sid = w.connect()
    w.ingress(0, C1, P.SessionMessage(sid, 1, 1, 0, b"8"))        # 64 bytes
    w.settle()
    [reply] = w.take(0, P.EgressMessage)
    assert bytes(reply.payload) == array("q", [7] * 8).tobytes()


def test_a_reply_over_the_bound_in_bytes_raises_in_the_callback():
    w = world()
    sid = w.connect()
    w.ingress(0, C1, P.SessionMessage(sid, 1, 1, 0, b"9"))        # 72 bytes, len() 9
    with pytest.raises(ServiceError) as err:
        w.settle()
    assert isinstance(err.value.cause, MessageTooLargeError)
    assert w.take(0, P.EgressMessage) == []


class IntOffer(RecordingService):
    def on_session_message(self, session, timestamp_ns, message):
        self.cluster.offer(5)                       # a mistake: not five bytes of zeroes


def test_cluster_offer_of_an_int_is_a_type_error_not_zero_bytes():
    w = FakeWorld(services=lambda: [IntOffer()])
    sid = w.connect()
    w.ingress(0, C1, P.SessionMessage(sid, 1, 1, 0, b"x"))
    with pytest.raises(ServiceError) as err:
        w.settle()
    assert isinstance(err.value.__cause__, TypeError), err.value
    assert not w.modules[0].pending_service_messages
