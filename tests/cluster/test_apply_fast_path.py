"""``apply_ready`` takes a fast path through runs of SESSION_MESSAGE entries; it must be
indistinguishable from applying the same entries one at a time with ``apply``.

Differential test: two identical members (same services, same role) apply the same committed
log, one through ``apply_ready`` and one entry by entry; everything observable must agree.
"""
import random
from types import SimpleNamespace

import pytest

from aeronpy.cluster import entries as E
from aeronpy.cluster.container import ServiceError
from aeronpy.cluster.module import ConsensusModule
from aeronpy.cluster.module_config import ModuleConfig
from aeronpy.service import Role

from .fakes import FakeCore, RecordingService

ENDPOINT = "c1:7000"


class Mixed(RecordingService):
    """Echoes, stays silent on b"quiet", closes its session on b"bye", answers twice on
    b"twice" and raises on b"boom"."""

    def on_session_message(self, session, timestamp_ns, message):
        data = bytes(message)
        if data == b"boom":
            raise RuntimeError("service bug")
        if data == b"quiet":
            self.messages.append(data)
            return
        super().on_session_message(session, timestamp_ns, message)
        if data == b"twice" and session is not None:
            session.offer(b"again")
        if data == b"bye" and session is not None:
            self.cluster.close_client_session(session.id)


def random_log(rng: random.Random, count: int, with_boom: bool = False) -> list:
    """SESSION_OPENs, then mostly SESSION_MESSAGEs with duplicates, gaps, unknown sessions and
    services, service closes, and other entry types breaking the runs."""
    log = [(1, E.SESSION_OPEN, E.encode_session_open(1_000, 1, 11, ENDPOINT)),
           (1, E.SESSION_OPEN, E.encode_session_open(1_001, 2, 12, "c2:7000"))]
    sessions = {1: 0, 2: 0}                # session id (the open's index) -> last seq used
    ts = 2_000
    for i in range(count):
        ts += rng.choice((0, 1, 5))
        roll = rng.random()
        if roll < 0.05:
            log.append((1, E.CLUSTER_ACTION, E.encode_cluster_action(ts, E.ACTION_SUSPEND, 0)))
            continue
        if roll < 0.08:
            log.append((1, E.SESSION_OPEN, E.encode_session_open(ts, 50 + i, 100 + i, f"c{i}:1")))
            sessions[len(log)] = 0
            continue
        sid = rng.choice(list(sessions)) if rng.random() > 0.03 else 999     # 999: unknown
        seq = sessions.get(sid, 0)
        step = rng.choices((1, 0, -1, 2), weights=(85, 6, 4, 5))[0]          # dup / old / gap
        seq = max(1, seq + step)
        if sid in sessions:
            sessions[sid] = max(sessions[sid], seq)
        body = rng.choices([b"m%d" % i, b"quiet", b"twice", b"bye"], weights=(90, 4, 4, 2))[0]
        service_id = 0 if rng.random() > 0.03 else 5                          # 5: unknown
        log.append((1, E.SESSION_MESSAGE,
                    E.encode_session_message(ts, sid, seq, 500 + i, service_id, body)))
    if with_boom:
        at = len(log) - count // 3
        ts = E.entry_timestamp_ns(log[at - 1][2])
        log.insert(at, (1, E.SESSION_MESSAGE, E.encode_session_message(ts, 1, 10_000, 7, 0, b"boom")))
    return log


def member(log: list, role: Role) -> ConsensusModule:
    core = FakeCore(0)
    core.role, core.term, core.leader_id = role, 1, 0 if role is Role.LEADER else 1
    for entry in log:
        core.log.append(*entry)
    core.commit_index = len(log)
    module = ConsensusModule(0, core, [Mixed()], ModuleConfig(members={0: "m0:9000", 1: "m1:9000"},
                                                             reply_cache_messages=4), 0)
    module.start()
    return module


def observe(module: ConsensusModule) -> dict:
    service = module.container.services[0]
    return {
        "events": service.events, "messages": service.messages,
        "counters": dict(module.counters), "applied": module.applied_index,
        "cluster_time": module.cluster_time_ns,
        "sessions": [(s.session_id, s.last_applied_seq, s.offers, s.closed,
                      [(seq, list(r)) for seq, r in s.replies.items()]) for s in module.sessions],
        "egress": module.take_egress(),
        "failure": None if module.failure is None else str(module.failure),
    }


def apply_in_batches(module: ConsensusModule, total: int, rng: random.Random) -> None:
    lo = 1
    while lo <= total:
        hi = min(total + 1, lo + rng.randint(1, 40))
        module.apply_ready(SimpleNamespace(apply_lo=lo, apply_hi=hi), 5_000)
        lo = hi


def apply_one_by_one(module: ConsensusModule, total: int) -> None:
    module._now_ns = 5_000
    for index in range(1, total + 1):
        module.apply(index, *module.core.log.entries[index - 1])


@pytest.mark.parametrize("role", [Role.LEADER, Role.FOLLOWER])
@pytest.mark.parametrize("seed", range(6))
def test_fast_path_matches_entry_by_entry_apply(seed, role):
    log = random_log(random.Random(seed), 400)
    fast, slow = member(log, role), member(log, role)
    apply_in_batches(fast, len(log), random.Random(seed + 100))
    apply_one_by_one(slow, len(log))
    got, want = observe(fast), observe(slow)
    assert got == want
    assert want["counters"].get("duplicate_message_skipped") and want["counters"].get("unknown_service")
    if role is Role.LEADER:
        assert want["egress"]                                 # replies and acks were produced


def test_a_raising_service_stops_both_paths_at_the_same_entry():
    log = random_log(random.Random(3), 300, with_boom=True)
    fast, slow = member(log, Role.FOLLOWER), member(log, Role.FOLLOWER)
    with pytest.raises(ServiceError):
        apply_in_batches(fast, len(log), random.Random(1))
    with pytest.raises(ServiceError):
        apply_one_by_one(slow, len(log))
    got, want = observe(fast), observe(slow)
    assert got == want and "boom" not in str(want["messages"])
    with pytest.raises(ServiceError):                          # and stays stopped
        fast.apply_ready(SimpleNamespace(apply_lo=1, apply_hi=len(log) + 1), 5_000)


def test_the_comparison_notices_a_difference():
    """Negative control: one skipped entry on one side must show up."""
    log = random_log(random.Random(0), 200)
    fast, slow = member(log, Role.LEADER), member(log, Role.LEADER)
    apply_in_batches(fast, len(log), random.Random(0))
    apply_one_by_one(slow, len(log) - 1)
    assert observe(fast) != observe(slow)
