"""Mutation testing, round 5b (the async sync, second half): what the simulator's mutants
showed no fast test held. SimMember copies ClusterNode's sync-wait rules (held
acknowledgements released once durable, dropped on a truncation, the unsynced end cut back,
no snapshot installed over a running sync); a difference there makes the swarm test another
protocol than the node runs, so each rule is pinned on a bare member here as round 5 pinned
the node's (tests/cluster/test_mutant_gaps_round5.py)."""
from __future__ import annotations

from types import SimpleNamespace

from aeronpy.core.messages import AppendResponse
from aeronpy.service import Role
from aeronpy.testing.member import SimMember
from aeronpy.testing.sim_snapshots import SimNodeSnapshots


def _ack(term, match):
    return AppendResponse(term, True, match, 0, 0)


def _bare_member():
    member = object.__new__(SimMember)
    member._held = []
    member.sent = []
    member._send_list = member.sent.extend
    return member


def test_the_simulator_releases_held_acks_up_to_and_including_the_synced_index():
    member = _bare_member()
    member._held = [(5, [(1, _ack(2, 5))]), (6, [(1, _ack(2, 6))])]
    member._release_held(4)
    assert not member.sent
    member._release_held(5)                       # index == synced: durable, goes
    assert member.sent == [(1, _ack(2, 5))] and [i for i, _m in member._held] == [6]
    member._release_held(6)
    assert member.sent[-1] == (1, _ack(2, 6)) and not member._held


class _TruncatingCore:
    """A follower core whose one Ready cuts its log from ``cut`` (nothing new to write)."""
    def __init__(self, cut):
        self.role = Role.FOLLOWER
        self.advanced = []
        self._rd = SimpleNamespace(send_first=False, messages=[], truncate_from=cut,
                                   hard_state=None, persist_lo=cut, persist_hi=cut,
                                   role_changed=None, apply_lo=1, apply_hi=1,
                                   snapshot_requests=[])

    def has_ready(self):
        return self._rd is not None

    def ready(self):
        rd, self._rd = self._rd, None
        return rd

    def advance(self, rd, durable=True):
        self.advanced.append(durable)


def test_the_simulators_truncation_drops_held_acks_and_cuts_back_the_unsynced_end():
    """As ClusterNode._process_ready: entries 8..10 written, their sync running, an ack of
    them held; the log is cut from 8. The held ack goes (once new entries at 8.. are durable
    it would vouch for them) and the sync wait covers only 7 (what is left of the writes)."""
    cuts = []
    member = _bare_member()
    member.core = core = _TruncatingCore(8)
    member.disk = SimpleNamespace(truncate_from=cuts.append)
    member.module = None
    member._checker = SimpleNamespace(before_truncate=lambda m, i: None,
                                      on_persisted=lambda m, rd: None)
    member.crash_at_next_write = False
    member._sync, member.sync_lag_ns = True, 5_000_000
    member._unsynced_hi, member._sync_due_ns = 10, 10 ** 18
    member._unsynced_since_ns, member._stall_handover_ns = 0, 0
    member._held = [(10, [(0, _ack(1, 10))])]
    member.process(1_000_000)
    assert cuts == [8]
    assert member._held == [] and member.sent == []
    assert member._unsynced_hi == 7
    assert core.advanced == [False]                # 1..7 still wait for that sync


def test_the_simulator_installs_no_snapshot_while_writes_wait_for_their_sync():
    """SimNodeSnapshots.can_install, as NodeSnapshots.can_install (round 5)."""
    holder = SimpleNamespace(member=SimpleNamespace(_unsynced_hi=7))
    assert not SimNodeSnapshots.can_install(holder)
    holder.member._unsynced_hi = 0
    assert SimNodeSnapshots.can_install(holder)


def _hung_leader(seed=1, run_ms=6_000):
    """Three members; the leader's disk hangs (no sync of it ever finishes) while entries are
    proposed. Returns (the old leader, its term, the leader and its term after ``run_ms``,
    the commit indexes before and after, when (ms) and in which role the old leader's core
    was asked to transfer the leadership, its sync_stalls)."""
    from aeronpy.testing.sim import SimCluster
    sim = SimCluster(members=3, seed=seed)
    assert sim.run_until(lambda: sim.leader() is not None, 5000)
    sim.run_for(500)
    leader = sim.leader()
    term = sim.core(leader).term
    core = sim.core(leader)
    asked = []
    transfer = core.transfer_leadership

    def counting(to, now_ns):
        asked.append((now_ns // 1_000_000, core.role))
        return transfer(to, now_ns)
    core.transfer_leadership = counting
    sim.members[leader].sync_lag_ns = 10 ** 13
    before = max(sim.core(m).commit_index for m in range(3))
    for _ in range(run_ms // 100):
        current = sim.leader()
        if current is not None:
            sim.propose(current, 15, b"x")
        sim.run_for(100)
    now = sim.leader()
    after = max(sim.core(m).commit_index for m in range(3))
    return leader, term, now, (sim.core(now).term if now is not None else None), before, \
        after, asked, sim.members[leader].sync_stalls


def test_the_simulators_leader_hands_over_when_its_sync_stalls():
    """As ClusterNode._check_sync: a leader whose sync has made no progress for
    SYNC_STALL_NS hands the leadership to a follower (once per SYNC_STALL_NS while it
    lasts); a working disk leads and commits. Without it the simulator's leader kept office
    on a hung disk (committing on its followers' copies), unlike the node's."""
    from aeronpy.core.ready import SYNC_STALL_NS
    leader, term, now, now_term, before, after, asked, stalls = _hung_leader()
    assert asked, "the stalled leader never tried to hand over"
    assert all(role == Role.LEADER for _ms, role in asked), "a follower was asked to hand over"
    times = [ms for ms, _role in asked]
    assert all(b - a > SYNC_STALL_NS // 1_000_000 for a, b in zip(times, times[1:])), times
    assert now is not None and now != leader and now_term > term
    assert after > before + 10
    assert stalls > 0            # following, it held what it sent (counted, as the node's)


def test_negative_control_without_the_stall_bound_the_simulators_hung_leader_stays(
        monkeypatch):
    from aeronpy.testing import member
    monkeypatch.setattr(member, "SYNC_STALL_NS", 10 ** 15)
    leader, term, now, now_term, _before, _after, asked, stalls = _hung_leader()
    assert not asked and now == leader and now_term == term and stalls == 0
