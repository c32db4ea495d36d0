"""The SimCluster contract of DESIGN.md 1.4: determinism, services, client, faults, storage."""
from __future__ import annotations

import random

import pytest

import aeronpy
from aeronpy.core import Role
from aeronpy.testing import SimCluster
from aeronpy.testing.storage import SimDisk, default_log_factory

from .helpers import KvService, converge, make_sim, propose, wait_leader


def _busy_run(seed: int) -> SimCluster:
    sim = make_sim(5, seed=seed)
    sim.network(drop=0.05, duplicate=0.05, delay_ms=(0, 10))
    client = sim.client()
    for i in range(10):
        client.offer(b"t%d" % i)
        sim.run_for(37)
    sim.crash(sim.leader() if sim.leader() is not None else 0)
    sim.run_for(800)
    return sim


def test_same_seed_same_trace_different_seed_different_trace():
    a, b, c = _busy_run(5), _busy_run(5), _busy_run(6)
    assert a.trace_hash() == b.trace_hash()
    assert a.events == b.events
    assert [a.service(m).applied for m in range(5)] == [b.service(m).applied for m in range(5)]
    assert a.trace_hash() != c.trace_hash()


def test_service_callbacks_and_cluster_time_from_the_log():
    sim = make_sim(3, seed=41)
    leader = wait_leader(sim)
    client = sim.client()
    sim.run_for(123)
    assert client.request(b"k=v") == b"ok:k=v"
    converge(sim)
    stamps = {sim.service(m).timestamps[0] for m in range(3)}
    assert len(stamps) == 1, "every member sees the leader's timestamp, not its own clock"
    stamp = stamps.pop()
    assert 0 < stamp <= sim.now_ns
    for m in range(3):
        svc = sim.service(m)
        assert svc.started == 1 and svc.state == {b"k": b"v"}
        assert svc.cluster.member_id == m and svc.cluster.time_ns >= stamp
    assert sim.service(leader).roles[-1] == Role.LEADER
    assert Role.LEADER not in sim.service((leader + 1) % 3).roles
    assert sim.service(leader).cluster.role == Role.LEADER


def test_several_services_per_member():
    sim = SimCluster(3, seed=42, service=lambda: [KvService(), KvService()])
    wait_leader(sim)
    client = sim.client()
    assert client.request(b"zero", service_id=0) == b"ok:zero"
    assert client.request(b"one", service_id=1) == b"ok:one"
    converge(sim)
    assert sim.service(1, 0).applied == [b"zero"] and sim.service(1, 1).applied == [b"one"]


def test_client_request_times_out_without_a_quorum():
    sim = make_sim(3, seed=43)
    wait_leader(sim)
    client = sim.client()
    sim.partition({0}, {1}, {2})
    start = sim.now_ns
    with pytest.raises(aeronpy.ClusterTimeoutError):
        client.request(b"nope", timeout_s=0.5)
    assert (sim.now_ns - start) / 1e6 == pytest.approx(500, abs=1)
    sim.heal()
    assert sim.run_until(lambda: client.pending == 0, 3000)
    converge(sim)
    assert all(sim.service(m).applied == [b"nope"] for m in range(3)), "applied later, once"
    replies = []
    client.poll_egress(lambda cid, payload: replies.append((cid, bytes(payload))))
    assert replies == [], "a reply to an abandoned request is never handed to anyone"
    assert client.counters.get("late_replies_dropped") == 1


def test_client_follows_leader_changes():
    sim = make_sim(3, seed=44)
    client = sim.client()
    assert client.request(b"a", timeout_s=2.0) == b"ok:a"
    for _ in range(3):
        sim.crash(sim.leader())
        assert client.request(b"b", timeout_s=3.0) == b"ok:b"
        for m in range(3):
            if not sim.alive(m):
                sim.restart(m)
    converge(sim)
    assert sim.service(0).applied == [b"a", b"b", b"b", b"b"]


def test_leader_is_none_without_live_leader_and_errors_on_misuse():
    sim = make_sim(3, seed=45)
    assert sim.leader() is None
    wait_leader(sim)
    with pytest.raises(ValueError):
        sim.restart(0)
    sim.crash(1)
    with pytest.raises(ValueError):
        sim.crash(1)
    with pytest.raises(ValueError):
        sim.partition({0, 1}, {1, 2})
    with pytest.raises(ValueError):
        sim.network(drop=2.0)


def test_partition_any_number_of_groups_and_asymmetric_cut():
    sim = make_sim(5, seed=46)
    wait_leader(sim)
    sim.partition({0, 1}, {2, 3}, {4})
    assert not sim.net.can_reach(0, 2) and sim.net.can_reach(0, 1) and not sim.net.can_reach(4, 3)
    sim.heal()
    sim.cut(0, 1)
    assert not sim.net.can_reach(0, 1) and sim.net.can_reach(1, 0)


def _four_entries():
    log = default_log_factory()()
    for term, payload in [(1, b"a"), (1, b"b"), (2, b"c"), (2, b"d")]:
        log.append(term, 16, payload)
    return log


def test_power_fail_keeps_only_synced_state():
    """The simulated disk is the real archive over MemFileSystem: written survives a crash,
    only synced (plus a random, possibly torn prefix) survives a power failure."""
    log = _four_entries()
    none = SimDisk(0, "none")
    none.take_recovered()
    none.save_hard_state(2, 1)
    none.append_from(log, 1, 3)
    none.append_from(log, 3, 5)
    assert none.durable_index == 4          # under "none", only a process crash is survivable
    none.crash()
    assert none.take_recovered().log.last_index == 4
    kept = set()
    for seed in range(40):
        s = SimDisk(0, "none")
        s.take_recovered()
        s.save_hard_state(2, 1)
        s.append_from(log, 1, 3)
        s.append_from(log, 3, 5)
        s.power_fail(random.Random(seed))
        rec = s.take_recovered()
        kept.add(rec.log.last_index)
        assert (rec.hard_state.term, rec.hard_state.voted_for) == (2, 1), "the hard state is always synced"
        assert s.written_index == rec.log.last_index
    assert kept <= {0, 1, 2, 3, 4} and {0, 4} <= kept and len(kept) >= 3, \
        f"a random prefix survives, torn inside a write too: {kept}"
    synced = SimDisk(0, "data")
    synced.take_recovered()
    synced.append_from(log, 1, 5)
    synced.archive.request_sync()
    assert synced.durable_index == 4
    synced.truncate_from(3)                 # durable on return under data/full
    synced.power_fail(random.Random(1))
    assert synced.take_recovered().log.last_index == 2


def test_power_failure_of_a_synced_cluster_loses_nothing_committed():
    sim = make_sim(3, seed=47, file_sync="data")
    wait_leader(sim)
    client = sim.client()
    for i in range(5):
        assert client.request(b"p%d" % i) == b"ok:p%d" % i
    for m in range(3):
        sim.power_fail(m)
    for m in range(3):
        sim.restart(m)
    assert client.request(b"after", timeout_s=2.0) == b"ok:after"
    converge(sim)
    assert sim.service(0).applied == [b"p%d" % i for i in range(5)] + [b"after"]


def test_power_failure_without_sync_is_reported_as_durability_loss():
    """file_sync='none' trades durability away: losing power on a majority can lose committed
    entries, and the checker says so instead of staying quiet."""
    sim = make_sim(3, seed=48, file_sync="none")
    wait_leader(sim)
    client = sim.client()
    for i in range(3):
        client.request(b"q%d" % i)
    with pytest.raises(AssertionError, match="durable on only"):
        for m in range(3):
            sim.power_fail(m)
            sim.restart(m)
            sim.run_for(50)
        sim.run_for(500)


def test_checker_can_be_switched_off_for_benchmarks():
    sim = make_sim(3, seed=49, check_invariants=False)
    wait_leader(sim)
    propose(sim, b"x")
    sim.run_for(100)
    assert sim.checker.checks == 0
