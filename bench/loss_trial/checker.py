"""Verdict and table of the loss trial: pure functions over the records the clients and the
members wrote (tested in tests/ops/test_loss_trial_checker.py)."""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from aeronpy.testing.histogram import Histogram

ACKED, TIMED_OUT, CLOSED = "ack", "timeout", "closed"     # outcomes of a request
Request = Tuple[str, str, Optional[str]]                # (payload, outcome, reply)


def check_exactly_once(requests: Sequence[Request], applied: Mapping[int, Optional[Mapping[str, int]]],
                       members: Iterable[int]) -> List[str]:
    """Violations of exactly-once. ``applied``: member -> {payload: times applied} (None or
    absent: the member wrote no record). A request that timed out may be applied once or not
    at all; an acknowledged one exactly once on every member and answered "1"."""
    violations = []
    sent = {payload for payload, _, _ in requests}
    acked = [payload for payload, outcome, _ in requests if outcome == ACKED]
    for member in members:
        counts = applied.get(member)
        if counts is None:
            violations.append(f"member {member}: no record of what it applied")
            continue
        for payload, times in sorted(counts.items()):
            if times > 1:
                violations.append(f"member {member}: {payload} applied {times} times")
            if payload not in sent:
                violations.append(f"member {member}: applied {payload}, which no client sent")
        violations += [f"member {member}: acknowledged {payload} never applied"
                       for payload in acked if payload not in counts]
    violations += [f"acknowledged {payload} answered {reply!r}, not '1' (its count of applications)"
                   for payload, outcome, reply in requests if outcome == ACKED and reply != "1"]
    return violations


def check_agreement(applied: Mapping[int, Optional[Mapping[str, int]]], examples: int = 3) -> List[str]:
    """Violations of agreement: every member that wrote a record against the lowest-numbered."""
    records = {m: counts for m, counts in sorted(applied.items()) if counts is not None}
    if len(records) < 2:
        return []
    first, reference = next(iter(records.items()))
    violations = []
    for member, counts in records.items():
        differ = sorted(p for p in reference.keys() | counts.keys() if reference.get(p, 0) != counts.get(p, 0))
        if differ:
            shown = ", ".join(f"{p} ({reference.get(p, 0)} / {counts.get(p, 0)})" for p in differ[:examples])
            violations.append(f"members {first} and {member} disagree on {len(differ)} requests "
                              f"(times applied on each), e.g. {shown}")
    return violations


def counter_delta(before: Optional[Mapping[str, int]], after: Optional[Mapping[str, int]], key: str) -> int:
    """How much a member's counter rose over a phase; a member restarted meanwhile counts from 0."""
    if not after:
        return 0
    if before and after[key] >= before[key]:
        return after[key] - before[key]
    return after[key]


def phase_row(phase: Mapping, records: Sequence[list]) -> Dict[str, object]:
    """One line of the table from the requests sent during the phase. ``records``:
    [sent_at_s (wall clock), latency_ns, outcome, payload, reply, paced]."""
    duration_s = phase["t1"] - phase["t0"]
    during = [r for r in records if phase["t0"] <= r[0] < phase["t1"]]
    acked = [r for r in during if r[2] == ACKED]
    paced = Histogram()
    paced.record_many(r[1] for r in acked if r[5])
    before, after = phase["counters_before"], phase["counters_after"]
    terms = [max((c["leadership_term"] for c in counters.values() if c), default=0) for counters in (before, after)]
    return {
        "phase": phase["index"], "loss_pct": phase["loss_pct"], "kill": phase["kill"] is not None,
        "acked_per_s": round(len(acked) / duration_s),
        "closed_loop_acked_per_s": round(sum(1 for r in acked if not r[5]) / duration_s),
        "p50_ms": paced.percentile(50) / 1e6, "p99_ms": paced.percentile(99) / 1e6, "max_ms": paced.max / 1e6,
        "timeouts": sum(1 for r in during if r[2] == TIMED_OUT),
        "closed": sum(1 for r in during if r[2] == CLOSED),
        **{key: sum(counter_delta(before.get(m), after.get(m), key) for m in after)
           for key in ("naks_sent", "retransmits")},
        "elections": terms[1] - terms[0],
    }


def format_table(rows: Sequence[Mapping]) -> str:
    lines = ["| phase | loss % | kill | acked/s | closed-loop acked/s | p50 ms | p99 ms | max ms "
             "| timeouts | closed | naks_sent | retransmits | elections |", "|" + "---|" * 13]
    for r in rows:
        lines.append(f"| {r['phase']} | {r['loss_pct']:g} | {'yes' if r['kill'] else ''} | {r['acked_per_s']} "
                     f"| {r['closed_loop_acked_per_s']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.0f} "
                     f"| {r['timeouts']} | {r['closed']} | {r['naks_sent']} | {r['retransmits']} | {r['elections']} |")
    return "\n".join(lines)
