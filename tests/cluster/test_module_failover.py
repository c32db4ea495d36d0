"""Three members on fake cores: redirects, leader changes, exactly-once across failover."""
from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P
from aeronpy.cluster.module_config import parse_ingress_endpoints
from aeronpy.cluster.module import ConsensusModule
from aeronpy.service import Role

from .fakes import FakeCore, FakeWorld, RecordingService
from .test_module_timers import T0, TimerService

C1 = "c1:7000"


def three(**kw):
    w = FakeWorld(members=3, **kw)
    w.elect(0)
    w.settle()
    return w


def send(w, member, sid, seq, payload, service_id=0):
    w.ingress(member, C1, P.SessionMessage(sid, seq, 1000 + seq, service_id, payload))


def test_follower_redirects_connects_and_messages_to_the_leader():
    w = three()
    w.ingress(1, C1, P.SessionConnect(3, 11, C1))
    [event] = w.take(1, P.SessionEvent, C1)
    assert (event.code, event.correlation_id, event.leader_member_id, event.detail) == \
        (P.EVENT_REDIRECT, 3, 0, "m0:9000")
    sid = w.connect(0)
    send(w, 2, sid, 1, b"x")
    w.ingress(2, C1, P.SessionKeepAlive(sid, 1))
    assert [(e.code, e.session_id) for e in w.take(2, P.SessionEvent)] == [(P.EVENT_REDIRECT, sid)] * 2
    assert all(not w.egress[m] for m in (1, 2))


def test_redirect_without_a_known_leader_names_none():
    w = FakeWorld(members=3)
    w.ingress(1, C1, P.SessionConnect(3, 11, C1))
    [event] = w.take(1, P.SessionEvent)
    assert event.code == P.EVENT_REDIRECT and event.leader_member_id == -1 and event.detail == ""


def test_only_the_leader_sends_egress():
    w = three()
    sid = w.connect(0)
    send(w, 0, sid, 1, b"x")
    w.settle()
    assert [m.payload for m in w.take(0, P.EgressMessage)] == [b"re:x"]
    for member in (1, 2):
        assert w.services(member)[0].messages == [b"x"]
        assert w.egress[member] == []


def test_exactly_once_and_original_replies_across_a_leader_change():
    w = three()
    sid = w.connect(0)
    for seq, payload in enumerate((b"a", b"b", b"c"), start=1):
        send(w, 0, sid, seq, payload)
    base = w.cores[0].log.last_index - 3
    w.replicate(to={1}, upto=base + 2)                  # member 1 has a, b; c only on the leader
    w.commit(base + 2, members={0})                     # leader applies a, b (replies then lost)
    w.commit(base + 1, members={1})                     # member 1 knows only a is committed
    original = {m.ack_seq: m for m in w.take(0, P.EgressMessage)}
    assert sorted(original) == [1, 2]
    w.egress[0].clear()                                 # member 0 crashes: its egress never left

    w.elect(1, alive={1, 2})
    send(w, 1, sid, 1, b"a")                            # too early: 1 has not applied its log yet
    assert w.modules[1].counters["ingress_leader_not_ready"] == 1
    w.replicate(to={2})
    w.commit(members={1, 2})
    assert w.modules[1].leader_ready
    [new_leader] = w.take(1, P.NewLeaderEvent, C1)
    assert new_leader.leader_member_id == 1 and parse_ingress_endpoints(new_leader.ingress_endpoints)[1] == "m1:9000"
    w.take(1, P.EgressMessage)                          # b's reply, made while 1 applied it as leader

    for seq, payload in enumerate((b"a", b"b", b"c"), start=1):  # the client re-sends everything
        send(w, 1, sid, seq, payload)
    w.settle()
    replies = w.take(1, P.EgressMessage, C1)
    assert [(r.ack_seq, r.correlation_id, r.payload) for r in replies] == \
        [(1, 1001, b"re:a"), (2, 1002, b"re:b"), (3, 1003, b"re:c")]
    assert replies[0] == original[1] and replies[1] == original[2]

    w.replicate()                                       # member 0 comes back as a follower
    w.commit()
    for member in range(3):
        assert w.services(member)[0].messages == [b"a", b"b", b"c"], member
    assert len({m.snapshot_state() for m in w.modules}) == 1


def test_message_applied_by_old_leader_is_not_proposed_again_by_new_leader():
    w = three()
    sid = w.connect(0)
    send(w, 0, sid, 1, b"a")
    w.settle()
    w.elect(2)
    w.settle()
    send(w, 2, sid, 1, b"a")
    assert w.log_types(2).count(E.SESSION_MESSAGE) == 1
    assert w.take(2, P.EgressMessage)[-1].payload == b"re:a"


def test_new_leader_event_goes_to_every_session_and_role_changes_reach_services():
    w = three()
    sids = [w.connect(0, endpoint=f"c{i}:1", nonce=i, correlation_id=i) for i in range(3)]
    w.elect(1)
    w.settle()
    events = w.take(1, P.NewLeaderEvent)
    assert sorted(e.session_id for e in events) == sorted(sids)
    assert w.services(0)[0].roles == [Role.LEADER, Role.FOLLOWER]
    assert w.services(1)[0].roles == [Role.LEADER]


def test_timer_fires_once_at_the_same_position_on_every_member_across_failover():
    class PositionTimers(TimerService):
        def on_timer_event(self, correlation_id, timestamp_ns):
            self.events.append(("timer", correlation_id, self.cluster._module.applied_index))

    w = three(services=lambda: [PositionTimers()])
    sid = w.connect(0)
    send(w, 0, sid, 1, b"s 5 %d" % (T0 + 10))
    w.settle()
    w.tick(20)
    assert w.log_types(0)[-1] == E.TIMER_FIRE           # proposed by 0, never replicated
    w.elect(1, alive={1, 2})
    w.replicate(to={2})
    w.commit(members={1, 2})
    w.tick(0)
    w.replicate()
    w.commit()
    fired = [[e for e in w.services(m)[0].events if e[0] == "timer"] for m in range(3)]
    assert fired[0] == fired[1] == fired[2] and len(fired[0]) == 1
    assert w.log_types(1)[fired[0][0][2] - 1] == E.TIMER_FIRE


def test_service_message_in_flight_at_failover_is_delivered_once():
    w = three(services=lambda: [TimerService()])
    sid = w.connect(0)
    send(w, 0, sid, 1, b"o first")
    send(w, 0, sid, 2, b"o second")
    w.settle()
    assert w.tick() == 2
    w.replicate(to={1}, upto=w.cores[0].log.last_index - 1)   # "first" reached member 1
    w.elect(1, alive={1, 2})
    w.replicate(to={2})
    w.commit(members={1, 2})
    assert w.tick() == 1                                # only "second" is proposed again
    w.replicate()
    w.commit()
    for member in range(3):
        delivered = [e[2] for e in w.services(member)[0].events if e[0] == "message" and e[1] is None]
        assert delivered == [b"first", b"second"], member


def test_snapshot_state_round_trips_and_keeps_exactly_once():
    w = three(services=lambda: [TimerService()], reply_cache_messages=2)
    sid = w.connect(0)
    for seq in range(1, 4):
        send(w, 0, sid, seq, b"s %d %d" % (seq, T0 + 10 ** 9))
    send(w, 0, sid, 4, b"o pending")
    w.settle()
    blob = w.modules[0].snapshot_state()
    assert list(w.modules[0].sessions.get(sid).replies) == [3, 4]   # bounded reply cache

    core = FakeCore(0)
    core.role, core.term = Role.LEADER, w.term
    core.log.entries = list(w.cores[0].log.entries)
    core.commit_index = core.log.last_index
    restored = ConsensusModule(0, core, [TimerService()], w.modules[0].config, w.now_ns)
    restored.restore_state(blob)
    restored.start()
    assert restored.snapshot_state() == blob
    assert restored.applied_index == w.modules[0].applied_index
    restored.tick(w.now_ns)                             # becomes ready: proposes the pending message
    assert core.log.type_at(core.log.last_index) == E.SERVICE_MESSAGE
    restored.on_ingress(C1, P.SessionMessage(sid, 4, 1004, 0, b"o pending"), w.now_ns)
    replies = [m for _, m in restored.take_egress() if isinstance(m, P.EgressMessage)]
    assert [(r.ack_seq, r.payload) for r in replies] == [(4, b"re:o pending")]


def test_restore_rejects_garbage():
    import pytest
    from aeronpy.cluster.snapshot import SnapshotFormatError
    w = FakeWorld()
    w.connect()
    blob = w.modules[0].snapshot_state()
    for bad in (b"", b"XXXX" + blob[4:], blob[:-1], blob + b"\0"):
        with pytest.raises(SnapshotFormatError):
            w.modules[0].restore_state(bad)
    assert w.modules[0].snapshot_state() == blob        # a failed restore changed nothing


def test_recording_service_is_used():   # guards the fakes: a world must host the given services
    w = FakeWorld(members=2, services=lambda: [RecordingService(), RecordingService()])
    assert all(len(w.services(m)) == 2 for m in range(2))
