"""Review of the simulated client's duplicate-reply check (aeronpy/testing/client.py).

The contract lets a service answer one message several times (ModuleConfig.
reply_cache_replies_per_message, 8 by default, are kept and re-sent): the harness must accept
several distinct replies to one correlation id, and still fail when the *same* reply is
handed to the application twice (the client's duplicate filter broken)."""
from __future__ import annotations

import pytest

from aeronpy.cluster.client_core import ClientCore
from aeronpy.service import ClusteredService
from aeronpy.testing import InvariantViolation, SimCluster


class TwoReplies(ClusteredService):
    """Answers every message twice: an acknowledgement, then the result."""

    def on_session_message(self, session, timestamp_ns, message):
        if session is not None:
            session.offer(b"ack:" + bytes(message))
            session.offer(b"done:" + bytes(message))


def _drain(sim, client, got, want, within_ms=2_000):
    def poll():
        client.poll_egress(lambda cid, payload: got.append((cid, bytes(payload))))
        return len(got) >= want
    return sim.run_until(poll, within_ms)


def test_several_replies_to_one_message_are_legal_with_offer():
    sim = SimCluster(3, seed=5, service=TwoReplies)
    client = sim.client()
    got = []
    cids = [client.offer(b"m%d" % i) for i in range(3)]
    assert all(c > 0 for c in cids)
    assert _drain(sim, client, got, 6)
    assert sorted(got) == sorted([(c, b"ack:m%d" % i) for i, c in enumerate(cids)]
                                 + [(c, b"done:m%d" % i) for i, c in enumerate(cids)])
    sim.run_for(200)
    sim.check()


def test_several_replies_to_one_message_are_legal_with_request():
    sim = SimCluster(3, seed=6, service=TwoReplies)
    client = sim.client()
    assert client.request(b"x") == b"ack:x"
    got = []
    assert _drain(sim, client, got, 1)            # the second reply, through poll_egress
    assert [p for _c, p in got] == [b"done:x"]
    sim.check()


@pytest.mark.parametrize("seed", range(8, 13))
def test_several_replies_survive_a_leader_crash_and_resends(seed):
    # re-sent messages are answered from the reply cache with all their replies: each
    # distinct reply reaches the application once. The network duplicates and delays but
    # drops nothing: the simulator drops a client link's datagrams outright (a node's stream
    # would have them sent again), and a second reply lost after the first got through is
    # the documented limit (docs/programming.md, "A client that stops reading"); with 5 %
    # dropped, 19 of seeds 0-59 lost one that way, and seed 8, the one this test ran, passed
    # only until the course of the runs changed
    sim = SimCluster(3, seed=seed, service=TwoReplies)
    sim.network(duplicate=0.1, delay_ms=(0.5, 5.0))
    client = sim.client()
    got = []
    cids = [client.offer(b"c%d" % i) for i in range(4)]
    sim.run_for(2)
    sim.crash(sim.leader())
    assert _drain(sim, client, got, 8, within_ms=10_000)
    sim.run_for(500)
    client.poll_egress(lambda cid, payload: got.append((cid, bytes(payload))))
    assert len(got) == len(set(got)) == 8
    assert {c for c, _p in got} == set(cids)
    sim.check()


def test_the_same_reply_delivered_twice_still_fails(monkeypatch):
    """Negative control: the client's duplicate filter switched off and every datagram
    duplicated, the application gets one reply twice: the harness must say so."""
    monkeypatch.setattr(ClientCore, "_first_delivery", lambda self, seq, cid, payload: True)
    sim = SimCluster(3, seed=5, service=TwoReplies)
    client = sim.client()
    sim.network(duplicate=1.0)
    client.offer(b"dup")
    with pytest.raises(InvariantViolation, match="second reply to correlation id .* equal to one"):
        _drain(sim, client, [], 10)
    with pytest.raises(InvariantViolation):
        sim.check()
