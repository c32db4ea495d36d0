"""Shared pieces of the scenario tests."""
from __future__ import annotations

from aeronpy.core import Role
from aeronpy.service import ClusteredService
from aeronpy.testing import SimCluster

ELECTION_BOUND_MS = 1000     # a leader must be found within this much simulated time
RAW_ENTRY = 15               # an entry type of the core's range: the cluster layer skips it


class KvService(ClusteredService):
    """A tiny replicated state machine: 'k=v' sets, anything else is echoed; remembers all."""

    def __init__(self):
        self.applied = []
        self.state = {}
        self.roles = []
        self.started = 0
        self.timestamps = []

    def on_start(self, cluster, snapshot):
        self.started += 1
        self.cluster = cluster

    def on_role_change(self, role):
        self.roles.append(role)

    def on_session_message(self, session, timestamp_ns, message):
        body = bytes(message)
        self.applied.append(body)
        self.timestamps.append(timestamp_ns)
        if b"=" in body:
            key, value = body.split(b"=", 1)
            self.state[key] = value
        if session is not None:
            session.offer(b"ok:" + body)


def make_sim(members=3, seed=1, **kw) -> SimCluster:
    return SimCluster(members=members, seed=seed, service=KvService, **kw)


def wait_leader(sim: SimCluster, within_ms=ELECTION_BOUND_MS, among=None) -> int:
    def found():
        leader = sim.leader()
        return leader is not None and (among is None or leader in among)
    assert sim.run_until(found, within_ms), f"no leader within {within_ms}ms: {states(sim)}"
    return sim.leader()


def leaders_by_term(sim: SimCluster) -> dict:
    return {m: (sim.core(m).term if sim.alive(m) else None) for m in range(sim.member_count)
            if sim.alive(m) and sim.core(m).role == Role.LEADER}


def states(sim: SimCluster) -> str:
    return "; ".join(repr(sim.core(m)) if sim.alive(m) else f"{m} down" for m in range(sim.member_count))


def committed_on(sim: SimCluster, index: int, members) -> bool:
    return all(sim.alive(m) and sim.core(m).commit_index >= index for m in members)


def propose(sim: SimCluster, payload: bytes, member=None) -> int:
    """Propose a raw entry straight into ``member``'s core (default: the leader); 0 if it does
    not lead. For Raft-level tests: services never see it (client messages go through
    ``sim.client()``)."""
    member = sim.leader() if member is None else member
    if member is None:
        return 0
    return sim.propose(member, RAW_ENTRY, payload)


def converge(sim: SimCluster, within_ms=3000) -> None:
    def done():
        leader = sim.leader()
        if leader is None:
            return False
        last = sim.core(leader).log.last_index
        return all(sim.alive(m) and sim.core(m).commit_index == last and sim.core(m).applied_index == last
                   for m in range(sim.member_count))
    assert sim.run_until(done, within_ms), f"no convergence within {within_ms}ms: {states(sim)}"
