"""bench/slowdisk_trial's pure parts on hand-made inputs: the steps each scenario expands into,
the shim's control line, the members a step slows, the recovery bound, and the per-step figures
and recovery verdict. One test builds the shim and counts the calls it slows (no timing)."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

from slowdisk_trial import metrics, plan  # noqa: E402


# -- plan ---------------------------------------------------------------------------------------

def test_scenarios_expand_into_the_steps_the_brief_names():
    steps = plan.expand_scenarios("0,a,b,c,d")
    assert [s.name for s in steps] == ["0", "a1", "a2", "a3", "b1", "b2", "c", "d"]
    assert [s.slowness.delay_us for s in steps[1:4]] == [20_000, 200_000, 1_000_000]
    assert all(s.target == plan.LEADER for s in steps[1:4]) and steps[7].target == plan.LEADER
    assert [(s.target, s.slowness.delay_us) for s in steps[4:6]] == [(plan.FOLLOWER, 200_000),
                                                                      (plan.FOLLOWER, 2_000_000)]
    assert steps[6].target == plan.FOLLOWERS and steps[6].slowness.delay_us == 50_000
    d = steps[7].slowness
    assert (d.delay_us, d.delay_us + d.jitter_us, d.every_n, d.random) == (300_000, 800_000, 50, True)
    assert steps[0].target == plan.NONE and steps[0].slowness == plan.FAST
    assert [(s.name, s.slowness.delay_us) for s in plan.expand_scenarios("e")] == [
        ("e1", 50_000), ("e2", 100_000), ("e3", 150_000)]           # extra: not in the default run
    assert "e" not in plan.DEFAULT_SCENARIOS
    assert [(s.name, s.target, s.slowness.delay_us) for s in plan.expand_scenarios("f")] == [
        ("f", plan.FOLLOWERS, 500_000)]
    assert "f" not in plan.DEFAULT_SCENARIOS
    with pytest.raises(ValueError, match="unknown scenario 'z'"):
        plan.expand_scenarios("a,z")
    with pytest.raises(ValueError, match="no scenario"):
        plan.expand_scenarios(" , ")


def test_control_line_round_trips_and_bad_lines_read_as_fast():
    for s in (plan.FAST, plan.Slowness(20_000), plan.Slowness(300_000, 50, 500_000, True), plan.Slowness(5, 3)):
        assert plan.parse_control_line(s.control_line()) == s
    assert plan.Slowness(300_000, 50, 500_000, True).control_line() == "300000 50 500000 1\n"
    assert plan.parse_control_line("") == plan.FAST
    assert plan.parse_control_line("junk 1") == plan.FAST
    assert plan.parse_control_line("7000") == plan.Slowness(7000)
    assert plan.parse_control_line("-5 0 -1 0") == plan.FAST
    assert plan.Slowness(200_000).describe() == "every sync 200 ms"
    assert plan.Slowness(300_000, 50, 500_000, True).describe() == "1 in 50 syncs 300-800 ms"
    assert plan.FAST.describe() == "fast"


def test_targets_follow_the_leader_at_the_start_and_stand_in_without_one():
    a1, b1, c, base = (plan.steps_for(x)[0] for x in "abc0")
    assert plan.targets(a1, 2, [0, 1, 2]) == [2]
    assert plan.targets(b1, 2, [0, 1, 2]) == [0]
    assert plan.targets(c, 1, [0, 1, 2]) == [0, 2]
    assert plan.targets(base, 1, [0, 1, 2]) == []
    assert plan.targets(a1, None, [0, 1, 2]) == [0] and plan.targets(c, None, [0, 1, 2]) == [1, 2]


def test_recovery_bound_is_the_steps_longest_call_plus_an_election_and_a_request_timeout():
    bounds = {s.name: plan.recovery_bound_s(s, 1.0, 2.0) for s in plan.expand_scenarios("0,a,b,d")}
    assert bounds == {"0": 3.0, "a1": 3.02, "a2": 3.2, "a3": 4.0, "b1": 3.2, "b2": 5.0, "d": 3.8}
    assert plan.run_seconds(plan.expand_scenarios("a"), 10, 8) == 54


# -- metrics ------------------------------------------------------------------------------------

def test_percentile_and_shim_statistics():
    assert metrics.percentile([], 50) is None
    assert metrics.percentile([5, 1, 3, 2, 4], 50) == 3
    assert metrics.percentile(list(range(1, 101)), 99) == 99 and metrics.percentile([7], 99) == 7
    assert metrics.parse_shim_stats("10 4 800 50 20\n") == {"calls": 10, "slowed": 4, "injected_ns": 800,
                                                            "real_ns": 50, "real_max_ns": 20}
    assert metrics.parse_shim_stats("10 4 80") is None and metrics.parse_shim_stats("a b c d e") is None
    delta = metrics.shim_delta({"calls": 3, "slowed": 1, "injected_ns": 10, "real_ns": 5, "real_max_ns": 2},
                               {"calls": 8, "slowed": 4, "injected_ns": 40, "real_ns": 9, "real_max_ns": 3})
    assert delta == {"calls": 5, "slowed": 3, "injected_ns": 30, "real_ns": 4, "real_max_ns": 3}
    assert metrics.shim_delta(None, {"calls": 2})["calls"] == 2


def _c(role, term, leader, commit=100, errors=0):
    return {"role": role, "leadership_term": term, "leader_id": leader, "commit_index": commit,
            "errors": errors, "sessions_open": 4}


def _cluster(leader, term, commit=100, errors=0):
    return {m: _c(2 if m == leader else 0, term, leader, commit, errors) for m in range(3)}


def _step(records_ok=True):
    """Leader 2 slowed over [100, 110): it leads until 103, member 0 from 104 (term 2); fast at 110."""
    samples = [(100.0 + i * 0.5, _cluster(2 if i < 7 else 0, 1 if i < 7 else 2)) for i in range(36)]
    step = {"name": "a2", "what": "leader 200 ms/sync", "target": "leader", "slowness": "every sync 200 ms",
            "targets": [2], "leader": 2, "t0": 100.0, "t_fast": 110.0, "t_end": 118.0, "samples": samples,
            "counters_before": _cluster(2, 1, 50), "counters_fast": _cluster(0, 2, 90),
            "counters_after": _cluster(0, 2, 200),
            "shim_before": {2: {"calls": 10, "slowed": 0, "injected_ns": 0, "real_ns": 10, "real_max_ns": 1}},
            "shim_fast": {2: {"calls": 30, "slowed": 18, "injected_ns": 3_600_000_000, "real_ns": 30,
                              "real_max_ns": 2}}}
    records = []
    for i in range(100):                          # s0: paced, one a 0.1 s until 103, then nothing to 106
        t = 100.0 + i * 0.1
        if 103.0 <= t < 106.0:
            continue
        records.append([t, (5 + i % 10) * 1_000_000, "ack", f"s0:{i}", "1", True])
    records.append([103.5, 2_100_000_000, "timeout", "s0:x", None, True])
    records += [[t, 1_000_000, "ack", f"b0:{j}", "1", False] for j, t in enumerate((100.0, 105.0, 112.0))]
    if records_ok:
        records.append([110.2, 3_000_000, "ack", "s0:after", "1", True])
    return step, records


def test_step_row_figures_the_slow_window_and_the_recovery():
    step, records = _step()
    row = metrics.step_row(step, records, ["b0", "s0"])
    assert row["acked_per_s"] == round((70 + 2) / 10)
    assert row["p50_ms"] == 9.0 and row["p99_ms"] == 14.0 and row["max_ms"] == 14.0
    assert row["timeouts"] == 1 and row["closed"] == 0 and row["elections"] == 1
    assert row["longest_gap_s"] == pytest.approx(2.087, abs=0.001)    # s0 102.914 -> b0 105.001
    assert row["worst_client_gap_s"] == pytest.approx(5.0, abs=0.01)    # b0: 105.001 -> 110
    assert row["slow_leader_led_share"] == pytest.approx(7 / 20)
    assert row["leader_at_fast"] == 0
    assert (row["syncs_slowed"], row["syncs"], row["injected_s"]) == (18, 20, 3.6)
    assert row["all_clients_acked_s"] == pytest.approx(2.0, abs=0.01) and row["leader_agreed_s"] == 0.0
    assert row["recovered_s"] == pytest.approx(2.0, abs=0.01) and row["stuck_members"] == [] and row["errors"] == 0
    assert metrics.recovery_violations([row], {"a2": 3.2}) == []
    assert "| a2 | 2 | every sync 200 ms | 18/20 |" in metrics.format_table([row])


def test_recovery_violations_fail_a_step_that_did_not_recover():
    """The negative control of the recovery verdict: each kind of failure is reported."""
    step, records = _step(records_ok=True)
    row = metrics.step_row(step, records, ["b0", "s0"])
    assert metrics.recovery_violations([row], {"a2": 1.5})[0].startswith(
        "step a2 (leader 200 ms/sync): a client waited 2.00 s")
    step, records = _step()
    step["counters_after"] = {**_cluster(0, 2, 200, errors=1), 1: _c(0, 2, 0, commit=80)}
    step["samples"] = [(t, {**c, 1: _c(1, 3, -1)}) if t >= 110 else (t, c) for t, c in step["samples"]]
    records = [r for r in records if not r[3].startswith("b0")] + [[111.0, 1, "closed", "b0:9", None, False]]
    found = metrics.recovery_violations([metrics.step_row(step, records, ["b0", "s0"])], {"a2": 3.2})
    text = "\n".join(found)
    assert "clients b0 never acknowledged" in text
    assert "did not agree on one leader" in text
    assert "members [1] did not reach" in text
    assert "recorded 2 errors" in text and "session closed" in text


def test_led_share_and_leader_in():
    assert metrics.leader_in(_cluster(1, 4)) == 1
    assert metrics.leader_in({0: _c(2, 3, 0), 1: _c(2, 4, 1), 2: None}) == 1     # the highest term's
    assert metrics.leader_in({0: _c(0, 3, -1), 1: None}) is None
    samples = [(float(t), _cluster(2 if t < 3 else 0, 1)) for t in range(10)]
    assert metrics.led_share(samples, 2, 0, 10) == pytest.approx(0.3)
    assert metrics.led_share(samples, None, 0, 10) is None and metrics.led_share(samples, 2, 20, 30) is None


# -- the shim: counts only, no timing -----------------------------------------------------------

@pytest.mark.skipif(shutil.which("gcc") is None or not sys.platform.startswith("linux"), reason="needs gcc, Linux")
def test_shim_slows_the_calls_its_control_line_names_and_counts_them():
    from slowdisk_trial import shim
    with tempfile.TemporaryDirectory() as d:
        lib = shim.build(d)
        control, stats = os.path.join(d, "control"), os.path.join(d, "stats")
        script = ("import os, mmap, sys\n"
                  "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); os.write(fd, b'x' * 4096)\n"
                  "for _ in range(9): os.fdatasync(fd)\n"
                  "os.fsync(fd); m = mmap.mmap(fd, 4096); m.flush(); m.close()\n")
        for line, slowed in (("1 3 0 0\n", 3), ("0 1 0 0\n", 0), ("1 1 0 0\n", 11)):
            with open(control, "w") as f:
                f.write(line)
            if os.path.exists(stats):
                os.unlink(stats)
            subprocess.run([sys.executable, "-c", script, os.path.join(d, "data")], check=True, timeout=60,
                           env={**os.environ, "LD_PRELOAD": lib, "SLOWSYNC_FILE": control, "SLOWSYNC_STATS": stats})
            with open(stats) as f:
                counts = metrics.parse_shim_stats(f.read())
            assert counts["calls"] == 11 and counts["slowed"] == slowed, (line, counts)
            assert counts["injected_ns"] == slowed * 1000
