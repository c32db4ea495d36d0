"""The leader's retransmit timer and the liveness guard on snapshot requests.

1. The timer of an append starts when it goes in flight (or at the last ack, if later). It used
   to run from the last ack only, which after a quiet spell lies far back: the first append of
   every burst was taken for lost on the next tick, a probe sent it again, and the rest of the
   burst waited in PROBE for that probe's answer.
2. A follower not heard from for a retransmit timeout gets no snapshot; it is probed, and its
   heartbeat answer starts the snapshot (as etcd's RecentActive). Before, a transfer could start
   to a member that was cut off and then wait out its ack timeout after the network healed.
"""
from __future__ import annotations

from aeronpy.core.messages import AppendEntries, HeartbeatResponse
from aeronpy.core.progress import PROBE, REPLICATE
from aeronpy.core.replication import LeaderReplication

from .harness import MS, PaperNet


def _old_timer_from_last_ack(self, pr) -> None:
    """The behaviour before the fix, for the negative controls."""
    due = pr.last_ack_ns + self.core.config.retransmit_timeout_ns
    if due < self.tick_due_ns:
        self.tick_due_ns = due


def _quiet_then_burst(net: PaperNet) -> tuple:
    """Elect 0, stay quiet (heartbeats answered) past the retransmit timeout, then offer two
    entries 1 ms apart; returns (appends to 1 carrying the second entry before any answer,
    retransmit probes counted)."""
    net.elect(0)
    leader = net[0]
    retransmit_ms = leader.config.retransmit_timeout_ns / MS
    for _ in range(int(3 * retransmit_ms / 10)):
        net.tick(0, 10)                        # heartbeats go out and are answered
        net.deliver_all()
    probes_before = leader.counters.get("retransmit_probe", 0)
    leader.propose(16, b"first")
    net.flush(0)
    held = net.take(src=0)                     # the first append is in flight, unanswered
    net.tick(0, 1)                             # the next duty cycle's tick
    second = leader.propose(16, b"second")
    net.flush(0)
    carrying = [m for _, d, m in net.take(src=0, dst=1, kind=AppendEntries)
                if m.prev_index + m.count >= second]
    net.outbox.extend(held)
    net.deliver_all()
    return carrying, leader.counters.get("retransmit_probe", 0) - probes_before


def test_a_burst_after_a_quiet_spell_is_not_probed():
    net = PaperNet(3)
    carrying, probes = _quiet_then_burst(net)
    assert probes == 0
    assert len(carrying) == 1, "the second entry goes out at once, in REPLICATE"
    assert net[0].leader_state.progress[1].mode == REPLICATE
    assert net[0].commit_index == net[0].log.last_index


def test_negative_control_the_timer_from_the_last_ack_probes_the_burst(monkeypatch):
    monkeypatch.setattr(LeaderReplication, "_retransmit_timer_started", _old_timer_from_last_ack)
    net = PaperNet(3)
    carrying, probes = _quiet_then_burst(net)
    assert probes >= 1
    assert carrying == [], "the old timer put the follower in PROBE, holding the burst back"


def test_a_lost_append_is_still_retransmitted_after_the_timeout_from_its_send():
    net = PaperNet(3)
    net.elect(0)
    leader = net[0]
    retransmit_ms = leader.config.retransmit_timeout_ns / MS
    for _ in range(int(3 * retransmit_ms / 10)):
        net.tick(0, 10)
        net.deliver_all()
    leader.propose(16, b"lost")
    net.flush(0)
    net.take(src=0)                            # every copy is lost
    net.tick(0, retransmit_ms - 1)
    assert leader.counters.get("retransmit_probe", 0) == 0, "not before the timeout"
    net.take(src=0)                            # heartbeats (lost too)
    net.tick(0, 2)
    assert leader.counters.get("retransmit_probe", 0) == 2, "both followers probed"
    resent = net.take(src=0, kind=AppendEntries)
    assert {d for _, d, _ in resent} == {1, 2}
    net.outbox.extend(resent)
    net.deliver_all()
    assert leader.commit_index == leader.log.last_index


def _silent_follower_behind_a_compaction(net: PaperNet) -> int:
    """Elect 0; member 2 falls silent while the leader is idle (nothing in flight to it, so no
    retransmit timer runs), long past a retransmit timeout; then entries are committed without
    it and compacted away, and its lost append is probed. Returns the leader's snapshot
    requests for 2 so far."""
    net.elect(0)
    leader = net[0]
    net.blocked = {(0, 2), (2, 0)}
    retransmit_ms = leader.config.retransmit_timeout_ns / MS
    for _ in range(int(3 * retransmit_ms / 10)):
        net.tick(0, 10)
        net.deliver_all()
    for i in range(10):
        leader.propose(16, b"c%d" % i)
        net.flush(0)
        net.deliver_all()
    leader.compact(leader.applied_index, leader.term)
    for _ in range(int(2 * retransmit_ms / 10)):
        net.tick(0, 10)
        net.deliver_all()
    assert leader.counters.get("retransmit_probe", 0) >= 1
    return sum(1 for rd in net.readies[0] for m, _i, _t in rd.snapshot_requests if m == 2)


def test_no_snapshot_to_a_follower_not_heard_from_until_it_answers():
    net = PaperNet(3)
    assert _silent_follower_behind_a_compaction(net) == 0
    pr = net[0].leader_state.progress[2]
    assert pr.mode == PROBE
    net.blocked = set()
    net.step(0, 2, HeartbeatResponse(net[0].term, 0))       # it is back
    requests = [r for rd in net.readies[0] for r in rd.snapshot_requests if r[0] == 2]
    assert requests == [(2, net[0].log.base_index, net[0].log.base_term)]


def test_negative_control_without_the_guard_the_snapshot_goes_to_a_silent_follower(monkeypatch):
    monkeypatch.setattr(LeaderReplication, "_recently_active", lambda self, pr: True)
    net = PaperNet(3)
    assert _silent_follower_behind_a_compaction(net) >= 1
