"""A real ClientCore against three consensus modules on fake cores: every message gets its
reply across a leader change, even when the new leader answers a later message first.

The bug these pin down (seen as tests/e2e/test_exactly_once hanging): the reply to message 2
made by a new leader while it applied its predecessor's entries reached the client, the reply
to message 1 had died with the old leader, and the client treated the reply to 2 as an
acknowledgement of 1 as well. Message 1 left the resend window, nobody asked for its reply
again, and the client waited for it forever.
"""
import random

from aeronpy.cluster import protocol as P
from aeronpy.cluster.client_core import ClientConfig, ClientCore, ClientState

from .fakes import FakeWorld

C1 = "c1:7000"
UNKNOWN_SERVICE = 5          # a message nobody answers: the leader acks it instead


class Session:
    """Moves messages between one ClientCore and the members of a FakeWorld."""

    def __init__(self, world: FakeWorld):
        self.w = world
        self.core = ClientCore([f"m{i}:9000" for i in range(3)], C1,
                               ClientConfig(resend_timeout_ns=10 ** 15, keepalive_interval_ns=10 ** 15),
                               random.Random(7))
        self.delivered: list[tuple[int, bytes]] = []

    def to_cluster(self, dead=()) -> None:
        for endpoint, message in self.core.take_outgoing():
            member = int(endpoint[1:endpoint.index(":")])
            if member not in dead:
                self.w.ingress(member, C1, message)

    def from_member(self, member: int) -> None:
        for message in self.w.take(member, client_ref=C1):
            self.core.on_egress(message, self.w.now_ns)
        self.core.poll(lambda cid, payload: self.delivered.append((cid, bytes(payload))))

    def connect(self) -> None:
        self.core.connect(self.w.now_ns)
        self.to_cluster()
        self.w.settle()
        self.from_member(0)
        assert self.core.state is ClientState.CONNECTED


def crash_leader_after_it_applied_two_of_three(w: FakeWorld, s: Session, service_ids) -> list[int]:
    """Member 0 applies messages 1 and 2 (their replies never leave it: it crashes); member 1
    holds 1 and 2 but knows only 1 committed, so it applies 2 *as the new leader*."""
    cids = [s.core.offer(b"m%d" % seq, service_id, w.now_ns) for seq, service_id in enumerate(service_ids, 1)]
    s.to_cluster()
    base = w.cores[0].log.last_index - 3
    w.replicate(to={1}, upto=base + 2)
    w.commit(base + 2, members={0})
    w.commit(base + 1, members={1})
    w.egress[0].clear()                       # member 0 crashes: its egress never left
    w.elect(1, alive={1, 2})
    w.replicate(to={2})
    w.commit(members={1, 2})                  # member 1 applies message 2, then is ready
    assert w.modules[1].leader_ready
    return cids


def test_reply_to_a_later_message_from_a_new_leader_does_not_lose_an_earlier_reply():
    w = FakeWorld(members=3)
    w.elect(0)
    w.settle()
    s = Session(w)
    s.connect()
    a, b, c = crash_leader_after_it_applied_two_of_three(w, s, (0, 0, 0))
    s.from_member(1)          # b's reply (made while member 1 caught up), then NEW_LEADER
    assert s.delivered == [(b, b"re:m2")]
    assert s.core.unacknowledged == 3, "an unanswered message left the window"
    s.to_cluster(dead={0})    # the NEW_LEADER event made it re-send the window: a, b, c
    w.settle()
    s.from_member(1)
    assert sorted(s.delivered) == [(a, b"re:m1"), (b, b"re:m2"), (c, b"re:m3")]
    assert s.core.unacknowledged == 0
    assert s.core.counters.get("duplicate_responses") == 1      # b, answered again from the cache
    assert [sv.messages for sv in w.services(1)] == [[b"m1", b"m2", b"m3"]]


def test_a_new_leader_does_not_ack_its_predecessors_messages_before_it_is_ready():
    # message 2 gets no reply: as the new leader applies it, a SessionAck for it would say
    # "done up to 2" and release message 1, whose reply died with the old leader
    w = FakeWorld(members=3)
    w.elect(0)
    w.settle()
    s = Session(w)
    s.connect()
    a, _, c = crash_leader_after_it_applied_two_of_three(w, s, (0, UNKNOWN_SERVICE, 0))
    assert w.take(1, P.SessionAck, C1) == []
    s.from_member(1)          # just the NEW_LEADER event
    assert s.core.unacknowledged == 3
    s.to_cluster(dead={0})
    w.settle()
    s.from_member(1)
    assert sorted(s.delivered) == [(a, b"re:m1"), (c, b"re:m3")]
    assert s.core.unacknowledged == 0
