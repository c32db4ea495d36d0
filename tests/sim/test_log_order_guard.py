"""Replicated state (timers, service messages, replies, session closes) may change only while
a log entry is applied, where every member changes it at the same point. From a callback that
runs on one member at its own moment (on_role_change, on_take_snapshot, on_terminate, on_start
given a snapshot) the change raises aeronpy.ClusterStateError, which stops that member like any
service error, instead of letting its state drift from its peers' unseen."""
import pytest

import aeronpy
from aeronpy.cluster.container import ServiceError
from aeronpy.testing import SimCluster

from .helpers import converge


class _Base(aeronpy.ClusteredService):
    def on_start(self, cluster, snapshot):
        self.cluster = cluster
        self.fired = []

    def on_timer_event(self, correlation_id, timestamp_ns):
        self.fired.append(correlation_id)

    def on_session_message(self, session, timestamp_ns, message):
        if session is not None:
            session.offer(b"ok")


class _TimerOnFreshStart(_Base):
    def on_start(self, cluster, snapshot):
        super().on_start(cluster, snapshot)
        if snapshot is None:                     # every member, before the first entry
            cluster.schedule_timer(1, 50_000_000)


class _TimerOnRoleChange(_Base):
    def on_role_change(self, role):
        if role is aeronpy.Role.LEADER:
            self.cluster.schedule_timer(2, 0)    # one member only: would diverge


def test_a_fresh_start_may_schedule_a_timer_and_it_fires_on_every_member():
    sim = SimCluster(3, seed=41, service=_TimerOnFreshStart)
    assert sim.client().request(b"x") == b"ok"
    sim.run_for(200)
    converge(sim)
    assert all(sim.service(m).fired == [1] for m in range(3))


def test_a_timer_scheduled_from_on_role_change_is_refused_and_stops_that_member():
    sim = SimCluster(3, seed=42, service=_TimerOnRoleChange)
    sim.run_until(lambda: sim.stopped, 2000)
    assert sim.stopped, "no member stopped"
    member, stopped = next(iter(sim.stopped.items()))
    error = stopped.__cause__
    assert isinstance(error, ServiceError) and error.callback == "on_role_change"
    assert isinstance(error.cause, aeronpy.ClusterStateError)
    assert "schedule_timer from on_role_change" in str(error.cause)
    assert not any(2 in sim.service(m).fired for m in range(3) if m not in sim.stopped)


@pytest.mark.parametrize("call", ["cancel_timer", "offer", "close_client_session", "session_offer"])
def test_every_change_is_refused_outside_log_order(call):
    """The module's own check, per facade call, and the compiled reply path's."""
    sim = SimCluster(1, seed=43, service=_Base)
    client = sim.client()
    assert client.request(b"x") == b"ok"
    module = sim.module(0)
    cluster = sim.service(0).cluster
    session = cluster.client_sessions[0]
    actions = {"cancel_timer": lambda: cluster.cancel_timer(1),
               "offer": lambda: cluster.offer(b"m"),
               "close_client_session": lambda: cluster.close_client_session(session.id),
               "session_offer": lambda: session.offer(b"r")}
    module._reply.local_callback = "on_take_snapshot"        # as _invoke_local sets it
    try:
        with pytest.raises(aeronpy.ClusterStateError, match="from on_take_snapshot"):
            actions[call]()
    finally:
        module._reply.local_callback = None
    actions[call]()                                            # inside log order: no error
