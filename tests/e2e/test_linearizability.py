"""Linearizability of a KeyValueService on a real 3-process cluster: concurrent clients (one
thread and one session each) read, write and compare-and-set a few keys while the leader is
killed once and restarted; the recorded history (timeouts as indeterminate) must check out,
and the same pipeline must reject the history once it is deliberately corrupted."""
from __future__ import annotations

import dataclasses
import json
import random
import signal
import threading
import time

import pytest

from aeronpy.errors import AeronpyError, ClusterClosedError, ClusterTimeoutError, NotConnectedError
from aeronpy.testing.linearizability import (CAS, READ, WRITE, HistoryRecorder, Outcome, check_kv_history,
                                             complete_kv_request, random_kv_request)

from e2e.conftest import E2ECluster

pytestmark = pytest.mark.process

CLIENTS = 4
KEYS = ("k0", "k1", "k2", "k3")
OPS_PER_CLIENT = 150
RUN_BOUND_S = 40.0


def _client_loop(cluster: E2ECluster, client_id: int, recorder: HistoryRecorder, deadline: float,
                 errors: list) -> None:
    rng = random.Random(client_id)
    seen: dict = {}
    client = None
    try:
        client = cluster.connect()
        for i in range(OPS_PER_CLIENT):
            if time.monotonic() >= deadline:
                return
            key = rng.choice(KEYS)
            value = f"c{client_id}-{i}"             # every written value is unique
            kind, args, request = random_kv_request(rng, key, value, seen)
            token = recorder.invoke(client_id, kind, args)
            try:
                reply = json.loads(client.request(json.dumps(request).encode(), timeout_s=1.0))
            except ClusterTimeoutError:
                recorder.timeout(token)
                continue
            except (NotConnectedError, ClusterClosedError):
                recorder.timeout(token)
                raise
            complete_kv_request(recorder, token, kind, key, value, reply, seen)
    except AeronpyError as exc:
        errors.append(exc)
    finally:
        if client is not None:
            client.close()


@pytest.fixture(scope="module")
def kv_history():
    """Run the workload once (leader killed and restarted mid-run); the recorded history."""
    cluster = E2ECluster(["aeronpy.testing.services:KeyValueService"])
    try:
        cluster.start_and_wait()
        recorder, errors = HistoryRecorder(), []
        deadline = time.monotonic() + RUN_BOUND_S
        threads = [threading.Thread(target=_client_loop, args=(cluster, i, recorder, deadline, errors),
                                    daemon=True) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        assert cluster.wait_for(lambda: len(recorder.history()) >= CLIENTS * OPS_PER_CLIENT // 3, 20.0)
        leader = cluster.leader()
        cluster.kill(leader, signal.SIGKILL)
        assert cluster.leader(15.0, exclude=[leader]) is not None, cluster.logs()
        cluster.start_member(leader)
        for t in threads:
            t.join(RUN_BOUND_S + 10.0)
        assert not errors, f"{errors}\n{cluster.logs()}"
        history = recorder.history()
        assert len(history) == CLIENTS * OPS_PER_CLIENT
        yield history
    finally:
        cluster.close()


def test_history_with_a_leader_kill_is_linearizable(kv_history):
    completed = [op for op in kv_history if not op.indeterminate]
    assert len(completed) >= len(kv_history) // 2      # the run did real work
    assert any(op.op == CAS and op.result is True for op in completed)
    result = check_kv_history(kv_history, timeout_s=60.0)
    assert result.outcome is Outcome.LINEARIZABLE, str(result)


def _completed_writes(history, key):
    return [op for op in history if op.op == WRITE and op.key == key and not op.indeterminate]


def test_checker_rejects_the_history_with_a_read_after_overwrite_appended(kv_history):
    # a write of X then a read returning an older, overwritten value (unique values, written by
    # a write that completed long before): no linearization exists
    end = max(op.complete_ns for op in kv_history if not op.indeterminate)
    key = next(k for k in KEYS if _completed_writes(kv_history, k))
    stale = _completed_writes(kv_history, key)[0].args[1]
    Op = type(kv_history[0])
    corrupted = list(kv_history) + [Op(99, WRITE, (key, "fresh"), end + 10, end + 20),
                                    Op(99, READ, (key,), end + 30, end + 40, stale)]
    result = check_kv_history(corrupted, timeout_s=60.0)
    assert result.outcome is Outcome.NOT_LINEARIZABLE and result.failed_key == key, str(result)


def test_checker_rejects_the_history_with_a_stale_read_inside_it(kv_history):
    # find W1 -> W2 -> R in real time on one key (completed writes, completed read) and make R
    # return W1's value: W1's unique value was overwritten by W2 before R began
    for read in sorted((op for op in kv_history if op.op == READ and not op.indeterminate),
                       key=lambda op: op.invoke_ns):
        writes = [w for w in _completed_writes(kv_history, read.key) if w.complete_ns < read.invoke_ns]
        for w2 in writes:
            older = [w1 for w1 in writes if w1.complete_ns < w2.invoke_ns]
            if older and read.result != older[0].args[1]:
                corrupted = [dataclasses.replace(op, result=older[0].args[1]) if op is read else op
                             for op in kv_history]
                result = check_kv_history(corrupted, timeout_s=60.0)
                assert result.outcome is Outcome.NOT_LINEARIZABLE, str(result)
                return
    pytest.fail("the history has no write -> write -> read chain on any key to corrupt")
