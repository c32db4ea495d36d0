"""Review of the service-level exactly-once invariant (aeronpy/testing/invariants.py).

The checker caught a message delivered twice and a gap before a later delivered message, but
not a committed message of an open session consumed without reaching its service when no
later message of that session followed: sim.check() passed although "exactly once" was
broken (zero times)."""
from __future__ import annotations

import pytest

from aeronpy.cluster import entries as E
from aeronpy.cluster.module import ConsensusModule
from aeronpy.service import ClusteredService
from aeronpy.testing import InvariantViolation, SimCluster


class _Echo(ClusteredService):
    def __init__(self):
        self.seen = []

    def on_session_message(self, session, timestamp_ns, message):
        self.seen.append(bytes(message))
        if session is not None:
            session.offer(b"re:" + bytes(message))


def _lossy_module(monkeypatch):
    """A module that consumes the seq of a message b'drop-me' without delivering it."""
    original = ConsensusModule._apply_session_message

    def lossy(self, session_id, seq, correlation_id, service_id, payload):
        if bytes(payload) == b"drop-me":
            self.sessions.get(session_id).last_applied_seq = seq
            return
        return original(self, session_id, seq, correlation_id, service_id, payload)
    monkeypatch.setattr(ConsensusModule, "_apply_session_message", lossy)


def test_a_committed_message_never_delivered_is_caught(monkeypatch):
    _lossy_module(monkeypatch)
    sim = SimCluster(3, seed=3, service=_Echo)
    client = sim.client()
    assert client.request(b"a") == b"re:a"
    with pytest.raises(InvariantViolation, match="exactly-once: .*without delivering it"):
        client.offer(b"drop-me")          # the last message of the session: nothing follows it
        sim.run_for(500)
    assert all(sim.service(m).seen == [b"a"] for m in range(3))
    with pytest.raises(InvariantViolation, match="seed=3"):
        sim.check()


def test_control_the_same_run_without_the_bug_is_clean():
    sim = SimCluster(3, seed=3, service=_Echo)
    client = sim.client()
    assert client.request(b"a") == b"re:a"
    client.offer(b"drop-me")
    sim.run_for(500)
    assert all(sim.service(m).seen == [b"a", b"drop-me"] for m in range(3))
    sim.check()


def test_legal_non_deliveries_are_not_flagged():
    # a logged duplicate of an applied seq, and a message for a session already closed, reach
    # no service, legitimately
    sim = SimCluster(3, seed=4, service=_Echo)
    client = sim.client()
    assert client.request(b"one") == b"re:one"
    session_id = client.session_id
    leader = sim.leader()
    again = E.encode_session_message(sim.now_ns, session_id, 1, 99, 0, b"again")
    assert sim.propose(leader, E.SESSION_MESSAGE, again) > 0
    sim.run_for(100)
    client.close()
    sim.run_for(500)
    late = E.encode_session_message(sim.now_ns, session_id, 2, 100, 0, b"late")
    assert sim.propose(sim.leader(), E.SESSION_MESSAGE, late) > 0
    sim.run_for(200)
    sim.check()
    assert sim.module(sim.leader()).counters["duplicate_message_skipped"] >= 1
    assert sim.module(sim.leader()).counters["message_for_closed_session"] >= 1
    assert all(sim.service(m).seen == [b"one"] for m in range(3))
