"""bench/pause_trial's pure parts on hand-made inputs: the steps each scenario expands into, the
seeded pause train, and the per-step figures and recovery verdict. No cluster, no signals."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

from pause_trial import metrics, plan  # noqa: E402

LEADER, FOLLOWER = 2, 0


# -- plan ---------------------------------------------------------------------------------------

def test_scenarios_expand_into_the_steps_the_brief_names():
    steps = plan.expand_scenarios("a,b,c,e,f", seed=1, phase_s=10.0)
    assert [s.name for s in steps] == ["a1", "a2", "a3", "a4", "b1", "b2", "c", "e1", "e2", "f"]
    assert [s.pauses[0][1] for s in steps[:4]] == [0.1, 0.5, 2.0, 8.0]
    assert all(s.target == plan.LEADER for s in steps[:4])
    assert [s.pauses for s in steps[4:6]] == [((0.0, 2.0),), ((0.0, 8.0),)]
    assert steps[6].target == plan.FOLLOWERS and steps[6].pauses == ((0.0, 1.0),)
    assert steps[7].clients == ("s0",) and steps[8].clients == ("s0", "a0") and steps[8].paused_s == 15.0
    assert steps[9].target == plan.LEADER_SNAPSHOT and steps[9].paused_s == 3.0
    with pytest.raises(ValueError, match="unknown scenario 'z'"):
        plan.expand_scenarios("a,z", seed=1, phase_s=10.0)
    with pytest.raises(ValueError, match="no scenario"):
        plan.expand_scenarios(" , ", seed=1, phase_s=10.0)


def test_pause_train_is_seeded_bounded_and_never_overlaps():
    train = plan.pause_train(seed=5, duration_s=10.0)
    assert train == plan.pause_train(seed=5, duration_s=10.0)
    assert train != plan.pause_train(seed=6, duration_s=10.0)
    assert train[0][0] == 0.0 and train[-1][0] < 10.0 and 10 <= len(train) <= 21
    assert all(0.05 <= d <= 0.3 for _, d in train)
    starts = [o for o, _ in train]
    assert all(0.5 - 1e-3 <= b - a <= 1.0 + 1e-3 for a, b in zip(starts, starts[1:]))
    assert all(o + d < nxt for (o, d), (nxt, _) in zip(train, train[1:]))


def test_d_at_position_i_uses_seed_plus_i_and_run_seconds_adds_the_settles():
    first, second = [s for s in plan.expand_scenarios("d,d", seed=40, phase_s=6.0)]
    assert first.pauses == plan.pause_train(40, 6.0) and second.pauses == plan.pause_train(41, 6.0)
    steps = plan.expand_scenarios("a", seed=0, phase_s=10.0)
    assert plan.run_seconds(steps, settle_s=10.0) == pytest.approx(0.1 + 0.5 + 2 + 8 + 40)


# -- metrics ------------------------------------------------------------------------------------

def counters(role, term, leader, commit=100, sessions=4, errors=0):
    return {"role": role, "leadership_term": term, "leader_id": leader, "commit_index": commit,
            "append_index": commit, "errors": errors, "sessions_open": sessions}


def stable(term=3, leader=LEADER, commit=100):
    return {m: counters(2 if m == leader else 0, term, leader, commit) for m in range(3)}


def test_stale_leader_time_is_counted_from_the_resume_until_it_stops_leading_an_old_term():
    stale = {0: counters(2, 4, 0), 1: counters(0, 4, 0), LEADER: counters(2, 3, LEADER)}
    samples = [(9.0, stale), (10.1, stale), (10.3, stale), (10.4, stable(term=4, leader=0))]
    assert metrics.stale_leader_s(samples, LEADER, t_cont=10.0, t_end=20.0) == pytest.approx(0.4)
    assert metrics.stale_leader_s(samples[:3], LEADER, t_cont=10.0, t_end=20.0) is None   # never stepped down
    assert metrics.stale_leader_s([(10.1, stable())], LEADER, 10.0, 20.0) == 0.0          # no election at all


def test_first_ack_after_each_pause_takes_the_worst_and_none_when_one_had_no_ack():
    acks = [(1.0, "s0"), (2.3, "s1"), (4.05, "s0")]
    pauses = [[[LEADER], 1.5, 2.0, True], [[LEADER], 3.5, 4.0, True]]
    assert metrics.first_ack_after_each(acks, pauses, t_end=6.0) == pytest.approx(0.3)
    assert metrics.first_ack_after_each(acks[:2], pauses, t_end=6.0) is None


def record(sent, latency_s, outcome, payload, reply=None):
    return [sent, int(latency_s * 1e9), outcome, payload, reply or ("1" if outcome == "ack" else None), True]


def step(**overrides):
    base = {"name": "a3", "what": "leader 2 s", "target": "leader", "leader": LEADER, "paused_clients": [],
            "pause_s": 2.0, "pauses": [[[LEADER], 10.0, 12.0, True]], "t0": 10.0, "t_resume": 12.0, "t_end": 22.0,
            "counters_before": stable(), "counters_resume": stable(), "counters_after": stable(term=4, leader=0),
            "samples": [(12.05, stable(term=4, leader=0))]}
    base.update(overrides)
    return base


def healthy_records():
    out = []
    for tag in ("s0", "s1"):
        out += [record(9.0 + 0.5 * i, 0.01, "ack", f"{tag}:{i}") for i in range(2)]
        out.append(record(10.0, 2.0, "timeout", f"{tag}:2"))
        out += [record(12.2 + 0.5 * i, 0.01, "ack", f"{tag}:{3 + i}") for i in range(20)]
    return out


def test_a_recovered_leader_pause_gives_its_figures_and_no_violation():
    row = metrics.step_row(step(), healthy_records(), ["s0", "s1"])
    assert row["elections"] == 1 and row["timeouts"] == 2 and row["closed"] == 0
    assert row["longest_gap_s"] == pytest.approx(2.21, abs=0.01)
    assert row["first_ack_after_resume_s"] == pytest.approx(0.21, abs=0.01)
    assert row["leader_agreed_after_resume_s"] == pytest.approx(0.05)
    assert row["stale_leader_s"] == 0.0 and row["leader_stepped_down"] is None
    assert row["after"][0] == [2, 4, 0]
    assert metrics.recovery_violations([row], bound_s=10.0, session_timeout_s=10.0) == []


def test_the_verdict_fails_a_client_never_acknowledged_a_stale_leader_and_a_member_left_behind():
    records = [r for r in healthy_records() if not r[3].startswith("s1") or r[0] < 12]
    stale = {0: counters(2, 4, 0), 1: counters(0, 4, 0), LEADER: counters(2, 3, LEADER)}
    behind = stable(term=4, leader=0)
    behind[1]["commit_index"] = 50
    row = metrics.step_row(step(samples=[(12.05, stale), (21.9, stale)], counters_after=behind,
                                counters_resume=stable(commit=90)), records, ["s0", "s1"])
    found = "\n".join(metrics.recovery_violations([row], bound_s=10.0, session_timeout_s=10.0))
    assert "clients s1 never acknowledged after the resume" in found
    assert "did not agree on one leader" in found
    assert "still led in an old term" in found
    assert "members [1] did not reach" in found


def client_step(pause_s):
    return step(name="e2", what=f"clients s0 {pause_s:g} s", target="clients", paused_clients=["s0"],
                pause_s=pause_s, pauses=[[["s0"], 10.0, 10.0 + pause_s, False]], t_resume=10.0 + pause_s,
                t_end=20.0 + pause_s, counters_after=stable(),
                samples=[(10.5, stable()), (10.1 + pause_s, stable())])


def test_a_client_paused_past_the_session_timeout_must_see_its_session_closed_and_no_other_client():
    closed_then_ack = [record(9.9, 15.2, "closed", "s0:1"), record(25.2, 1.0, "ack", "s0:2"),
                       *[record(10 + i, 0.01, "ack", f"s1:{i}") for i in range(26)]]
    row = metrics.step_row(client_step(15.0), closed_then_ack, ["s0", "s1"])
    assert row["paused_clients"]["s0"] == {"outcomes_before_ack": ["closed"], "acked": True, "first_ack_s": 1.2}
    assert metrics.recovery_violations([row], 10.0, session_timeout_s=10.0) == []

    timeouts_only = [record(9.9, 15.2, "timeout", "s0:1"), record(25.2, 1.0, "ack", "s0:2")] + closed_then_ack[2:]
    row = metrics.step_row(client_step(15.0), timeouts_only, ["s0", "s1"])
    assert any("did not see its session closed" in v for v in metrics.recovery_violations([row], 10.0, 10.0))

    row = metrics.step_row(client_step(3.0), closed_then_ack, ["s0", "s1"])      # closed after 3 s: wrong
    assert any("shorter than the session timeout" in v for v in metrics.recovery_violations([row], 10.0, 10.0))

    other_closed = closed_then_ack + [record(12.0, 0.01, "closed", "s1:99")]
    row = metrics.step_row(client_step(15.0), other_closed, ["s0", "s1"])
    assert row["closed_unpaused"] == 1
    assert any("clients that were not paused" in v for v in metrics.recovery_violations([row], 10.0, 10.0))


def test_the_leader_stepping_down_while_both_followers_are_stopped_is_reported():
    down = stable()
    down[LEADER]["role"] = 0
    row = metrics.step_row(step(name="c", target="followers", pauses=[[[0, 1], 10.0, 11.0, False]], t_resume=11.0,
                                samples=[(10.2, stable()), (10.6, down), (11.3, stable(term=4, leader=0))]),
                           healthy_records(), ["s0", "s1"])
    assert row["leader_stepped_down"] is True
    row = metrics.step_row(step(name="c", target="followers", pauses=[[[0, 1], 10.0, 11.0, False]], t_resume=11.0,
                                samples=[(10.2, stable()), (11.3, stable())]), healthy_records(), ["s0", "s1"])
    assert row["leader_stepped_down"] is False


def test_fewest_sessions_counts_the_leader_of_the_highest_term_only():
    stale = {0: counters(2, 4, 0, sessions=2), 1: counters(0, 4, 0), LEADER: counters(2, 3, LEADER, sessions=4)}
    assert metrics.leaders_sessions([(1.0, stable()), (2.0, stale)], 0.0, 3.0) == 2


def test_unexplained_errors_keeps_every_line_no_entry_covers():
    lines = ["member 0 log: x ERROR boom"]
    assert metrics.unexplained_errors(lines, ["leader"]) == lines


def test_a_leader_stopped_again_later_in_a_train_is_not_counted_stale_for_the_earlier_pause():
    frozen = {0: counters(2, 5, 0), 1: counters(0, 5, 0), LEADER: counters(2, 4, LEADER)}   # stopped again
    samples = [(10.1, stable(term=4)), (11.1, frozen), (12.3, stable(term=5, leader=0))]
    pauses = [[[LEADER], 9.9, 10.0, True], [[LEADER], 11.0, 12.2, True]]
    row = metrics.step_row(step(name="d", pauses=pauses, t_resume=12.2, samples=samples),
                           healthy_records(), ["s0", "s1"])
    assert row["stale_leader_s"] == 0.0
