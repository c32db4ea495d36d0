"""The linearizability checker: hand-made negative controls it must reject, positives it must
accept, and generated histories checked against a brute-force oracle."""
import dataclasses
import itertools
import math
import operator
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aeronpy.testing.linearizability import (
    CAS, NOT_REPORTED, READ, WRITE, HistoryRecorder, Operation, Outcome, check_kv_history,
    complete_kv_request, random_kv_request, same_value,
)

INF = math.inf


def w(client, key, value, start, end):
    return Operation(client, WRITE, (key, value), start, end, None)


def r(client, key, value, start, end):
    return Operation(client, READ, (key,), start, end, value)


def cas(client, key, expected, new, ok, start, end, current=NOT_REPORTED):
    return Operation(client, CAS, (key, expected, new), start, end, ok, current)


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
    # values of another type that Python's == calls equal (accepted before values were
    # compared by type too)
    "read True where 1 was written": [
        w(1, "x", 1, 0, 10), r(2, "x", True, 20, 30)],
    "read 1 where True was written": [
        w(1, "x", True, 0, 10), r(2, "x", 1, 20, 30)],
    "read 0 where False was written": [
        w(1, "x", False, 0, 10), r(2, "x", 0, 20, 30)],
    "read 1.0 where 1 was written": [
        w(1, "x", 1, 0, 10), r(2, "x", 1.0, 20, 30)],
    "read a tuple holding True where one holding 1 was written": [
        w(1, "x", (1, b"a"), 0, 10), r(2, "x", (True, b"a"), 20, 30)],
    "read a list where a tuple was written": [
        w(1, "x", (1, 2), 0, 10), r(2, "x", [1, 2], 20, 30)],
    "cas expecting True succeeds on 1": [
        w(1, "x", 1, 0, 10), cas(2, "x", True, 5, True, 20, 30)],
    "cas expecting 1.0 succeeds on 1, then 1 read": [
        w(1, "x", 1, 0, 10), cas(2, "x", 1.0, 1, True, 20, 30), r(3, "x", 1, 40, 50)],
    "cas expecting 0 succeeds on False": [
        w(1, "x", False, 0, 10), cas(2, "x", 0, 3, True, 20, 30), r(3, "x", 3, 40, 50)],
    "timed-out writes of True and 1: each can take effect once": [
        w(1, "x", 0, 0, 10), w(2, "x", True, 20, INF), w(3, "x", 1, 20, INF),
        r(4, "x", 1, 30, 40), r(4, "x", True, 50, 60), r(4, "x", 1, 70, 80)],
    # a cas that reports the key's value (the KeyValueService does): a failed one is a read
    "failed cas reports a value overwritten before it began": [
        w(1, "x", "a", 0, 10), w(1, "x", "b", 20, 30), cas(2, "x", "c", "z", False, 40, 50, "a")],
    "failed cas reports a value nobody wrote": [
        w(1, "x", "a", 0, 10), cas(2, "x", "c", "z", False, 20, 30, "q")],
    "failed cas reports the value it expected": [
        w(1, "x", "a", 0, 10), cas(2, "x", "a", "z", False, 20, 30, "a")],
    "successful cas reports a value other than the one it expected": [
        w(1, "x", "a", 0, 10), w(1, "x", "b", 20, 30), cas(2, "x", "b", "z", True, 40, 50, "a")],
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
    "equal values of one type are equal": [
        w(1, "b", b"\x00a", 0, 10), r(2, "b", b"\x00a", 20, 30),
        w(1, "s", "a", 0, 10), r(2, "s", "a", 20, 30),
        w(1, "i", 10**30, 0, 10), r(2, "i", 10**30, 20, 30),
        w(1, "t", (1, "a", b"b", (None,)), 0, 10), r(2, "t", (1, "a", b"b", (None,)), 20, 30),
        w(1, "f", float("nan"), 0, 10), r(2, "f", float("nan"), 20, 30),
        w(1, "d", {"a": [1, True]}, 0, 10), r(2, "d", {"a": [1, True]}, 20, 30),
        w(1, "bool", True, 0, 10), cas(2, "bool", True, False, True, 20, 30), r(3, "bool", False, 40, 50)],
    "failed cas reports the value the key held": [
        w(1, "x", "a", 0, 10), w(1, "x", "b", 20, 30), cas(2, "x", "c", "z", False, 40, 50, "b")],
    "failed cas reports a value a concurrent write stored": [
        w(1, "x", "a", 0, 10), w(3, "x", "b", 20, 60), cas(2, "x", "c", "z", False, 30, 50, "b"),
        r(1, "x", "b", 70, 80)],
    "successful cas reports the value it expected": [
        w(1, "x", "a", 0, 10), cas(2, "x", "a", "z", True, 20, 30, "a"), r(1, "x", "z", 40, 50)],
    "failed cas reports that the key is missing": [
        cas(2, "x", "a", "z", False, 0, 10, None), w(1, "x", "a", 20, 30)],
    "cas expecting 0 fails on False, cas expecting False fails on 0": [
        w(1, "x", False, 0, 10), cas(2, "x", 0, 3, False, 20, 30), r(3, "x", False, 40, 50),
        w(1, "x", 0, 60, 70), cas(2, "x", False, 3, False, 80, 90), r(3, "x", 0, 100, 110)],
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
    with pytest.raises(ValueError, match="only a cas"):
        check_kv_history([Operation(1, READ, ("x",), 0, 1, None, None)])


@pytest.mark.parametrize("result", [1, 0, 1.0, "True", None])
def test_a_completed_cas_must_return_a_bool(result):
    # the old check was ``result in (True, False)``: 1, 0 and 1.0 passed and then compared
    # equal to True/False in the model
    with pytest.raises(ValueError, match="True/False result"):
        check_kv_history([w(1, "x", 0, 0, 10), cas(2, "x", 0, 1, result, 20, 30)])
    assert check_kv_history([w(1, "x", 0, 0, 10), cas(2, "x", 0, 1, None, 20, INF)]).ok


def test_same_value_is_strict_about_type_only():
    for a, b in [(1, True), (0, False), (1, 1.0), (b"a", "a"), ((1,), [1]), ((1,), (True,)),
                 ({"a": 1}, {"a": True}), (None, 0), (None, False), ({1}, {True}), (1, 1.0 + 0j)]:
        assert not same_value(a, b) and not same_value(b, a), (a, b)
    for a in [None, True, 1, 10**40, 1.5, float("nan"), "s", b"b", (1, ("a", b"b")), [1, [2]],
              {"k": [1, {"j": None}]}, {1, 2}, frozenset({"a"}), {"x": bytearray(b"1")}]:
        assert same_value(a, a) and same_value(a, type(a)(a) if isinstance(a, (list, dict, set)) else a)
    assert same_value({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert same_value({"a": bytearray(b"1"), "b": 2}, {"b": 2, "a": bytearray(b"1")})
    assert not same_value({"a": bytearray(b"1")}, {"a": bytearray(b"2")})


def _kv_service_reply(service, request):
    """The JSON reply of aeronpy.testing.services.KeyValueService to ``request``."""
    import json
    replies = []

    class _Session:
        def offer(self, payload):
            replies.append(json.loads(payload))
    service.on_session_message(_Session(), 0, json.dumps(request).encode())
    return replies[0]


def test_complete_kv_request_records_what_a_cas_saw():
    """The KeyValueService replies the key's value to a cas; a failed one must be recorded
    with it (it used to be recorded as a bare False, so a stale value passed unchecked)."""
    from aeronpy.testing.services import KeyValueService
    service, recorder, seen = KeyValueService(), HistoryRecorder(), {}
    rng = random.Random(3)
    for i in range(300):                 # one operation at a time: real-time order is total
        key = f"k{rng.randrange(3)}"
        if rng.random() < 0.3:           # another writer: client 1's next cas on the key fails
            token = recorder.invoke(2, WRITE, (key, f"o{i}"))
            _kv_service_reply(service, {"op": "write", "key": key, "value": f"o{i}"})
            recorder.complete(token, None)
            continue
        kind, args, request = random_kv_request(rng, key, f"v{i}", seen)
        token = recorder.invoke(1, kind, args)
        complete_kv_request(recorder, token, kind, key, f"v{i}", _kv_service_reply(service, request), seen)
    history = recorder.history()
    failed = [op for op in history if op.op == CAS and op.result is False]
    assert len(failed) >= 10 and all(op.current is not NOT_REPORTED for op in failed)
    assert check_kv_history(history).ok
    # the same history with one failed cas reporting a value the key held earlier: rejected
    for victim in failed:
        earlier = [op.args[1] for op in history if op.op == WRITE and op.key == victim.key
                   and op.complete_ns < victim.invoke_ns and op.args[1] not in (victim.current, victim.args[1])]
        if earlier:
            break
    else:
        pytest.fail("no failed cas to corrupt")
    stale = [dataclasses.replace(op, current=earlier[-1]) if op is victim else op for op in history]
    assert check_kv_history(stale).outcome is Outcome.NOT_LINEARIZABLE


def test_complete_kv_request_refuses_an_error_reply():
    recorder = HistoryRecorder()
    token = recorder.invoke(1, CAS, ("k", None, "v"))
    with pytest.raises(ValueError, match="refused"):
        complete_kv_request(recorder, token, CAS, "k", "v", {"ok": False, "error": "malformed"}, {})
    assert recorder.history()[0].indeterminate         # left as unknown, not as a failed cas


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

def strict_eq(a, b):
    """The oracle's equality, written apart from the checker's: same type and equal, tuples
    element by element."""
    if type(a) is not type(b):
        return False
    if type(a) is tuple:
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b))
    return a == b


# values Python's == mixes up: the typed cross-check draws from these
TYPED_POOL = (0, 1, True, False, 1.0, 0.0, b"a", "a", (1,), (True,), None)


def generate_history(rng, n_ops, keys, clients, values, timeout_rate=0.0, pool=None, report_current=False):
    """A concurrent history that is linearizable by construction: each client runs its ops one
    after another; every op takes effect at a random instant inside its interval, and the
    results come from running the model in the order of those instants. Written values are
    ``range(values)``, or drawn from ``pool``; ``report_current``: half the completed cas
    operations report the value the key held (as the KeyValueService does)."""
    def value():
        return rng.choice(pool) if pool else rng.randrange(values)
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
            args = (key, value())
        else:
            args = (key, value(), value())
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
        current = NOT_REPORTED
        if kind == CAS:
            if report_current and rng.random() < 0.5:
                current = store.get(key)
            result = strict_eq(store.get(key), args[1])
            if result:
                store[key] = args[2]
        if rng.random() < timeout_rate:
            end, result, current = INF, None, NOT_REPORTED
        history.append(Operation(client, kind, args, start, end, result, current))
    rng.shuffle(history)
    return history


def brute_force_linearizable(history, eq=strict_eq):
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
                    if _legal(order, eq):
                        found = True
                        break
                if found:
                    break
            if found:
                break
        if not found:
            return False
    return True


def _legal(order, eq):
    for i, a in enumerate(order):           # real-time order: no later op completes first
        for b in order[i + 1:]:
            if b.complete_ns < a.invoke_ns:
                return False
    value = None
    for op in order:
        if op.op == READ:
            if not eq(op.result, value):
                return False
        elif op.op == WRITE:
            value = op.args[1]
        else:
            swapped = eq(value, op.args[1])
            if not op.indeterminate and op.result is not swapped:
                return False
            if not op.indeterminate and op.current is not NOT_REPORTED and not eq(op.current, value):
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


def mutate(rng, history, read_values=(None, 0, 1, 2, 3)):
    """Change one observed result or one interval: the history may or may not stay linearizable."""
    history = list(history)
    i = rng.randrange(len(history))
    op = history[i]
    choice = rng.randrange(3)
    if choice == 0 and op.op == READ and not op.indeterminate:
        op = Operation(op.client_id, op.op, op.args, op.invoke_ns, op.complete_ns,
                       rng.choice(read_values))
    elif choice == 1 and op.op == CAS and not op.indeterminate:
        if op.current is not NOT_REPORTED and rng.random() < 0.5:
            op = dataclasses.replace(op, current=rng.choice(read_values))
        else:
            op = dataclasses.replace(op, result=not op.result)
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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_ops=st.integers(2, 7), timeout_rate=st.sampled_from([0.0, 0.25]))
def test_typed_histories_agree_with_brute_force(seed, n_ops, timeout_rate):
    """As above with values that Python's == confuses (0, False, 0.0; b"a", "a"; (1,), (True,))
    and cas operations that report the key's value: the checker must tell the values apart
    exactly as the oracle's own strict equality does."""
    rng = random.Random(seed)
    history = mutate(rng, generate_history(rng, n_ops, keys=1, clients=3, values=0, pool=TYPED_POOL,
                                           timeout_rate=timeout_rate, report_current=True),
                     read_values=TYPED_POOL)
    expected = brute_force_linearizable(history)
    got = check_kv_history(history).outcome
    assert got is (Outcome.LINEARIZABLE if expected else Outcome.NOT_LINEARIZABLE), history


def test_typed_mutations_do_produce_rejections_that_plain_equality_misses():
    """Guard against a vacuous typed property: some mutated histories are violations only
    because the values differ in type (a checker using == would pass them)."""
    rng = random.Random(2)
    only_by_type = 0
    for _ in range(400):
        history = mutate(rng, generate_history(rng, 6, keys=1, clients=3, values=0, pool=TYPED_POOL,
                                               report_current=True), read_values=TYPED_POOL)
        if not brute_force_linearizable(history) and brute_force_linearizable(history, eq=operator.eq):
            only_by_type += 1
            assert check_kv_history(history).outcome is Outcome.NOT_LINEARIZABLE, history
    assert only_by_type >= 10


def test_mutations_do_produce_rejections():
    """Guard against a vacuous property: the mutated stream must contain real violations."""
    rng = random.Random(1)
    rejected = 0
    for _ in range(200):
        history = mutate(rng, generate_history(rng, 6, keys=1, clients=3, values=3))
        rejected += not brute_force_linearizable(history)
    assert rejected >= 20
