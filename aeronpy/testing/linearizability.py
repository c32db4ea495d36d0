"""Linearizability checker for key-value histories (read / write / compare-and-set).

A history is linearizable if every operation can be given a single instant between its
invocation and its completion such that, taken in the order of those instants, the operations
form a legal run of the sequential key-value model (Herlihy & Wing).

How the search works (written from the papers' ideas, not from any implementation):

* **Partition by key.** Linearizability is *local*: a history of a map is linearizable iff
  the sub-history of each key is (Herlihy & Wing's locality theorem). Each key is searched
  on its own, which turns one exponential search into many small ones.
* **Wing & Gong's search.** Repeatedly pick an operation that may go next: one not yet
  linearized whose invocation is not after the completion of any other operation still
  waiting (anything that completed before it was invoked must be placed before it). Apply it
  to the model; if the model's answer contradicts the observed result, try another; if
  nothing fits, backtrack. Success when every completed operation is linearized.
* **Lowe's memoisation.** Two search paths that have linearized the same *set* of operations
  and reached the same model state have identical futures, so each ``(linearized set,
  state)`` pair is explored once. The set is an int bitmask, the state the key's value.
* **Indeterminate operations** (timeouts): completion at +infinity and an unknown result.
  They may take effect at any point after their invocation or never; the search may finish
  with them left out. A timed-out read has no effect and constrains nothing, so it is dropped.
* **Pruning that keeps it sound** (each checked against a brute-force oracle in the tests):
  a read of a value nobody could have stored fails at once; a state that linearized a
  superset of the timed-out operations of an explored one (same completed set, same value) is
  dominated; identical timed-out operations are interchangeable (only the earliest is tried);
  a timed-out write immediately overwritten, or a timed-out no-op, is left out instead.
  Timed-out writes still make the search exponential in how many are open at once: a long
  single-key history with many timeouts can end UNKNOWN; spread load over many keys.
* **Bounded.** A step budget (and optional wall-clock deadline) makes the answer
  ``UNKNOWN`` instead of hanging on a pathological history.

The model: a missing key reads as ``None``; ``write(v)`` sets it; ``cas(expected, new)``
sets it to ``new`` and returns True iff the value equals ``expected``, else returns False. A
completed cas may also carry ``current``, the value the service said the key held when the cas
ran (a failed cas is then also a read of that value).

Values are equal only when they are of the same type and equal (:func:`same_value`): ``1``,
``True`` and ``1.0`` are three different values, as are ``b"a"`` and ``"a"``, and ``(1,)``
and ``[1]``; containers compare element by element under the same rule, and ``nan`` equals
``nan``. Python's ``==`` would let a read of ``True`` pass where ``1`` was written.
"""
from __future__ import annotations

import enum
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Hashable, Iterable, List, Optional, Tuple

READ = "read"
WRITE = "write"
CAS = "cas"
_ARITY = {READ: 1, WRITE: 2, CAS: 3}      # args: (key,), (key, value), (key, expected, new)


class _NotReported(enum.Enum):
    """``Operation.current`` of an operation whose service did not say what the key held
    (an enum member: it survives copy and pickle as itself)."""
    NOT_REPORTED = "not reported"

    def __repr__(self) -> str:
        return "NOT_REPORTED"


NOT_REPORTED = _NotReported.NOT_REPORTED

DEFAULT_MAX_STEPS = 2_000_000              # per key; a few seconds of CPU at most


class Outcome(enum.Enum):
    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not_linearizable"
    UNKNOWN = "unknown"                    # the search budget ran out first


@dataclass(frozen=True, repr=False)
class Operation:
    """One client operation. ``complete_ns`` is ``math.inf`` (and ``result`` ignored) when the
    client never learned the outcome (timeout): the operation may or may not have happened.

    ``args[0]`` is always the key: ``read``: (key,); ``write``: (key, value);
    ``cas``: (key, expected, new). ``result``: the value read; ignored for ``write``
    (an acknowledged write succeeded); True/False (a ``bool``) for ``cas``.
    ``current`` (``cas`` only): the value the service reported the key held when the cas ran
    (the KeyValueService replies it, above all on a failure); ``NOT_REPORTED``: unknown.
    """
    client_id: int
    op: str
    args: Tuple[Any, ...]
    invoke_ns: float
    complete_ns: float
    result: Any = None
    current: Any = NOT_REPORTED

    def __repr__(self) -> str:
        extra = "" if self.current is NOT_REPORTED else f", current={self.current!r}"
        return (f"Operation(client_id={self.client_id!r}, op={self.op!r}, args={self.args!r}, "
                f"invoke_ns={self.invoke_ns!r}, complete_ns={self.complete_ns!r}, "
                f"result={self.result!r}{extra})")

    @property
    def key(self) -> Hashable:
        return self.args[0]

    @property
    def indeterminate(self) -> bool:
        return math.isinf(self.complete_ns)

    def validate(self) -> None:
        if self.op not in _ARITY:
            raise ValueError(f"unknown operation {self.op!r} (expected read, write or cas)")
        if len(self.args) != _ARITY[self.op]:
            raise ValueError(f"{self.op} takes {_ARITY[self.op]} args (key first), got {self.args!r}")
        if not self.complete_ns >= self.invoke_ns:
            raise ValueError(f"operation completes before it is invoked: {self!r}")
        # a bool, not merely == True/False: a cas "returning 1" is a harness bug, not a success
        if self.op == CAS and not self.indeterminate and type(self.result) is not bool:
            raise ValueError(f"a completed cas must have a True/False result: {self!r}")
        if self.current is not NOT_REPORTED and self.op != CAS:
            raise ValueError(f"only a cas reports the key's current value: {self!r}")


@dataclass
class CheckResult:
    outcome: Outcome
    keys_checked: int = 0
    steps: int = 0                                   # search states expanded, all keys
    failed_key: Optional[Hashable] = None            # the first key found not linearizable
    failed_operations: List[Operation] = field(default_factory=list)   # that key's history
    unknown_keys: List[Hashable] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.LINEARIZABLE

    def __str__(self) -> str:
        if self.outcome is Outcome.NOT_LINEARIZABLE:
            ops = "\n  ".join(repr(op) for op in self.failed_operations[:40])
            return f"not linearizable on key {self.failed_key!r}:\n  {ops}"
        if self.outcome is Outcome.UNKNOWN:
            return f"unknown: search budget exhausted on keys {self.unknown_keys[:10]!r}"
        return f"linearizable ({self.keys_checked} keys, {self.steps} search steps)"


class _Unordered:
    """The canonical form of a dict or set whose canonical items do not hash (an unhashable
    value of some other type inside): equal to another with the same items in any order."""
    __slots__ = ("items",)
    __hash__ = None

    def __init__(self, items) -> None:
        self.items = list(items)

    def __eq__(self, other) -> bool:
        if not isinstance(other, _Unordered) or len(other.items) != len(self.items):
            return False
        rest = list(other.items)
        for item in self.items:
            for i, candidate in enumerate(rest):
                if candidate == item:
                    del rest[i]
                    break
            else:
                return False
        return True


_NAN = ("nan",)


def _canon(value: Any) -> Any:
    """A form of ``value`` whose ``==`` (and hash) is strict about type: ``(type, value)``,
    containers converted element by element. Hashable unless ``value`` holds an unhashable
    object of a type other than list, tuple, dict, set and frozenset."""
    kind = type(value)
    if value is None:
        return None
    if kind is tuple or kind is list:
        return (kind, tuple(_canon(v) for v in value))
    if kind is dict or kind is set or kind is frozenset:
        items = ([(_canon(k), _canon(v)) for k, v in value.items()] if kind is dict
                 else [_canon(v) for v in value])
        try:
            return (kind, frozenset(items))
        except TypeError:
            return (kind, _Unordered(items))
    if kind is float and value != value:
        return (float, _NAN)                 # nan == nan: the value written is the value read
    return (kind, value)


def same_value(a: Any, b: Any) -> bool:
    """The checker's equality of stored and observed values: same type and equal (see the
    module docstring); ``True`` is not ``1``, ``b"a"`` is not ``"a"``."""
    return _canon(a) == _canon(b)


class _Op:
    """An operation as the search sees it: its values in canonical form (:func:`_canon`)."""
    __slots__ = ("op", "args", "result", "current", "indeterminate", "invoke_ns", "complete_ns")

    def __init__(self, op: Operation) -> None:
        self.op = op.op
        self.args = tuple(_canon(a) for a in op.args)
        self.indeterminate = op.indeterminate
        self.invoke_ns = op.invoke_ns
        self.complete_ns = op.complete_ns
        self.result = op.result if op.op == CAS else _canon(op.result)    # cas: a bool
        self.current = NOT_REPORTED if op.current is NOT_REPORTED else _canon(op.current)


def _apply(op: _Op, value: Any) -> Tuple[bool, Any]:
    """Run ``op`` on the model in state ``value`` (canonical values both): (consistent with the
    observation, new state)."""
    if op.op == READ:
        return op.result == value, value
    if op.op == WRITE:
        return True, op.args[1]
    swapped = value == op.args[1]
    new_value = op.args[2] if swapped else value
    if op.indeterminate:
        return True, new_value
    if op.current is not NOT_REPORTED and op.current != value:
        return False, new_value              # the service saw another value than the model holds
    return op.result is swapped, new_value


def _observes_unwritten_value(ops: List[_Op]) -> bool:
    """A cheap sound test before the search: a completed read (or successful cas, or a cas
    that reported the key's value) that saw a value no operation on the key could have stored
    is a violation whatever the order."""
    try:
        stored = {None}
        stored.update(o.args[1] if o.op == WRITE else o.args[2] for o in ops if o.op != READ)
        for o in ops:
            if o.indeterminate:
                continue
            if o.op == READ:
                if o.result not in stored:
                    return True
            elif o.op == CAS:
                if (o.result and o.args[1] not in stored) or \
                        (o.current is not NOT_REPORTED and o.current not in stored):
                    return True
    except TypeError:               # unhashable values: leave it to the search
        pass
    return False


def _check_key(ops: List[Operation], max_steps: int, deadline: float) -> Tuple[Optional[bool], int]:
    """Search one key's history: (True/False, steps), or (None, steps) when out of budget.
    Every value is compared in canonical form (:func:`_canon`), the model's state included."""
    ops = [_Op(o) for o in ops]
    if _observes_unwritten_value(ops):
        return False, 0
    ops.sort(key=lambda o: (o.invoke_ns, o.complete_ns))
    n = len(ops)
    invoke = [o.invoke_ns for o in ops]
    complete = [o.complete_ns for o in ops]
    must_finish = 0                        # bitmask of completed (determinate) operations
    for i, o in enumerate(ops):
        if not o.indeterminate:
            must_finish |= 1 << i
    full = (1 << n) - 1
    twin_key: List[Optional[Tuple[Any, ...]]] = []
    for o in ops:
        key = None
        if o.indeterminate:
            try:
                key = (o.op, o.args)
                hash(key)
            except TypeError:
                key = None
        twin_key.append(key)

    # Memo (Lowe): determinate part of the linearized set and state -> the indeterminate parts
    # already explored with them. Dominance: a state that has linearized a *superset* of the
    # indeterminate operations of an explored one (same determinate set, same value) has only
    # fewer options - timed-out operations never narrow the candidate window, as they
    # complete at +inf - so it cannot succeed where that one did not, and is skipped. Without
    # this, every subset of the timed-out writes would be a separate memo entry.
    seen: Dict[Tuple[int, Any], List[int]] = {}
    # Each stack frame: (linearized mask, state, candidates still to try at this point,
    # whether the last step was a timed-out write)
    stack: List[Tuple[int, Any, List[int], bool]] = []
    steps = 0

    def candidates(mask: int) -> List[int]:
        # Walk the waiting operations in invocation order. An operation may go next iff it
        # was invoked no later than the earliest completion among the waiting ones; once an
        # invocation passes the running minimum, later ones cannot lower it (they complete
        # after they are invoked), so the walk stops there. The window only moves forward:
        # once an operation may go next, it stays so until it is linearized.
        result = []
        earliest_completion = math.inf
        waiting = full & ~mask
        twins = set()
        while waiting:
            low = waiting & -waiting
            i = low.bit_length() - 1
            waiting ^= low
            if invoke[i] > earliest_completion:
                break
            if twin_key[i] is not None:
                # Symmetry: identical timed-out operations that are both available are
                # interchangeable, so only the earliest unused one is tried.
                if twin_key[i] in twins:
                    continue
                twins.add(twin_key[i])
            result.append(i)
            if complete[i] < earliest_completion:
                earliest_completion = complete[i]
        # reversed: the stack pops from the end, so the earliest-invoked is tried first
        return [i for i in reversed(result) if invoke[i] <= earliest_completion]

    mask, state = 0, None
    stack.append((mask, state, candidates(mask), False))
    seen[(0, None)] = [0]
    while stack:
        mask, state, todo, after_maybe_write = stack[-1]
        if mask & must_finish == must_finish:
            return True, steps
        if not todo:
            stack.pop()
            continue
        i = todo.pop()
        steps += 1
        if steps > max_steps or (steps & 0xFFF == 0 and time.monotonic() > deadline):
            return None, steps
        op = ops[i]
        if after_maybe_write and op.op == WRITE:
            continue      # the timed-out write before it is overwritten unseen: drop it instead
        consistent, new_state = _apply(op, state)
        if not consistent:
            continue
        maybe = op.indeterminate
        if maybe and new_state == state:
            continue      # a timed-out no-op (failed cas, same value): leaving it out dominates
        new_mask = mask | (1 << i)
        try:
            explored = seen.setdefault((new_mask & must_finish, new_state), [])
        except TypeError:           # unhashable value: search without memoisation
            explored = []
        new_maybe = new_mask & ~must_finish
        if any(old & ~new_maybe == 0 for old in explored):
            continue
        explored.append(new_maybe)
        stack.append((new_mask, new_state, candidates(new_mask), maybe and op.op == WRITE))
    return False, steps


def check_kv_history(history: Iterable[Operation], max_steps: int = DEFAULT_MAX_STEPS,
                     timeout_s: Optional[float] = None) -> CheckResult:
    """Check a key-value history; ``max_steps`` bounds the search per key.

    Returns NOT_LINEARIZABLE as soon as one key is proved not linearizable (naming it and its
    operations), LINEARIZABLE when every key is, UNKNOWN when some key ran out of budget and
    none failed.
    """
    deadline = time.monotonic() + timeout_s if timeout_s is not None else math.inf
    by_key: Dict[Hashable, List[Operation]] = {}
    for op in history:
        op.validate()
        if op.op == READ and op.indeterminate:
            continue                      # an unanswered read changes nothing
        by_key.setdefault(op.key, []).append(op)

    result = CheckResult(Outcome.LINEARIZABLE)
    for key, ops in by_key.items():
        verdict, steps = _check_key(ops, max_steps, deadline)
        result.keys_checked += 1
        result.steps += steps
        if verdict is False:
            result.outcome = Outcome.NOT_LINEARIZABLE
            result.failed_key = key
            result.failed_operations = sorted(ops, key=lambda o: o.invoke_ns)
            return result
        if verdict is None:
            result.unknown_keys.append(key)
    if result.unknown_keys:
        result.outcome = Outcome.UNKNOWN
    return result


class HistoryRecorder:
    """Thread-safe recorder for clients under test: ``invoke`` before sending, then exactly
    one of ``complete`` (with the result) or ``timeout`` (outcome unknown).

    Times come from ``time.monotonic_ns`` (one clock for all threads of this process) unless
    given explicitly, as a simulation does with its virtual clock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Dict[int, Tuple[int, str, Tuple[Any, ...], float]] = {}
        self._done: List[Operation] = []
        self._next_token = 1

    def invoke(self, client_id: int, op: str, args: Tuple[Any, ...], now_ns: Optional[float] = None) -> int:
        now = time.monotonic_ns() if now_ns is None else now_ns
        with self._lock:
            token = self._next_token
            self._next_token += 1
            self._pending[token] = (client_id, op, tuple(args), now)
        return token

    def complete(self, token: int, result: Any = None, now_ns: Optional[float] = None,
                 current: Any = NOT_REPORTED) -> None:
        """``current``: for a cas, the value the service reported the key held (if it did)."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        with self._lock:
            client_id, op, args, start = self._pending.pop(token)
            self._done.append(Operation(client_id, op, args, start, now, result, current))

    def timeout(self, token: int) -> None:
        with self._lock:
            client_id, op, args, start = self._pending.pop(token)
            self._done.append(Operation(client_id, op, args, start, math.inf, None))

    def history(self) -> List[Operation]:
        """Everything recorded; operations still pending count as indeterminate."""
        with self._lock:
            pending = [Operation(c, op, args, start, math.inf, None)
                       for c, op, args, start in self._pending.values()]
            return list(self._done) + pending


def random_kv_request(rng, key: Hashable, value: Any, seen: dict) -> Tuple[str, tuple, dict]:
    """(kind, args, request) for one random operation on ``key`` as the KeyValueService of
    aeronpy.testing.services takes it (reads twice as likely as writes or compare-and-sets);
    a compare-and-set expects the value last ``seen`` for the key. ``value`` is written."""
    kind = rng.choice((READ, READ, WRITE, CAS))
    if kind == READ:
        return kind, (key,), {"op": "read", "key": key}
    if kind == WRITE:
        return kind, (key, value), {"op": "write", "key": key, "value": value}
    expect = seen.get(key)
    return kind, (key, expect, value), {"op": "cas", "key": key, "expect": expect, "value": value}


def complete_kv_request(recorder: "HistoryRecorder", token, kind: str, key: Hashable, value: Any,
                        reply: dict, seen: dict) -> None:
    """Record the KeyValueService's ``reply`` to a :func:`random_kv_request` and note the
    key's value now known in ``seen``.

    A cas reply ``{"ok": bool, "value": v}`` names the value the key held when the cas ran;
    it is recorded as the operation's ``current`` (a failed cas is a read of it), so a service
    that reports a stale or invented value fails the check instead of passing as "False"."""
    if "error" in reply:
        raise ValueError(f"the service refused a {kind} of {key!r}: {reply!r}")
    if kind == READ:
        recorder.complete(token, reply["value"])
        seen[key] = reply["value"]
    elif kind == WRITE:
        recorder.complete(token, None)
        seen[key] = value
    else:
        ok = reply["ok"]
        if type(ok) is not bool:
            raise ValueError(f"a cas reply's ok must be true or false: {reply!r}")
        recorder.complete(token, ok, current=reply["value"] if "value" in reply else NOT_REPORTED)
        seen[key] = value if ok else reply["value"]
