"""Review of the linearizability checker and of seed replay (no defect found here: these
guard what was checked). Hand-made histories with timed-out operations, and a brute-force
cross-check on histories whose timed-out operations may or may not have taken effect (the
apps tests' generator only makes timed-out operations that did); a seed's trace must not
depend on the process's hash randomisation."""
from __future__ import annotations

import itertools
import math
import os
import random
import subprocess
import sys

import pytest

from aeronpy.testing.linearizability import CAS, READ, WRITE, Operation, Outcome, check_kv_history

INF = math.inf


def w(c, k, v, s, e):
    return Operation(c, WRITE, (k, v), s, e)


def r(c, k, v, s, e):
    return Operation(c, READ, (k,), s, e, v)


def cas(c, k, x, y, ok, s, e):
    return Operation(c, CAS, (k, x, y), s, e, ok)


HISTORIES = {
    "timed-out write seen, then the older value again": (
        [w(1, "x", 1, 0, 10), w(2, "x", 2, 20, INF), r(3, "x", 2, 30, 40), r(3, "x", 1, 50, 60)], False),
    "as above, but the older value rewritten in between": (
        [w(1, "x", 1, 0, 10), w(2, "x", 2, 20, INF), r(3, "x", 2, 30, 40), w(1, "x", 1, 35, 45),
         r(3, "x", 1, 50, 60)], True),
    "two cas from one value succeed, one timed out": (
        [w(1, "x", 0, 0, 10), cas(2, "x", 0, 1, True, 20, 30), cas(3, "x", 0, 2, None, 20, INF),
         r(4, "x", 2, 40, 50)], False),
    "acknowledged write lost, a timed-out one beside it": (
        [w(1, "x", 1, 0, 10), w(2, "x", 2, 20, INF), r(3, "x", None, 30, 40)], False),
    "two timed-out writes read in both orders": (
        [w(1, "x", 1, 0, INF), w(2, "x", 2, 0, INF), r(3, "x", 1, 10, 20), r(3, "x", 2, 30, 40),
         r(3, "x", 1, 50, 60)], False),
    "identical timed-out writes: the later one is needed": (
        [w(4, "x", 2, 0, 5), w(1, "x", 1, 0, INF), r(3, "x", 1, 10, 20), r(3, "x", 2, 30, 40),
         w(2, "x", 1, 45, INF), r(3, "x", 1, 50, 60)], False),
    "identical timed-out writes interleaved legally": (
        [w(1, "x", 1, 0, INF), w(2, "x", 1, 25, INF), w(4, "x", 2, 0, 15), r(3, "x", 1, 10, 20),
         r(3, "x", 2, 21, 24), r(3, "x", 1, 50, 60)], True),
    "timed-out cas whose expected value never held": (
        [w(1, "x", 5, 0, 10), cas(2, "x", 4, 6, None, 20, INF), r(3, "x", 6, 30, 40)], False),
    "operations touching at one instant are concurrent": (
        [r(2, "x", 1, 0, 10), w(1, "x", 1, 10, 20)], True),
}


@pytest.mark.parametrize("name", sorted(HISTORIES))
def test_hand_made_histories(name):
    history, linearizable = HISTORIES[name]
    expected = Outcome.LINEARIZABLE if linearizable else Outcome.NOT_LINEARIZABLE
    assert check_kv_history(history).outcome is expected, name


def _oracle(history) -> bool:
    ops = [o for o in history if not (o.op == READ and o.indeterminate)]
    definite = [o for o in ops if not o.indeterminate]
    maybe = [o for o in ops if o.indeterminate]
    for size in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, size):
            for order in itertools.permutations(definite + list(chosen)):
                if all(not (b.complete_ns < a.invoke_ns) for i, a in enumerate(order) for b in order[i + 1:]):
                    value, good = None, True
                    for o in order:
                        if o.op == READ:
                            good = o.result == value
                        elif o.op == WRITE:
                            value = o.args[1]
                        else:
                            swapped = value == o.args[1]
                            good = o.indeterminate or o.result == swapped
                            value = o.args[2] if swapped else value
                        if not good:
                            break
                    if good:
                        return True
    return False


def _history(rng, n):
    """Linearizable by construction, except that a timed-out operation takes effect only
    half the time; then perhaps one result or interval changed."""
    plans = []
    for _ in range(n):
        s = rng.randint(0, 30)
        e = s + rng.randint(0, 25)
        kind = rng.choice((READ, WRITE, CAS, CAS))
        args = (("x",) if kind == READ else ("x", rng.randrange(3)) if kind == WRITE
                else ("x", rng.choice([None, 0, 1, 2]), rng.randrange(3)))
        plans.append((rng.uniform(s, e), kind, args, s, e))
    value, history = None, []
    for _p, kind, args, s, e in sorted(plans, key=lambda t: t[0]):
        timed_out = rng.random() < 0.35
        result = None
        if not timed_out or rng.random() < 0.5:
            if kind == READ:
                result = value
            elif kind == WRITE:
                value = args[1]
            else:
                result = value == args[1]
                value = args[2] if result else value
        history.append(Operation(0, kind, args, s, INF if timed_out else e, None if timed_out else result))
    if rng.random() < 0.6:
        i = rng.randrange(len(history))
        o = history[i]
        if o.op == READ and not o.indeterminate:
            history[i] = Operation(0, READ, o.args, o.invoke_ns, o.complete_ns, rng.choice([None, 0, 1, 2]))
        elif o.op == CAS and not o.indeterminate:
            history[i] = Operation(0, CAS, o.args, o.invoke_ns, o.complete_ns, not o.result)
        elif not o.indeterminate:
            shift = rng.randint(1, 20)
            history[i] = Operation(0, o.op, o.args, o.invoke_ns + shift, o.complete_ns + shift, o.result)
    rng.shuffle(history)
    return history


def test_agrees_with_brute_force_when_timeouts_may_not_have_applied():
    rng = random.Random(20240601)
    verdicts = {True: 0, False: 0}
    for _ in range(600):
        history = _history(rng, rng.randint(2, 7))
        expected = _oracle(history)
        verdicts[expected] += 1
        got = check_kv_history(history).outcome
        assert got is (Outcome.LINEARIZABLE if expected else Outcome.NOT_LINEARIZABLE), history
    assert min(verdicts.values()) >= 100, verdicts      # both verdicts well represented


_TRACE = ("import sys; from aeronpy.testing.swarm import run_seed; "
          "print(*[(lambda r: f'{r.ok}:{r.events}:{r.trace}')(run_seed(s, fault_phase_ms=1200)) "
          "for s in (5, 61)])")


def test_a_seed_replays_exactly_across_hash_randomisation():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    outputs = []
    for hash_seed in ("1", "98765"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": root}
        done = subprocess.run([sys.executable, "-c", _TRACE], env=env, cwd=root, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.split())
    assert len(outputs[0]) == 2 and all(o.startswith("True:") for o in outputs[0]), outputs
    assert outputs[0] == outputs[1]
