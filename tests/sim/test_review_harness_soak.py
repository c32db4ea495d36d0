"""Review of the soak's end checks (aeronpy.testing.soak.evaluate): a run in which the clients
got nothing through (every connect failed, every request timed out) must not pass, since its
exactly-once and linearizability checks then hold vacuously; ``python -m aeronpy.testing.soak``
reported PASSED for it. (The pytest soak asserted work was done itself; the CLI did not.)"""
from __future__ import annotations

import math

from aeronpy.testing.linearizability import READ, WRITE, Operation
from aeronpy.testing.soak import (COUNTER_SERVICE_ID, FINAL_READER, KEYS, KV_SERVICE_ID, CounterOp,
                                  SoakOutcome, evaluate)


def _idle_run(counter_ops=(), kv_ops=()) -> SoakOutcome:
    """Everything agrees and exits cleanly; the final reads see nothing written."""
    final_reads = [Operation(FINAL_READER, READ, (k,), 10_000 + i, 10_001 + i, None)
                   for i, k in enumerate(KEYS)]
    records = {m: {COUNTER_SERVICE_ID: {"member_id": m, "service_id": 0, "commit_index": 5,
                                        "state_hash": "0:0", "total": 0, "applied": 0},
                   KV_SERVICE_ID: {"member_id": m, "service_id": 1, "commit_index": 5,
                                   "state_hash": "h", "data": {}}}
               for m in range(3)}
    return SoakOutcome(seed=1, seconds=60.0, counter_ops=list(counter_ops),
                       kv_history=list(kv_ops) + final_reads, member_records=records,
                       final_exit_codes={0: 0, 1: 0, 2: 0}, member_errors={0: [], 1: [], 2: []},
                       log_errors={0: [], 1: [], 2: []})


def test_a_run_with_no_acknowledged_increment_fails():
    # three increments sent, none answered (indeterminate, none applied)
    outcome = _idle_run(counter_ops=[CounterOp(0, 1, i + 1, i) for i in range(3)],
                        kv_ops=[Operation(100, WRITE, ("k0", "c100-1"), 0, 10),
                                Operation(100, WRITE, ("k0", None), 20, 30)])
    failures = evaluate(outcome)
    assert any(f.startswith("exactly-once") and "acknowledged" in f for f in failures), failures


def test_a_run_with_no_completed_key_value_operation_fails():
    ops = [CounterOp(0, 1, 1, 0, 5, [1])]
    outcome = _idle_run(counter_ops=ops,
                        kv_ops=[Operation(100, WRITE, ("k0", "c100-1"), 0, math.inf)])
    for m in range(3):
        outcome.member_records[m][COUNTER_SERVICE_ID].update(total=1, applied=1, state_hash="1:1")
    failures = evaluate(outcome)
    assert any(f.startswith("linearizability") and "clients" in f for f in failures), failures


def test_a_run_that_did_work_still_passes():
    ops = [CounterOp(0, 1, 1, 0, 5, [1])]
    outcome = _idle_run(counter_ops=ops, kv_ops=[Operation(100, WRITE, ("k0", None), 0, 10)])
    for m in range(3):
        outcome.member_records[m][COUNTER_SERVICE_ID].update(total=1, applied=1, state_hash="1:1")
    assert evaluate(outcome) == []
