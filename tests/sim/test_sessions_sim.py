"""The client-session scenarios of the sessions issue, on SimCluster: the real ConsensusModule
on every member, the real ClientCore as the client, faults from the simulator. The invariant
checker runs after every event, including its service-level checks (the same service calls
at every log index on every member; each session message delivered exactly once)."""
from __future__ import annotations

import pytest

import aeronpy
from aeronpy.cluster.module_config import SecretAuthenticator
from aeronpy.service import CloseReason, ClusteredService
from aeronpy.testing import SimCluster

from .helpers import converge, wait_leader


class CounterService(ClusteredService):
    """Increments on every message and answers with the new count."""

    def __init__(self):
        self.count = 0
        self.opened = []
        self.closed = []

    def on_session_open(self, session, timestamp_ns):
        self.opened.append(session.id)

    def on_session_close(self, session, timestamp_ns, reason):
        self.closed.append((session.id, reason))

    def on_session_message(self, session, timestamp_ns, message):
        self.count += 1
        if session is not None:
            session.offer(b"%d" % self.count)


class TimerService(ClusteredService):
    """Commands: 'at <id> <ms>' schedules (or moves) timer <id> to now + ms of cluster time,
    'cancel <id>' cancels it. Firings are recorded with their cluster time."""

    def __init__(self):
        self.fired = []
        self.deadlines = {}

    def on_start(self, cluster, snapshot):
        self.cluster = cluster

    def on_session_message(self, session, timestamp_ns, message):
        words = bytes(message).split()
        if words[0] == b"at":
            correlation_id, deadline_ns = int(words[1]), timestamp_ns + int(words[2]) * 1_000_000
            self.deadlines[correlation_id] = deadline_ns
            ok = self.cluster.schedule_timer(correlation_id, deadline_ns)
        else:
            ok = self.cluster.cancel_timer(int(words[1]))
        session.offer(b"ok" if ok else b"no")

    def on_timer_event(self, correlation_id, timestamp_ns):
        self.fired.append((correlation_id, timestamp_ns))


class CloserService(ClusteredService):
    def on_start(self, cluster, snapshot):
        self.cluster = cluster
        self.closed = []

    def on_session_message(self, session, timestamp_ns, message):
        if bytes(message) == b"bye":
            self.cluster.close_client_session(session.id)
        else:
            session.offer(b"ok")

    def on_session_close(self, session, timestamp_ns, reason):
        self.closed.append(reason)


def _restart_dead(sim):
    for m in range(sim.member_count):
        if not sim.alive(m):
            sim.restart(m)


def test_exactly_once_requests_across_leader_crashes():
    """Each request's reply is the count after it: replies 1..N in order prove that no
    increment was applied twice or lost, on a lossy network with the leader killed."""
    sim = SimCluster(3, seed=101, service=CounterService)
    sim.network(drop=0.05, duplicate=0.05, delay_ms=(0.5, 3))
    client = sim.client()
    replies = []
    for i in range(45):
        if i % 15 == 7:
            _restart_dead(sim)
            sim.crash(wait_leader(sim, within_ms=3000))
        replies.append(client.request(b"inc", timeout_s=5.0))
    assert replies == [b"%d" % n for n in range(1, 46)]
    _restart_dead(sim)
    sim.network()
    converge(sim)
    assert [sim.service(m).count for m in range(3)] == [45, 45, 45]
    sim.check()


def test_exactly_once_pipelined_offers_across_leader_crashes_and_power_failures():
    sim = SimCluster(5, seed=102, service=CounterService, file_sync="data")
    sim.network(drop=0.02, duplicate=0.05, delay_ms=(0.5, 5))
    client = sim.client()
    got = {}
    for i in range(120):
        assert client.offer(b"inc") > 0
        sim.run_for(3)
        if i in (30, 70):
            sim.crash(wait_leader(sim, within_ms=3000))
        if i == 50:
            sim.power_fail(wait_leader(sim, within_ms=3000))
        client.poll_egress(lambda cid, payload: got.setdefault(cid, []).append(bytes(payload)))
    _restart_dead(sim)
    assert sim.run_until(lambda: client.pending == 0, 10_000)
    converge(sim)
    client.poll_egress(lambda cid, payload: got.setdefault(cid, []).append(bytes(payload)))
    assert [sim.service(m).count for m in range(5)] == [120] * 5
    assert all(len(v) == 1 for v in got.values()), "a reply reaches the application at most once"
    counts = sorted(int(v[0]) for v in got.values())
    assert len(set(counts)) == len(counts) and counts[-1] <= 120
    assert len(counts) >= 100, f"most replies arrive despite the faults: {len(counts)}"
    assert sim.checker.session_messages_delivered >= 120 * 5


def test_reply_from_the_cache_after_failover():
    """The leader applies the request but its reply never reaches the client; the leader
    dies; the client re-sends to the new leader, which answers from the replicated reply
    cache instead of applying the message again."""
    sim = SimCluster(3, seed=103, service=CounterService)
    client = sim.client()
    assert client.request(b"inc") == b"1"
    old = sim.leader()
    sim.cut(old, client.client_id)                   # egress from the leader is lost
    cid = client.offer(b"inc")
    assert sim.run_until(lambda: all(sim.service(m).count == 2 for m in range(3)), 1000)
    sim.crash(old)
    sim.heal()
    got = []
    assert sim.run_until(lambda: client.poll_egress(lambda c, p: got.append((c, bytes(p)))) > 0, 3000)
    assert got == [(cid, b"2")]
    new = sim.leader()
    assert new != old and sim.module(new).counters["replies_from_cache"] >= 1
    assert client.request(b"inc") == b"3"
    assert sim.run_until(lambda: [sim.service(m).count for m in range(3) if sim.alive(m)] == [3, 3], 500)


def test_timers_fire_once_at_the_same_log_position_across_leader_changes():
    sim = SimCluster(3, seed=104, service=TimerService)
    client = sim.client()
    for command in (b"at 1 100", b"at 2 300", b"at 3 200", b"cancel 3", b"at 2 600", b"cancel 9"):
        client.request(command)
    sim.crash(sim.leader())                          # before any deadline
    sim.run_for(400)
    sim.crash(wait_leader(sim, within_ms=2000))      # timer 1 has fired; 2 is still due
    _restart_dead(sim)
    sim.run_for(1500)
    converge(sim)
    fired = [sim.service(m).fired for m in range(3)]
    assert fired[0] == fired[1] == fired[2]
    assert [c for c, _ in fired[0]] == [1, 2], "1 and the moved 2 fire once each; cancelled 3 never"
    deadlines = sim.service(0).deadlines
    assert all(ts >= deadlines[c] for c, ts in fired[0]), "no timer fires before its deadline"
    positions = {c: [i for i, calls in sim.checker.service_calls_at.items()
                     for _sid, cb, summary in calls if cb == "on_timer_event" and summary[0] == c]
                 for c in (1, 2)}
    assert all(len(p) == 1 for p in positions.values()), positions   # one log index per timer
    sim.check()


def test_multiple_services_receive_only_their_own_messages():
    sim = SimCluster(3, seed=105, service=lambda: [CounterService(), CounterService(), CounterService()])
    client = sim.client()
    for service_id, n in ((0, 3), (1, 1), (2, 2)):
        for _ in range(n):
            client.request(b"inc", service_id=service_id)
    client.close()
    sim.run_for(200)
    converge(sim)
    for m in range(3):
        services = [sim.service(m, s) for s in range(3)]
        assert [s.count for s in services] == [3, 1, 2]
        assert all(s.opened == [client.session_id] for s in services), "session open goes to every service"
        assert all(s.closed == [(client.session_id, CloseReason.CLIENT_ACTION)] for s in services)


def test_connect_through_a_follower_is_redirected_to_the_leader():
    sim = SimCluster(3, seed=106, service=CounterService)
    leader = wait_leader(sim)
    if leader == 0:                                  # the client tries member 0 first
        assert sim.transfer_leadership(1)
        leader = wait_leader(sim, among={1, 2})
        sim.run_for(100)
    client = sim.client()
    assert client.counters.get("redirects", 0) >= 1
    assert client.leader_endpoint == sim.ingress_endpoints[leader]
    assert sim.module(0).counters["redirects"] >= 1
    assert client.request(b"inc") == b"1"


def test_silent_session_times_out_on_every_member():
    sim = SimCluster(3, seed=107, service=CounterService, session_timeout_ms=500)
    client = sim.client()
    assert client.request(b"inc") == b"1"
    session_id = client.session_id
    sim.partition({client.client_id}, {0, 1, 2})     # the client goes silent
    sim.run_for(1000)
    sim.heal()
    converge(sim)
    assert all(sim.service(m).closed == [(session_id, CloseReason.TIMEOUT)] for m in range(3))
    # the message says what happened and what to do (it said only "unknown session")
    with pytest.raises(aeronpy.ClusterClosedError, match="timed out.*connect a new client"):
        client.request(b"inc", timeout_s=2.0)
        client.request(b"inc", timeout_s=2.0)
    assert all(sim.service(m).count == 1 for m in range(3))


def test_service_closes_a_session():
    sim = SimCluster(3, seed=108, service=CloserService)
    client = sim.client()
    assert client.request(b"hi") == b"ok"
    client.offer(b"bye")
    assert sim.run_until(lambda: not client.is_connected, 1000)
    with pytest.raises(aeronpy.ClusterClosedError):
        client.request(b"hi")
    converge(sim)
    assert all(sim.service(m).closed == [CloseReason.SERVICE_ACTION] for m in range(3))


def test_authentication_rejected_and_accepted():
    sim = SimCluster(3, seed=109, service=CounterService, authenticator=SecretAuthenticator(b"sesame"))
    with pytest.raises(aeronpy.AuthenticationError):
        sim.client(credentials=b"wrong")
    client = sim.client(credentials=b"sesame")
    assert client.request(b"inc") == b"1"
    assert sim.module(sim.leader()).counters["authentication_rejected"] >= 1


def test_forged_session_id_is_refused():
    """A client naming another client's session gets an error; nothing reaches the service."""
    sim = SimCluster(3, seed=110, service=CounterService)
    victim = sim.client()
    forger = sim.client()
    assert victim.request(b"inc") == b"1"
    forger.core.session_id = victim.session_id       # forge the id
    assert forger.offer(b"inc") > 0
    sim.run_for(1500)
    converge(sim)
    assert all(sim.service(m).count == 1 for m in range(3))
    assert sim.module(sim.leader()).counters["ingress_session_client_mismatch"] >= 1


def test_connects_beyond_max_sessions_are_refused_on_every_leader():
    """The leader refuses a connect once ``max_sessions`` are open (pending connects count),
    with an error the client raises; a closed session frees its place; a new leader after a
    crash holds the same sessions and so the same bound."""
    sim = SimCluster(3, seed=111, service=CounterService, module_options={"max_sessions": 2})
    first, second = sim.client(), sim.client()
    assert first.request(b"inc") == b"1" and second.request(b"inc") == b"2"
    with pytest.raises(aeronpy.NotConnectedError, match="too many sessions.*at most 2"):
        sim.client()
    old_leader = sim.leader()
    assert sim.module(old_leader).counters["connect_session_limit"] >= 1
    sim.crash(old_leader)
    wait_leader(sim)
    assert sim.leader() != old_leader
    with pytest.raises(aeronpy.NotConnectedError, match="too many sessions"):
        sim.client()
    assert second.request(b"inc") == b"3"          # the open sessions work on
    first.close()
    sim.run_for(500)
    third = sim.client()                            # the closed one's place
    assert third.request(b"inc") == b"4"
    sim.restart(old_leader)
    converge(sim)
    assert all(len(sim.module(m).sessions) == 2 for m in range(3))


def test_a_message_the_cluster_refuses_raises_message_rejected_in_the_simulator_too():
    """The simulated client promises the real client's exceptions: a message for a service id
    the cluster lacks raised ClusterTimeoutError here after the whole timeout, where the real
    and asyncio clients raise MessageRejectedError at once."""
    sim = SimCluster(3, seed=111, service=CounterService)
    client = sim.client()
    started = sim.now_ns
    with pytest.raises(aeronpy.MessageRejectedError, match="service"):
        client.request(b"inc", service_id=5, timeout_s=5.0)
    assert sim.now_ns - started < 1_000_000_000        # at once, not after the timeout
    assert client.request(b"inc") == b"1"              # and the session goes on


def test_refused_messages_keep_exactly_once_across_a_leader_crash():
    """Refused messages are logged as placeholders that consume their seq; the invariant
    checker (run after every event) holds them to the same order rule across a failover."""
    sim = SimCluster(3, seed=112, service=CounterService)
    client = sim.client()
    assert client.request(b"inc") == b"1"
    for _ in range(2):
        with pytest.raises(aeronpy.MessageRejectedError):
            client.request(b"inc", service_id=7)
    for _ in range(3):
        assert client.offer(b"inc") > 0
    leader = sim.leader()
    sim.crash(leader)
    assert client.request(b"inc", timeout_s=10.0) == b"5"   # 1 + 3 offered + this one
    sim.restart(leader)
    converge(sim)
    assert {sim.service(m).count for m in range(3)} == {5}


def test_a_refusal_is_reported_once_though_the_message_is_re_sent():
    """While the cluster is suspended the refused message's placeholder cannot be logged, so
    no acknowledgement comes and the client re-sends its window; the leader refuses each copy
    again. take_rejections() listed one offer six times in 3 s (today's review); once now."""
    from aeronpy.cluster import entries as E
    sim = SimCluster(3, seed=5, service=CounterService)
    client = sim.client()
    assert client.request(b"inc") == b"1"
    leader = sim.leader()
    assert sim.propose(leader, E.CLUSTER_ACTION,
                       E.encode_cluster_action(sim.now_ns, E.ACTION_SUSPEND)) > 0
    sim.run_for(50)
    assert sim.module(leader).suspended
    cid = client.offer(b"inc", service_id=9)
    got = []
    for _ in range(30):                       # 3 s of simulated time while suspended
        sim.run_for(100)
        client.poll_egress(lambda c, p: None)
        got += client.take_rejections()
    assert [c for c, _ in got] == [cid]
    assert client.counters.get("duplicate_rejections", 0) >= 1
