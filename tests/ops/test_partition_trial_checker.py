"""bench/partition_trial's pure parts on hand-made inputs: which directions each scenario cuts,
the seeded flapping schedule, the iptables rules, and the per-phase figures and recovery
verdict. No cluster, no iptables."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

from partition_trial import metrics, plan  # noqa: E402

PORTS = [{"consensus_port": 39000 + 10 * i, "ingress_port": 39001 + 10 * i, "admin_port": 39002 + 10 * i}
         for i in range(3)]


# -- plan ---------------------------------------------------------------------------------------

def test_scenario_letters_expand_and_unknown_ones_are_refused():
    assert plan.expand_scenarios("a, e,g") == ["a", "e1", "e2", "g"]
    with pytest.raises(ValueError, match="unknown scenario 'z'"):
        plan.expand_scenarios("a,z")


@pytest.mark.parametrize("leader", [0, 1, 2])
def test_each_scenario_cuts_the_directions_it_names(leader):
    f1, f2 = [m for m in range(3) if m != leader]

    def cuts(name):
        return set(plan.partition_for(name, leader).cuts)

    assert cuts("a") == {(leader, f1), (f1, leader), (leader, f2), (f2, leader)}
    assert cuts("b") == {(f1, leader), (f2, leader)}          # the leader speaks, hears nothing
    assert cuts("c") == {(leader, f1), (leader, f2)}          # the leader hears, nobody hears it
    assert cuts("d") == {(f2, leader), (leader, f2), (f2, f1), (f1, f2)}
    assert cuts("e1") == {(leader, f2), (f2, leader)}         # f1 bridges
    assert cuts("e2") == {(f1, f2), (f2, f1)}                 # the leader bridges
    assert cuts("h") == {(f2, leader)} and cuts("i") == {(leader, f2)}
    g = plan.partition_for("g", leader)
    assert g.cuts == frozenset() and g.ingress_blocked == {leader}


def test_flapping_schedule_is_seeded_bounded_and_changes_every_200_to_500_ms():
    schedule = plan.flapping_schedule(seed=11, duration_s=10.0)
    assert schedule == plan.flapping_schedule(seed=11, duration_s=10.0)
    assert schedule != plan.flapping_schedule(seed=12, duration_s=10.0)
    offsets = [offset for offset, _ in schedule]
    assert offsets[0] == 0.0 and offsets[-1] < 10.0
    assert all(0.2 - 1e-3 <= b - a <= 0.5 + 1e-3 for a, b in zip(offsets, offsets[1:]))
    kinds = set()
    for _, partition in schedule:
        assert all(s != d and 0 <= s < 3 and 0 <= d < 3 for s, d in partition.cuts)
        assert not partition.ingress_blocked
        pairs = {frozenset(c) for c in partition.cuts}
        assert len(pairs) <= 2
        for pair in pairs:
            x, y = sorted(pair)
            kinds.add(((x, y) in partition.cuts, (y, x) in partition.cuts))
    assert kinds == {(True, False), (False, True), (True, True)}   # one way either way, and both


def test_rules_name_source_and_destination_consensus_ports_and_both_ingress_directions():
    rules = plan.iptables_rules(plan.Partition(frozenset({(0, 2)}), frozenset({1})), PORTS)
    assert ["-i", "lo", "-p", "udp", "--sport", "39000", "--dport", "39020", "-j", "DROP"] in rules
    assert ["-i", "lo", "-p", "udp", "--dport", "39011", "-j", "DROP"] in rules
    assert ["-i", "lo", "-p", "udp", "--sport", "39011", "-j", "DROP"] in rules
    assert len(rules) == 3
    assert plan.iptables_rules(plan.HEALED, PORTS) == []
    assert plan.describe(plan.HEALED) == "healed"


# -- metrics ------------------------------------------------------------------------------------

def _record(sent_at, latency_s, outcome, payload):
    return [sent_at, int(latency_s * 1e9), outcome, payload, "1" if outcome == metrics.ACKED else None, True]


def _counters(role, term, leader, commit=10, errors=0):
    return {"role": role, "leadership_term": term, "leader_id": leader, "commit_index": commit,
            "errors": errors}


AGREED = {0: _counters(2, 3, 0), 1: _counters(0, 3, 0), 2: _counters(0, 3, 0)}


def test_longest_gap_counts_the_edges_of_the_window():
    assert metrics.longest_gap([], 10.0, 20.0) == 10.0
    assert metrics.longest_gap([11.0, 12.0, 19.0], 10.0, 20.0) == 7.0
    assert metrics.longest_gap([10.5, 19.0], 10.0, 20.0) == 8.5
    assert metrics.longest_gap([5.0, 25.0], 10.0, 20.0) == 10.0        # outside the window


def test_first_ack_after_heal_per_client_and_never():
    acks = metrics.ack_times([_record(9.0, 0.5, metrics.ACKED, "s0:1"), _record(10.5, 0.1, metrics.ACKED, "s0:2"),
                              _record(12.0, 1.0, metrics.ACKED, "a0.3:7"), _record(11.0, 2, metrics.TIMED_OUT, "b0:4")])
    first = metrics.first_ack_after(acks, ["a0", "b0", "s0"], t_heal=10.0)
    assert first == {"a0": pytest.approx(3.0), "b0": None, "s0": pytest.approx(0.6)}


def test_agreed_leader_needs_one_term_one_named_leader_that_leads():
    assert metrics.agreed_leader(AGREED) == 0
    assert metrics.agreed_leader({**AGREED, 2: None}) is None
    assert metrics.agreed_leader({**AGREED, 2: _counters(0, 2, 0)}) is None      # an old term
    assert metrics.agreed_leader({**AGREED, 2: _counters(0, 3, -1)}) is None     # knows no leader
    assert metrics.agreed_leader({**AGREED, 1: _counters(2, 3, 0)}) is None      # two leaders
    assert metrics.agreed_leader({0: _counters(0, 3, 1), 1: _counters(0, 3, 1), 2: _counters(0, 3, 1)}) is None


def test_two_leaders_time_and_time_to_agreement():
    split = {0: _counters(2, 3, 0), 1: _counters(2, 4, 1), 2: _counters(0, 4, 1)}
    samples = [(0.0, AGREED), (1.0, split), (1.5, split), (2.0, AGREED), (4.0, split), (5.0, AGREED)]
    assert metrics.two_leaders_s(samples, 0.0, 3.0) == pytest.approx(1.0)
    assert metrics.two_leaders_s(samples, 0.0, 4.5) == pytest.approx(1.5)      # the last stands to t1
    assert metrics.seconds_to_agreement(samples, 1.2) == pytest.approx(0.8)
    assert metrics.seconds_to_agreement(samples, 5.5) is None


def _phase(samples, after=AGREED):
    return {"index": 0, "name": "a", "leader": 0, "t0": 0.0, "t1": 10.0, "t2": 20.0,
            "counters_before": {m: _counters(r, 3, 0) for m, r in ((0, 2), (1, 0), (2, 0))},
            "counters_heal": {m: _counters(r, 4, 1) for m, r in ((0, 0), (1, 2), (2, 0))},
            "counters_after": after, "samples": samples}


def test_a_phase_that_recovers_passes_and_one_that_never_does_fails():
    records = [_record(t, 0.01, metrics.ACKED, tag + ":" + str(t)) for t in (1.0, 2.0, 11.0) for tag in ("s0", "b0")]
    records.append(_record(3.0, 2.0, metrics.TIMED_OUT, "s0:x"))
    row = metrics.phase_row(_phase([(10.5, AGREED)]), records, ["b0", "s0"])
    assert row["elections"] == 1                                   # term 3 -> 4 during the cut
    assert row["timeouts"] == 1 and row["longest_gap_s"] == pytest.approx(7.99, abs=0.01)
    assert row["all_clients_acked_after_heal_s"] == pytest.approx(1.01, abs=0.01)
    assert row["leader_agreed_after_heal_s"] == pytest.approx(0.5)
    assert metrics.recovery_violations([row], bound_s=10.0) == []
    # negative control: nothing acknowledged after the heal, and no agreed leader
    stuck = metrics.phase_row(_phase([(10.5, {**AGREED, 2: None})], after={**AGREED, 2: None}),
                              [r for r in records if r[0] < 10.0], ["b0", "s0"])
    violations = metrics.recovery_violations([stuck], bound_s=10.0)
    assert "phase 0 (a): clients b0, s0 never acknowledged after the heal" in violations
    assert "phase 0 (a): members did not agree on one leader within 10 s of the heal" in violations


def test_late_recovery_and_member_errors_are_violations():
    records = [_record(t, 0.01, metrics.ACKED, "s0:" + str(t)) for t in (1.0, 22.5)]
    errors_after = {m: _counters(r, 4, 1, errors=2 if m == 1 else 0) for m, r in ((0, 0), (1, 2), (2, 0))}
    row = metrics.phase_row(_phase([(19.0, AGREED)], after=errors_after), records, ["s0"])
    violations = metrics.recovery_violations([row], bound_s=10.0)
    assert any("waited 12.5 s after the heal" in v for v in violations)
    assert "phase 0 (a): members recorded 2 errors (errors.log)" in violations
    assert not any("agree" in v for v in violations)                        # 9 s: within the bound


def test_a_member_that_did_not_catch_up_after_the_heal_is_stuck():
    heal = {0: _counters(0, 4, 1, commit=90), 1: _counters(2, 4, 1, commit=100), 2: _counters(0, 4, 1, commit=100)}
    after = {0: _counters(0, 4, 1, commit=95), 1: _counters(2, 4, 1, commit=150), 2: _counters(0, 4, 1, commit=149)}
    assert metrics.stuck_members(heal, after) == [0]
    assert metrics.stuck_members(heal, {**after, 0: _counters(0, 4, 1, commit=100)}) == []
    assert metrics.stuck_members(heal, {**after, 2: None}) == [0, 2]
    row = metrics.phase_row({**_phase([(10.5, AGREED)], after=after), "counters_heal": heal},
                            [_record(10.5, 0.01, metrics.ACKED, "s0:1")], ["s0"])
    assert metrics.recovery_violations([row], bound_s=10.0) == [
        "phase 0 (a): members [0] did not reach, by the end of the settle, the commit index the cluster had at the heal"]


def test_table_prints_never_for_a_phase_without_recovery():
    row = metrics.phase_row(_phase([]), [], ["s0"])
    assert "never" in metrics.format_table([row])


def test_a_client_that_sent_its_quota_is_owed_nothing_after_it_but_a_hung_one_is():
    """The closed-loop client stops at its quota of requests (a bound on its memory); on a fast
    machine it reached it mid-run, and the phases after were failed for it ('never acknowledged
    after the heal'). A client that stops short of its quota (hung) still fails them."""
    from loss_trial.checker import ACKED
    from partition_trial.metrics import finished_clients, phase_row
    phase = {"index": 0, "name": "a", "leader": 0, "t0": 100.0, "t1": 110.0, "t2": 120.0,
             "counters_before": {}, "counters_heal": {}, "counters_after": {}, "samples": []}
    steady = [[t, 1_000_000, ACKED, f"s0:{i}", "1"] for i, t in enumerate(range(90, 120))]
    capped = [[90.0 + i * 0.01, 1_000_000, ACKED, f"b0:{i}", "1"] for i in range(500)]   # ends at 95
    quota = 500
    finished = finished_clients(steady + capped, quota)
    assert set(finished) == {"b0"}
    row = phase_row(phase, steady + capped, ["b0", "s0"], finished)
    assert row["unrecovered_clients"] == []
    # control: the same client with one request fewer than its quota is a hung client
    short = capped[:-1]
    row = phase_row(phase, steady + short, ["b0", "s0"], finished_clients(steady + short, quota))
    assert row["unrecovered_clients"] == ["b0"]
