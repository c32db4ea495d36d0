"""The verdict of bench/loss_trial (exactly-once and agreement over what the clients saw and the
members applied) and its per-phase table, on hand-made records: no cluster, no iptables."""
import pytest
from benchscript import load

checker = load("loss_trial/checker")
ACK, TIMEOUT = checker.ACKED, checker.TIMED_OUT


def _applied(*per_member):
    return dict(enumerate(per_member))


def _verdict(requests, applied):
    return checker.check_exactly_once(requests, applied, range(3)) + checker.check_agreement(applied)


def test_exactly_once_and_agreement_hold():
    requests = [("s0:0", ACK, "1"), ("s0:1", ACK, "1"), ("s0:2", TIMEOUT, None), ("s0:3", TIMEOUT, None)]
    # a timed-out request may be applied once (s0:2) or not at all (s0:3)
    counts = {"s0:0": 1, "s0:1": 1, "s0:2": 1}
    assert _verdict(requests, _applied(dict(counts), dict(counts), dict(counts))) == []


def test_a_request_applied_twice_is_a_violation():
    requests = [("s0:0", ACK, "1"), ("s0:1", ACK, "2")]
    twice = {"s0:0": 1, "s0:1": 2}
    violations = _verdict(requests, _applied(dict(twice), dict(twice), dict(twice)))
    assert "member 0: s0:1 applied 2 times" in violations
    assert "acknowledged s0:1 answered '2', not '1' (its count of applications)" in violations
    assert not any("disagree" in v for v in violations)   # the same on every member: agreement holds


def test_a_reply_counted_twice_alone_is_a_violation():
    requests = [("s0:0", ACK, "2")]
    once = {"s0:0": 1}
    assert _verdict(requests, _applied(dict(once), dict(once), dict(once))) == [
        "acknowledged s0:0 answered '2', not '1' (its count of applications)"]


def test_an_acknowledged_request_missing_on_a_member_is_a_violation():
    requests = [("s0:0", ACK, "1"), ("b0:0", ACK, "1")]
    full = {"s0:0": 1, "b0:0": 1}
    violations = _verdict(requests, _applied(dict(full), dict(full), {"s0:0": 1}))
    assert "member 2: acknowledged b0:0 never applied" in violations
    assert "members 0 and 2 disagree on 1 requests (times applied on each), e.g. b0:0 (1 / 0)" in violations


def test_members_that_disagree_on_an_unacknowledged_request_fail_agreement_only():
    requests = [("a0.1:0", TIMEOUT, None)]
    applied = _applied({"a0.1:0": 1}, {}, {})
    assert checker.check_exactly_once(requests, applied, range(3)) == []
    assert checker.check_agreement(applied) == [
        "members 0 and 1 disagree on 1 requests (times applied on each), e.g. a0.1:0 (1 / 0)",
        "members 0 and 2 disagree on 1 requests (times applied on each), e.g. a0.1:0 (1 / 0)"]


def test_a_member_without_a_record_and_an_unsent_payload_are_violations():
    requests = [("s0:0", ACK, "1")]
    violations = _verdict(requests, _applied({"s0:0": 1, "xx:9": 1}, {"s0:0": 1, "xx:9": 1}, None))
    assert "member 2: no record of what it applied" in violations
    assert "member 0: applied xx:9, which no client sent" in violations


def test_the_negative_control_service_makes_the_verdict_fail(monkeypatch):
    service_module = load("loss_trial/service")

    class Session:
        def __init__(self):
            self.replies = []

        def offer(self, payload):
            self.replies.append(bytes(payload).decode())
            return 1

    def run(double_apply_at):
        monkeypatch.setenv(service_module.DOUBLE_APPLY_ENV, str(double_apply_at))
        service, session = service_module.ApplyCountingService(), Session()
        requests = []
        for seq in range(5):
            payload = f"s0:{seq}"
            service.on_session_message(session, 0, memoryview(payload.encode()))
            requests.append((payload, ACK, session.replies[-1]))
        applied = _applied(dict(service.applied), dict(service.applied), dict(service.applied))
        return _verdict(requests, applied)

    assert run(0) == []
    violations = run(3)
    assert "member 0: s0:2 applied 2 times" in violations
    assert "acknowledged s0:2 answered '2', not '1' (its count of applications)" in violations


def test_counter_delta_counts_a_restarted_member_from_zero():
    assert checker.counter_delta({"naks_sent": 10}, {"naks_sent": 25}, "naks_sent") == 15
    assert checker.counter_delta({"naks_sent": 10}, {"naks_sent": 4}, "naks_sent") == 4     # restarted
    assert checker.counter_delta(None, {"naks_sent": 4}, "naks_sent") == 4                  # was down
    assert checker.counter_delta({"naks_sent": 10}, None, "naks_sent") == 0                 # is down


def test_phase_row_counts_only_the_requests_sent_during_the_phase():
    ms = 1_000_000
    records = [  # [sent_at_s, latency_ns, outcome, payload, reply, paced]
        [9.9, 50 * ms, ACK, "s0:0", "1", True],           # before the phase
        [10.0, 1 * ms, ACK, "s0:1", "1", True],
        [10.5, 3 * ms, ACK, "s1:0", "1", True],
        [11.0, 90 * ms, ACK, "b0:0", "1", False],         # closed loop: not in the latencies
        [11.2, 80 * ms, ACK, "b0:1", "1", False],
        [11.5, 2000 * ms, TIMEOUT, "s0:2", None, True],
        [12.0, 1 * ms, ACK, "s0:3", "1", True],           # t1 is exclusive
    ]
    counters = lambda term, naks: {"leadership_term": term, "naks_sent": naks, "retransmits": naks}  # noqa: E731
    phase = {"index": 1, "loss_pct": 5.0, "kill": None, "t0": 10.0, "t1": 12.0,
             "counters_before": {0: counters(1, 5), 1: counters(1, 0), 2: counters(1, 7)},
             "counters_after": {0: counters(2, 9), 1: None, 2: counters(2, 3)}}
    row = checker.phase_row(phase, records)
    assert row["acked_per_s"] == 2 and row["closed_loop_acked_per_s"] == 1     # 4 and 2 in 2 s
    assert row["timeouts"] == 1 and row["closed"] == 0
    assert row["p50_ms"] == pytest.approx(1.0, rel=0.01)
    assert row["max_ms"] == pytest.approx(3.0, rel=0.01)
    assert row["naks_sent"] == (9 - 5) + 0 + 3            # member 2 restarted: from 0
    assert row["elections"] == 1
    assert "| 1 | 5 |  | 2 | 1 | 1.00 | 3.00 | 3 | 1 | 0 | 7 | 7 | 1 |" in checker.format_table([row])
