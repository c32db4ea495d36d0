"""Per-phase figures and the recovery verdict of the partition trial: pure functions over what
the clients recorded and the counters the trial sampled (tested in
tests/ops/test_partition_trial_checker.py). Exactly-once and agreement are the loss trial's
checker (loss_trial.checker), used as they are.

Records are the loss trial's: ``[sent_at_s (wall clock), latency_ns, outcome, payload, reply,
paced]``; a payload is ``<tag>:<n>`` or ``<tag>.<task>:<n>``, the tag naming its client.
A sample is ``(wall_clock_s, {member: counters or None})`` with at least ``role``,
``leadership_term``, ``leader_id`` and ``commit_index``.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from loss_trial.checker import ACKED, CLOSED, TIMED_OUT

LEADER_ROLE = 2
Sample = Tuple[float, Mapping[int, Optional[Mapping[str, int]]]]


def client_tag(payload: str) -> str:
    return payload.split(":", 1)[0].split(".", 1)[0]


def finished_clients(records: Sequence[list], quota: int) -> Dict[str, float]:
    """Client tag -> the time of its last request, for each client that sent its whole quota
    of requests (loss_trial.clients.MAX_REQUESTS_PER_CLIENT, a bound on its memory) and so
    stopped before the run's end: after that it is owed no acknowledgement. A client that hangs
    sends fewer and stays owed."""
    counts: Dict[str, int] = {}
    last: Dict[str, float] = {}
    for r in records:
        tag = client_tag(r[3])
        counts[tag] = counts.get(tag, 0) + 1
        last[tag] = max(last.get(tag, r[0]), r[0])
    return {tag: last[tag] for tag, n in counts.items() if n >= quota}


def ack_times(records: Sequence[list]) -> List[Tuple[float, str]]:
    """(wall-clock time the reply arrived, client tag) of every acknowledged request, in time order."""
    return sorted((r[0] + r[1] / 1e9, client_tag(r[3])) for r in records if r[2] == ACKED)


def longest_gap(times: Sequence[float], t0: float, t1: float) -> float:
    """Longest stretch of [t0, t1] with none of ``times`` (sorted) in it: t1 - t0 when empty."""
    longest, last = 0.0, t0
    for t in times:
        if t0 <= t <= t1:
            longest, last = max(longest, t - last), t
    return max(longest, t1 - last)


def first_ack_after(acks: Sequence[Tuple[float, str]], tags: Sequence[str], t_heal: float) -> Dict[str, Optional[float]]:
    """Per client tag: seconds from the heal to its first acknowledgement at or after it (None: never)."""
    first: Dict[str, Optional[float]] = {tag: None for tag in tags}
    for t, tag in acks:
        if t >= t_heal and tag in first and first[tag] is None:
            first[tag] = t - t_heal
    return first


def agreed_leader(counters: Mapping[int, Optional[Mapping[str, int]]]) -> Optional[int]:
    """The one leader every member names, in one term, that leads by its own counters; else None
    (a member unreadable, two terms, two leaders, or a member that knows no leader)."""
    if not counters or any(c is None for c in counters.values()):
        return None
    terms = {c["leadership_term"] for c in counters.values()}
    named = {c["leader_id"] for c in counters.values()}
    leaders = [m for m, c in counters.items() if c["role"] == LEADER_ROLE]
    if len(terms) != 1 or len(named) != 1 or leaders != [next(iter(named))]:
        return None
    return leaders[0]


def seconds_to_agreement(samples: Sequence[Sample], t_heal: float) -> Optional[float]:
    """From the heal to the first sample at or after it in which the members agree on one leader."""
    for t, counters in samples:
        if t >= t_heal and agreed_leader(counters) is not None:
            return t - t_heal
    return None


def two_leaders_s(samples: Sequence[Sample], t0: float, t1: float) -> float:
    """How long, over samples in [t0, t1), two or more members counted themselves leader at
    once (each sample stands until the next; an old leader not yet stepped down shows here)."""
    total = 0.0
    inside = [(t, c) for t, c in samples if t0 <= t < t1]
    for i, (t, counters) in enumerate(inside):
        end = inside[i + 1][0] if i + 1 < len(inside) else t1
        if sum(1 for c in counters.values() if c and c["role"] == LEADER_ROLE) > 1:
            total += end - t
    return total


def max_term(counters: Mapping[int, Optional[Mapping[str, int]]]) -> int:
    return max((c["leadership_term"] for c in counters.values() if c), default=0)


def counter_rise(before: Mapping[int, Optional[Mapping[str, int]]], after: Mapping[int, Optional[Mapping[str, int]]],
                 key: str) -> int:
    return sum(max(0, (after.get(m) or {}).get(key, 0) - (before.get(m) or {}).get(key, 0)) for m in after)


def commit_lag(counters: Mapping[int, Optional[Mapping[str, int]]]) -> Optional[int]:
    """Highest minus lowest commit index across members (None: a member unreadable)."""
    if not counters or any(c is None for c in counters.values()):
        return None
    indexes = [c["commit_index"] for c in counters.values()]
    return max(indexes) - min(indexes)


def stuck_members(heal: Mapping[int, Optional[Mapping[str, int]]],
                  after: Mapping[int, Optional[Mapping[str, int]]]) -> List[int]:
    """Members whose commit index at the end of the settle is still below the highest any
    member had at the heal (or that are unreadable then): they did not catch up."""
    reached = max((c["commit_index"] for c in heal.values() if c), default=0)
    return sorted(m for m, c in after.items() if c is None or c["commit_index"] < reached)


def phase_row(phase: Mapping, records: Sequence[list], tags: Sequence[str],
              finished: Optional[Mapping[str, float]] = None) -> Dict[str, object]:
    """One line of the table. ``phase``: name, leader, t0 (cut), t1 (heal), t2 (end of settle),
    counters_before / counters_heal / counters_after, samples. ``finished``: clients that sent
    their whole quota (`finished_clients`), owed nothing after their last request."""
    t0, t1, t2 = phase["t0"], phase["t1"], phase["t2"]
    tags = [t for t in tags if t not in (finished or {}) or finished[t] >= t1]
    during = [r for r in records if t0 <= r[0] < t1]
    acks = ack_times(records)
    per_client_gap = {tag: longest_gap([t for t, g in acks if g == tag], t0, t1) for tag in tags}
    first = first_ack_after(acks, tags, t1)
    recovered = [s for s in first.values() if s is not None]
    before, heal, after = phase["counters_before"], phase["counters_heal"], phase["counters_after"]
    return {
        "phase": phase["index"], "scenario": phase["name"], "leader": phase["leader"],
        "partition": phase.get("partition", ""),
        "acked_per_s": round(sum(1 for r in during if r[2] == ACKED) / max(t1 - t0, 1e-9)),
        "timeouts": sum(1 for r in during if r[2] == TIMED_OUT),
        "closed": sum(1 for r in during if r[2] == CLOSED),
        "elections": max_term(heal) - max_term(before),
        "elections_after_heal": max_term(after) - max_term(heal),
        "longest_gap_s": round(longest_gap([t for t, _ in acks], t0, t1), 3),
        "worst_client_gap_s": round(max(per_client_gap.values(), default=0.0), 3),
        "first_ack_after_heal_s": None if not recovered else round(min(recovered), 3),
        "all_clients_acked_after_heal_s": (None if len(recovered) < len(first) or not first
                                           else round(max(recovered), 3)),
        "unrecovered_clients": sorted(tag for tag, s in first.items() if s is None),
        "leader_agreed_after_heal_s": (None if (s := seconds_to_agreement(phase["samples"], t1)) is None
                                       else round(s, 3)),
        "two_leaders_s": round(two_leaders_s(phase["samples"], t0, t2), 3),
        "commit_lag_end": commit_lag(after),
        "stuck_members": stuck_members(heal, after),
        "errors": counter_rise(before, after, "errors"),
        "leader_after": agreed_leader(after),
    }


def recovery_violations(rows: Sequence[Mapping], bound_s: float) -> List[str]:
    """A phase after whose heal some client got no acknowledgement within ``bound_s``, or the
    members did not agree on one leader within it; a member that did not catch up by the end
    of the settle, or recorded an error."""
    violations = []
    for r in rows:
        where = f"phase {r['phase']} ({r['scenario']})"
        violations += late_recovery(where, r, bound_s, "heal") + settle_violations(where, r, "at the heal")
    return violations


def late_recovery(where: str, r: Mapping, bound_s: float, event: str) -> List[str]:
    """A client not acknowledged again after the ``event`` ("heal", "resume": the row's
    ``*_after_<event>_s`` figures) within ``bound_s``, or no one leader agreed on within it."""
    violations = []
    acked_s, agreed_s = r[f"all_clients_acked_after_{event}_s"], r[f"leader_agreed_after_{event}_s"]
    if r["unrecovered_clients"]:
        violations.append(f"{where}: clients {', '.join(r['unrecovered_clients'])} never acknowledged after the {event}")
    elif acked_s is not None and acked_s > bound_s:
        violations.append(f"{where}: a client waited {acked_s:.1f} s after the {event} "
                          f"for an acknowledgement (bound {bound_s:g} s)")
    if agreed_s is None or agreed_s > bound_s:
        violations.append(f"{where}: members did not agree on one leader within {bound_s:g} s of the {event}")
    return violations


def settle_violations(where: str, r: Mapping, when: str) -> List[str]:
    """A member that did not reach by the end of the settle the commit index the cluster had
    ``when`` (e.g. "at the heal"), and errors the members recorded."""
    violations = []
    if r["stuck_members"]:
        violations.append(f"{where}: members {r['stuck_members']} did not reach, by the end of the settle, "
                          f"the commit index the cluster had {when}")
    if r["errors"]:
        violations.append(f"{where}: members recorded {r['errors']} errors (errors.log)")
    return violations


def format_table(rows: Sequence[Mapping]) -> str:
    def num(value, fmt="{:.2f}"):
        return "never" if value is None else fmt.format(value)

    lines = ["| phase | scenario | leader | acked/s | timeouts | closed | elections (cut/healed) | longest gap s "
             "| worst client gap s | 1st ack after heal s | all clients acked s | one leader after s "
             "| two leaders s | commit lag | errors |", "|" + "---|" * 15]
    for r in rows:
        lines.append(f"| {r['phase']} | {r['scenario']} | {r['leader']} | {r['acked_per_s']} | {r['timeouts']} "
                     f"| {r['closed']} | {r['elections']}/{r['elections_after_heal']} | {r['longest_gap_s']:.2f} "
                     f"| {r['worst_client_gap_s']:.2f} | {num(r['first_ack_after_heal_s'])} "
                     f"| {num(r['all_clients_acked_after_heal_s'])} | {num(r['leader_agreed_after_heal_s'])} "
                     f"| {r['two_leaders_s']:.2f} | {num(r['commit_lag_end'], '{}')} | {r['errors']} |")
    return "\n".join(lines)
