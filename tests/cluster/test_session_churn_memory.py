"""Session churn leaves nothing behind: after many sessions have opened and ended (closed by
their client, closed by the service, timed out), across a leadership change, every
per-session table of every member's consensus module holds only sessions still open.

A trading cluster runs for weeks while gateways reconnect; a table keyed by session id that
forgets nothing grows with every session ever opened. The tables checked are the replicated
session table and the leader-local ones (heard times, sequenced seqs, proposed closes,
service views, the ack hold's state: module.py, acks.py). Memory measurements of the same
churn (tracemalloc, gc counts, RSS) are in the Task RS report; nothing here measures memory.
"""
from collections import Counter

import pytest

from aeronpy.cluster.module import ConsensusModule
from aeronpy.service import CloseReason, ClusteredService
from aeronpy.testing.sim import SimCluster

# the module's tables keyed by session id (sets and dicts)
SESSION_KEYED = ("_last_heard_ns", "_leader_seq", "_proposed_closes", "_views", "_closing",
                 "_ack_pending", "_ack_retry", "_ack_refused", "_lead_base", "_window_floor",
                 "_resent_queued", "_base_passed", "_new_leader_owed")
LIVE = 2            # clients kept open through the churn
ROUNDS = 2          # churn rounds, the first ending its sessions under a new leader
PER_ROUND = 18      # sessions churned per round, a third of them each way


class EchoOrClose(ClusteredService):
    """Echoes; closes the session (SERVICE_ACTION) after answering b"bye"."""

    def on_start(self, cluster, snapshot):
        self.cluster = cluster
        self.closed = Counter()             # close reason -> sessions it ended

    def on_session_close(self, session, timestamp_ns, close_reason):
        self.closed[close_reason] += 1

    def on_session_message(self, session, timestamp_ns, message):
        if session is not None:
            session.offer(message)
            if bytes(message) == b"bye":
                self.cluster.close_client_session(session.id)


def leftovers(module) -> dict:
    """Table name -> session ids it holds that are not open sessions (empty: nothing left)."""
    live = {s.session_id for s in module.sessions}
    tables = {name: set(getattr(module, name)) for name in SESSION_KEYED}
    tables["sessions._by_client"] = set(module.sessions._by_client.values())
    tables["reply.dropped_replies"] = set(module._reply.dropped_replies)
    out = {name: sorted(ids - live) for name, ids in tables.items() if ids - live}
    if len(module._pending_connects) > 0:
        out["_pending_connects"] = sorted(module._pending_connects)
    return out


def churn(sim: SimCluster, count: int, between=None) -> None:
    """``count`` sessions, each answered once; then ``between()`` (a leadership change, so
    the new leader's ack hold has them) and each is closed by its client, closed by the
    service, or left silent (its transport gone) to time out."""
    clients = [sim.client() for _ in range(count)]
    for client in clients:
        assert client.request(b"hi", timeout_s=2.0) == b"hi"
    if between is not None:
        between()
    for i, client in enumerate(clients):
        way = i % 3
        if way == 0:
            client.close()
        elif way == 1:
            assert client.request(b"bye", timeout_s=2.0) == b"bye"   # the service closes it
        else:
            client.transport.close()        # vanished: its session times out
    sim.run_for(1500)                        # past session_timeout_ms: every one has ended


def new_leader(sim: SimCluster) -> None:
    old = sim.leader()
    assert sim.transfer_leadership()
    assert sim.run_until(lambda: sim.leader() not in (None, old)
                         and sim.module(sim.leader()).leader_ready, 3000)


def run_churn(seed: int) -> SimCluster:
    sim = SimCluster(3, seed=seed, service=EchoOrClose, session_timeout_ms=700)
    live = [sim.client() for _ in range(LIVE)]
    for r in range(ROUNDS):
        for client in live:             # the live sessions keep talking (and stay open)
            assert client.request(b"hi", timeout_s=2.0) == b"hi"
        # the first round's sessions end under a new leader, which turned ready with them open
        churn(sim, PER_ROUND, (lambda: new_leader(sim)) if r == 0 else None)
    for client in live:
        assert client.request(b"hi", timeout_s=2.0) == b"hi"
    return sim


@pytest.mark.parametrize("seed", [3, 17])
def test_churned_sessions_leave_no_per_session_state(seed):
    sim = run_churn(seed)
    for m in range(3):
        module = sim.module(m)
        assert len(module.sessions) == LIVE, m
        assert leftovers(module) == {}, m
        # the churn did what it claims: sessions ended each way, on every member (a client's
        # close is best effort: one sent as the leader changes may end as a timeout)
        closed, each = sim.service(m).closed, ROUNDS * PER_ROUND // 3
        assert sum(closed.values()) == ROUNDS * PER_ROUND, (m, closed)
        assert closed[CloseReason.SERVICE_ACTION] == each, (m, closed)
        assert closed[CloseReason.CLIENT_ACTION] >= 1 and closed[CloseReason.TIMEOUT] >= each, \
            (m, closed)
    leader = sim.module(sim.leader())
    assert len(leader._last_heard_ns) == LIVE and len(leader._lead_base) >= 1


@pytest.mark.parametrize("table", ["_last_heard_ns", "_lead_base"])
def test_negative_control_a_table_that_keeps_closed_sessions_is_caught(monkeypatch, table):
    """The check sees a session id a table keeps after its session closed: _close_session
    made to leave one table's entry behind fails it (both a table every leader fills and
    one only a new leader's ack hold fills, so the churn reaches both)."""
    close = ConsensusModule._close_session

    def leaky_close(self, s, reason):
        kept = getattr(self, table).get(s.session_id)
        close(self, s, reason)
        if kept is not None:
            getattr(self, table)[s.session_id] = kept

    monkeypatch.setattr(ConsensusModule, "_close_session", leaky_close)
    sim = run_churn(3)
    assert table in leftovers(sim.module(sim.leader()))
