"""The linearizability checker: hand-made negative controls it must reject, positives it must
accept, and generated histories checked against a brute-force oracle."""
import itertools
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aeronpy.testing.linearizability import (
    CAS, READ, WRITE, HistoryRecorder, Operation, Outcome, check_kv_history,
)

INF = math.inf


def w(client, key, value, start, end):
    return Operation(client, WRITE, (key, value), start, end, None)


def r(client, key, value, start, end):
    return Operation(client, READ, (key,), start, end, value)


def cas(client, key, expected, new, ok, start, end):
    return Operation(client, CAS, (key, expected, new), start, end, ok)


# ----- negative controls: each must be rejected ------------------------------------------

NOT_LINEARIZABLE = {
    "stale read after a later write completed": [
        w(1, "x", 1, 0, 10), w(1, "x", 2, 20, 30), r(2, "x", 1, 40, 50)],
    "read of a value nobody wrote": [
        w(1, "x", 1, 0, 10), r(2, "x", 7, 20, 30)],
    "read before the write was invoked": [
        r(2, "x", 1, 0, 10), w(1, "x", 1, 20, 30)],
    "two cas from the same expected value both succeed": [
        w(1, "x", 0, 0, 10), cas(2, "x", 0, 1, True, 20, 40), cas(3, "x", 0, 2, True, 20, 40)],
    "reads see concurrent writes in both orders": [
        w(1, "x", 1, 0, 100), w(2, "x", 2, 0, 100),
        r(3, "x", 1, 10, 20), r(3, "x", 2, 30, 40), r(3, "x", 1, 50, 60)],
    "failed cas although the value matched": [
        w(1, "x", 5, 0, 10), cas(2, "x", 5, 6, False, 20, 30), r(3, "x", 5, 40, 50),
        w(1, "x", 9, 60, 70), cas(2, "x", 9, 1, False, 80, 90)],
    "timed-out write read before it was invoked": [
        r(1, "x", 3, 0, 10), w(2, "x", 3, 20, INF)],
    "one bad key among good ones": [
        w(1, "a", 1, 0, 10), r(2, "a", 1, 20, 30),
        w(1, "b", 1, 0, 10), w(1, "b", 2, 20, 30), r(2, "b", 1, 40, 50)],
    "value lost: read None after an acknowledged write": [
        w(1, "x", 4, 0, 10), r(2, "x", None, 20, 30)],
}

LINEARIZABLE = {
    "read concurrent with a write may see the old value": [
        w(1, "x", 1, 0, 10), w(1, "x", 2, 20, 50), r(2, "x", 1, 30, 40)],
    "read concurrent with a write may see the new value": [
        w(1, "x", 1, 0, 10), w(1, "x", 2, 20, 50), r(2, "x", 2, 30, 40)],
    "timed-out write that took effect": [
        w(1, "x", 1, 0, INF), r(2, "x", 1, 100, 110)],
    "timed-out write that never took effect": [
        w(1, "x", 1, 0, 10), w(2, "x", 2, 20, INF), r(1, "x", 1, 100, 110)],
    "timed-out read constrains nothing": [
        w(1, "x", 1, 0, 10), r(2, "x", 99, 20, INF)],
    "cas chain": [
        w(1, "x", 0, 0, 10), cas(2, "x", 0, 1, True, 20, 60), cas(3, "x", 0, 2, False, 20, 60),
        cas(3, "x", 1, 3, True, 70, 80), r(1, "x", 3, 90, 100)],
    "timed-out cas that took effect": [
        w(1, "x", 0, 0, 10), cas(2, "x", 0, 1, None, 20, INF), r(3, "x", 1, 50, 60)],
    "missing key reads None": [r(1, "k", None, 0, 5), w(2, "k", 1, 10, 20)],
    "empty history": [],
}


@pytest.mark.parametrize("name", sorted(NOT_LINEARIZABLE))
def test_rejects_non_linearizable_history(name):
    result = check_kv_history(NOT_LINEARIZABLE[name])
    assert result.outcome is Outcome.NOT_LINEARIZABLE, name
    assert not result.ok and result.failed_operations
    assert "not linearizable" in str(result)


@pytest.mark.parametrize("name", sorted(LINEARIZABLE))
def test_accepts_linearizable_history(name):
    result = check_kv_history(LINEARIZABLE[name])
    assert result.outcome is Outcome.LINEARIZABLE, (name, str(result))


def test_failed_key_is_named():
    result = check_kv_history(NOT_LINEARIZABLE["one bad key among good ones"])
    assert result.failed_key == "b"


def test_budget_gives_unknown_instead_of_hanging():
    # Many fully concurrent writes of distinct values, then two reads that disagree after all
    # writes completed: the search must exhaust every order, which a tiny budget cannot do.
    ops = [w(i, "x", i, 0, 1000) for i in range(12)] + [r(99, "x", 0, 2000, 2001),
                                                        r(99, "x", 1, 2002, 2003)]
    assert check_kv_history(ops, max_steps=50).outcome is Outcome.UNKNOWN
    # with memoisation the full search is small (2^12 sets x 13 states at most)
    assert check_kv_history(ops).outcome is Outcome.NOT_LINEARIZABLE


def test_a_violation_deep_in_a_long_history_is_found():
    # Unique values, so "read the first value after it was surely overwritten" is a violation
    # that the quick unwritten-value pre-check cannot see: only the search can.
    history = generate_history(random.Random(11), n_ops=2000, keys=2, clients=8, values=10**9)
    key = history[0].key
    writes = sorted((o for o in history if o.key == key and o.op == WRITE), key=lambda o: o.invoke_ns)
    first = writes[0]
    values = [o.args[1] for o in history if o.op == WRITE] + [o.args[2] for o in history if o.op == CAS]
    assert values.count(first.args[1]) == 1
    overwriter = next(o for o in writes if o.invoke_ns > first.complete_ns)
    reads = [i for i, o in enumerate(history) if o.key == key and o.op == READ
             and o.invoke_ns > overwriter.complete_ns + 1000]
    i = reads[len(reads) // 2]
    op = history[i]
    history[i] = Operation(op.client_id, READ, op.args, op.invoke_ns, op.complete_ns, first.args[1])
    result = check_kv_history(history, timeout_s=30)
    assert result.outcome is Outcome.NOT_LINEARIZABLE and result.failed_key == key


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="unknown operation"):
        check_kv_history([Operation(1, "delete", ("x",), 0, 1)])
    with pytest.raises(ValueError, match="key first"):
        check_kv_history([Operation(1, WRITE, ("x",), 0, 1)])
    with pytest.raises(ValueError, match="completes before"):
        check_kv_history([w(1, "x", 1, 10, 5)])


def test_recorder_builds_a_history_with_timeouts():
    rec = HistoryRecorder()
    t1 = rec.invoke(1, WRITE, ("k", 1), now_ns=0)
    t2 = rec.invoke(2, READ, ("k",), now_ns=1)
    rec.complete(t1, None, now_ns=5)
    rec.complete(t2, 1, now_ns=6)
    t3 = rec.invoke(1, WRITE, ("k", 2), now_ns=10)
    rec.timeout(t3)
    rec.invoke(3, CAS, ("k", 2, 3), now_ns=11)           # still pending: indeterminate
    history = rec.history()
    assert len(history) == 4 and sum(op.indeterminate for op in history) == 2
    assert check_kv_history(history).ok


def test_large_history_is_checked_quickly():
    # 3000 operations on 10 keys by 8 clients with overlapping intervals: memoisation and the
    # candidate window keep this to a few search steps per operation.
    history = generate_history(random.Random(5), n_ops=3000, keys=10, clients=8, values=50)
    result = check_kv_history(history)
    assert result.ok, str(result)
    assert result.steps < 100 * len(history)


# ----- generated histories ----------------------------------------------------------------

def generate_history(rng, n_ops, keys, clients, values, timeout_rate=0.0):
    """A concurrent history that is linearizable by construction: each client runs its ops one
    after another; every op takes effect at a random instant inside its interval, and the
    results come from running the model in the order of those instants."""
    plans = []
    clock = [0] * clients
    for _ in range(n_ops):
        client = rng.randrange(clients)
        start = clock[client] + rng.randint(0, 5)
        end = start + rng.randint(1, 30)
        point = rng.uniform(start, end)
        clock[client] = end
        key = f"k{rng.randrange(keys)}"
        kind = rng.choice((READ, WRITE, CAS))
        if kind == READ:
            args = (key,)
        elif kind == WRITE:
            args = (key, rng.randrange(values))
        else:
            args = (key, rng.randrange(values), rng.randrange(values))
        plans.append((point, client, kind, args, start, end))
    store = {}
    history = []
    for point, client, kind, args, start, end in sorted(plans):
        key = args[0]
        if kind == READ:
            result = store.get(key)
        elif kind == WRITE:
            store[key] = args[1]
            result = None
        else:
            result = store.get(key) == args[1]
            if result:
                store[key] = args[2]
        if rng.random() < timeout_rate:
            end, result = INF, None
        history.append(Operation(client, kind, args, start, end, result))
    rng.shuffle(history)
    return history


def brute_force_linearizable(history):
    """Oracle for tiny histories: try every order of every subset of indeterminate ops."""
    history = [op for op in history if not (op.op == READ and op.indeterminate)]
    by_key = {}
    for op in history:
        by_key.setdefault(op.key, []).append(op)
    for ops in by_key.values():
        definite = [op for op in ops if not op.indeterminate]
        maybe = [op for op in ops if op.indeterminate]
        found = False
        for size in range(len(maybe) + 1):
            for chosen in itertools.combinations(maybe, size):
                for order in itertools.permutations(definite + list(chosen)):
                    if _legal(order):
                        found = True
                        break
                if found:
                    break
            if found:
                break
        if not found:
            return False
    return True


def _legal(order):
    for i, a in enumerate(order):           # real-time order: no later op completes first
        for b in order[i + 1:]:
            if b.complete_ns < a.invoke_ns:
                return False
    value = None
    for op in order:
        if op.op == READ:
            if op.result != value:
                return False
        elif op.op == WRITE:
            value = op.args[1]
        else:
            swapped = value == op.args[1]
            if not op.indeterminate and op.result != swapped:
                return False
            if swapped:
                value = op.args[2]
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_ops=st.integers(1, 60), keys=st.integers(1, 4),
       clients=st.integers(1, 6), timeout_rate=st.sampled_from([0.0, 0.1, 0.3]))
def test_histories_from_a_sequential_execution_are_accepted(seed, n_ops, keys, clients, timeout_rate):
    history = generate_history(random.Random(seed), n_ops, keys, clients, values=4,
                               timeout_rate=timeout_rate)
    result = check_kv_history(history)
    assert result.outcome is Outcome.LINEARIZABLE, str(result)


def mutate(rng, history):
    """Change one observed result or one interval: the history may or may not stay linearizable."""
    history = list(history)
    i = rng.randrange(len(history))
    op = history[i]
    choice = rng.randrange(3)
    if choice == 0 and op.op == READ and not op.indeterminate:
        op = Operation(op.client_id, op.op, op.args, op.invoke_ns, op.complete_ns,
                       rng.choice([None, 0, 1, 2, 3]))
    elif choice == 1 and op.op == CAS and not op.indeterminate:
        op = Operation(op.client_id, op.op, op.args, op.invoke_ns, op.complete_ns, not op.result)
    else:                                   # move the op later in time, keeping its result
        shift = rng.randint(10, 80)
        end = op.complete_ns + shift
        op = Operation(op.client_id, op.op, op.args, op.invoke_ns + shift, end, op.result)
    history[i] = op
    return history


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_ops=st.integers(2, 7), timeout_rate=st.sampled_from([0.0, 0.25]))
def test_mutated_histories_agree_with_brute_force(seed, n_ops, timeout_rate):
    rng = random.Random(seed)
    history = mutate(rng, generate_history(rng, n_ops, keys=1, clients=3, values=3,
                                           timeout_rate=timeout_rate))
    expected = brute_force_linearizable(history)
    got = check_kv_history(history).outcome
    assert got is (Outcome.LINEARIZABLE if expected else Outcome.NOT_LINEARIZABLE), history


def test_mutations_do_produce_rejections():
    """Guard against a vacuous property: the mutated stream must contain real violations."""
    rng = random.Random(1)
    rejected = 0
    for _ in range(200):
        history = mutate(rng, generate_history(rng, 6, keys=1, clients=3, values=3))
        rejected += not brute_force_linearizable(history)
    assert rejected >= 20
