"""Per-step figures and the recovery verdict of the pause trial: pure functions over what the
clients recorded and the counters the trial sampled (tested in tests/ops/test_pause_trial_plan.py).
Exactly-once and agreement are the loss trial's checker; the gap, first-acknowledgement and
agreed-leader helpers are the partition trial's.

A step record (built by __main__) holds: ``name``, ``what``, ``target``, ``t0`` (step start),
``pauses`` ``[[member or tag list, t_stop, t_cont], ...]`` (wall clock; each with the leader
status of what was stopped: ``was_leader``), ``t_resume`` (the last SIGCONT), ``t_end`` (end of
the settle), ``counters_before`` / ``counters_resume`` / ``counters_after`` and ``samples``
``[(t, {member: counters or None})]``, ``paused_clients`` (tags) and ``pause_s`` (the longest).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

from loss_trial.checker import ACKED, CLOSED, TIMED_OUT
from partition_trial.metrics import (LEADER_ROLE, ack_times, agreed_leader, client_tag, counter_rise,
                                     first_ack_after, late_recovery, longest_gap, max_term, settle_violations,
                                     stuck_members)

# ERROR/Traceback lines a pause explains: none so far. Each entry: (step targets, substring).
EXPLAINED_ERRORS: Sequence[tuple] = ()


def stale_leader_s(samples: Sequence[tuple], member: int, t_cont: float, t_end: float) -> Optional[float]:
    """After ``member`` (a leader when stopped) was continued at ``t_cont``: how long its
    counters still said it leads in a term below the highest any member shows (a stale leader);
    0.0 if never seen so, None if still so at the last sample before ``t_end``."""
    stale_since = None
    last_stale = False
    for t, counters in samples:
        if not t_cont <= t <= t_end:
            continue
        mine = counters.get(member)
        top = max((c["leadership_term"] for c in counters.values() if c), default=0)
        last_stale = bool(mine and mine["role"] == LEADER_ROLE and mine["leadership_term"] < top)
        if last_stale and stale_since is None:
            stale_since = t
        if not last_stale and stale_since is not None:
            return t - t_cont
    if last_stale:
        return None
    return 0.0


def stepped_down(samples: Sequence[tuple], member: int, t0: float, t1: float) -> bool:
    """Did ``member``'s counters stop saying it leads at some sample in [t0, t1]?"""
    return any((c := counters.get(member)) is not None and c["role"] != LEADER_ROLE
               for t, counters in samples if t0 <= t <= t1)


def first_ack_after_each(acks: Sequence[tuple], pauses: Sequence[Sequence], t_end: float) -> Optional[float]:
    """The longest wait, over the pauses, from a SIGCONT to the next acknowledgement to any
    client (before the next pause's SIGSTOP, or ``t_end``); None if one had none."""
    worst = 0.0
    for i, pause in enumerate(pauses):
        t_cont = pause[2]
        limit = pauses[i + 1][1] if i + 1 < len(pauses) else t_end
        first = next((t for t, _ in acks if t_cont <= t <= limit), None)
        if first is None:
            return None
        worst = max(worst, first - t_cont)
    return worst


def completed_after(records: Sequence[list], tag: str, t: float) -> List[list]:
    """The requests of client ``tag`` that ended (sent + latency) at or after ``t``, in order."""
    mine = [r for r in records if client_tag(r[3]) == tag and r[0] + r[1] / 1e9 >= t]
    return sorted(mine, key=lambda r: r[0] + r[1] / 1e9)


def client_outcome_after(records: Sequence[list], tag: str, t_cont: float) -> Dict[str, object]:
    """What a paused client saw once continued: its outcomes up to its first acknowledgement."""
    seen: List[str] = []
    for r in completed_after(records, tag, t_cont):
        seen.append(r[2])
        if r[2] == ACKED:
            return {"outcomes_before_ack": seen[:-1], "acked": True,
                    "first_ack_s": round(r[0] + r[1] / 1e9 - t_cont, 3)}
    return {"outcomes_before_ack": seen, "acked": False, "first_ack_s": None}


def leaders_sessions(samples: Sequence[tuple], t0: float, t1: float) -> Optional[int]:
    """The fewest sessions_open any sampled leader (in the highest term of its sample) showed."""
    fewest = None
    for t, counters in samples:
        if not t0 <= t <= t1:
            continue
        top = max((c["leadership_term"] for c in counters.values() if c), default=0)
        for c in counters.values():
            if c and c["role"] == LEADER_ROLE and c["leadership_term"] == top:
                fewest = c["sessions_open"] if fewest is None else min(fewest, c["sessions_open"])
    return fewest


def step_row(step: Mapping, records: Sequence[list], tags: Sequence[str]) -> Dict[str, object]:
    """One line of the table (see the module docstring for ``step``)."""
    t0, t_resume, t_end = step["t0"], step["t_resume"], step["t_end"]
    paused_clients = list(step.get("paused_clients", ()))
    during = [r for r in records if t0 <= r[0] < t_end]
    acks = ack_times(records)
    others = [t for t in tags if t not in paused_clients]
    gaps = {tag: longest_gap([t for t, g in acks if g == tag], t0, t_end) for tag in others}
    first = first_ack_after(acks, tags, t_resume)
    recovered = [s for s in first.values() if s is not None]
    samples = step["samples"]
    before, resume, after = step["counters_before"], step["counters_resume"], step["counters_after"]
    # each pause's window ends at the next pause: a member stopped again shows frozen counters
    pauses = step["pauses"]
    stale = [stale_leader_s(samples, p[0][0], p[2], pauses[i + 1][1] if i + 1 < len(pauses) else t_end)
             for i, p in enumerate(pauses) if p[3] and step["target"] != "clients"]
    agreed_at = next((t - t_resume for t, c in samples if t >= t_resume and agreed_leader(c) is not None), None)
    leader = step.get("leader")
    return {
        "step": step["name"], "what": step["what"], "leader": leader,
        "paused": sorted({str(x) for p in step["pauses"] for x in p[0]}),
        "pauses": len(step["pauses"]),
        "acked_per_s": round(sum(1 for r in during if r[2] == ACKED) / max(t_end - t0, 1e-9)),
        "timeouts": sum(1 for r in during if r[2] == TIMED_OUT),
        "closed": sum(1 for r in during if r[2] == CLOSED),
        "closed_unpaused": sum(1 for r in during if r[2] == CLOSED and client_tag(r[3]) not in paused_clients),
        "elections": max_term(after) - max_term(before),
        "longest_gap_s": round(longest_gap([t for t, _ in acks], t0, t_end), 3),
        "worst_client_gap_s": round(max(gaps.values(), default=0.0), 3),
        "first_ack_after_resume_s": (None if (s := first_ack_after_each(acks, step["pauses"], t_end)) is None
                                     else round(s, 3)),
        "all_clients_acked_after_resume_s": (None if len(recovered) < len(first) or not first
                                             else round(max(recovered), 3)),
        "unrecovered_clients": sorted(tag for tag, s in first.items() if s is None),
        "leader_agreed_after_resume_s": None if agreed_at is None else round(agreed_at, 3),
        "stale_leader_s": (None if None in stale else round(max(stale, default=0.0), 3)),
        # only meaningful when the leader itself ran: a stopped leader's counters stay frozen
        "leader_stepped_down": (None if leader is None or step["target"] in ("leader", "leader-snapshot")
                                else stepped_down(samples, leader, t0, t_resume + 0.05)),
        "fewest_sessions": leaders_sessions(samples, t0, t_end),
        "sessions_before": next((c["sessions_open"] for c in before.values()
                                 if c and c["role"] == LEADER_ROLE), None),
        "paused_clients": {tag: client_outcome_after(records, tag, t_resume) for tag in paused_clients},
        "stuck_members": stuck_members(resume, after),
        "errors": counter_rise(before, after, "errors"),
        "after": {m: None if c is None else [c["role"], c["leadership_term"], c["leader_id"]]
                  for m, c in after.items()},
        "pause_s": step["pause_s"],
        "probe": probe_summary(step.get("probe"), t_resume),
    }


def probe_summary(probe: Optional[Mapping], t_resume: float) -> Optional[Dict[str, object]]:
    """The probe client's outcomes and the errors it raised (scenario g), None without one."""
    if not probe:
        return None
    outcomes: Dict[str, int] = {}
    for r in probe["records"]:
        outcomes[r[2]] = outcomes.get(r[2], 0) + 1
    acked_after = [r[0] + r[1] / 1e9 - t_resume for r in probe["records"]
                   if r[2] == ACKED and r[0] + r[1] / 1e9 >= t_resume]
    return {"outcomes": outcomes,
            "errors": [e for e in probe.get("errors", []) if e[1] not in ("connected", "client counters")],
            "client_counters": [e[2] for e in probe.get("errors", []) if e[1] == "client counters"],
            "connects": sum(1 for e in probe.get("errors", []) if e[1] == "connected"),
            "first_ack_after_resume_s": round(min(acked_after), 3) if acked_after else None}


def recovery_violations(rows: Sequence[Mapping], bound_s: float, session_timeout_s: float) -> List[str]:
    """What breaks the verdict in a step: a client not acknowledged again, no agreed leader, or a
    stale leader still leading ``bound_s`` after the last SIGCONT; a member not caught up at the
    end of the settle; errors recorded; a session closed that the pause does not explain (any
    client not paused; a paused one when the pause was shorter than the session timeout); a
    client paused past the session timeout that did not see its session closed."""
    violations = []
    for r in rows:
        where = f"step {r['step']} ({r['what']})"
        probe = r.get("probe")
        if probe is not None and (probe["outcomes"].get(CLOSED) or probe["first_ack_after_resume_s"] is None):
            violations.append(f"{where}: the probe client, never paused, had its session closed or was not "
                              f"acknowledged after the resume: {probe}")
        violations += late_recovery(where, r, bound_s, "resume")
        if r["stale_leader_s"] is None or r["stale_leader_s"] > bound_s:
            violations.append(f"{where}: the resumed leader still led in an old term {bound_s:g} s after the resume")
        violations += settle_violations(where, r, "at the resume")
        if r["closed_unpaused"]:
            violations.append(f"{where}: {r['closed_unpaused']} requests of clients that were not paused "
                              "ended with their session closed")
        for tag, seen in r["paused_clients"].items():
            closed = CLOSED in seen["outcomes_before_ack"]
            if r["pause_s"] > session_timeout_s and not closed:
                violations.append(f"{where}: client {tag} paused past the session timeout did not see its "
                                  f"session closed (outcomes before its next acknowledgement: "
                                  f"{seen['outcomes_before_ack']})")
            if r["pause_s"] < session_timeout_s and closed:
                violations.append(f"{where}: client {tag}'s session closed after a pause shorter than "
                                  "the session timeout")
    return violations


def unexplained_errors(lines: Sequence[str], targets: Sequence[str]) -> List[str]:
    """The member error lines that no entry of EXPLAINED_ERRORS covers for the run's targets."""
    return [line for line in lines
            if not any(target in targets and text in line for target, text in EXPLAINED_ERRORS)]


def format_table(rows: Sequence[Mapping]) -> str:
    def num(value, fmt="{:.2f}"):
        return "never" if value is None else fmt.format(value)

    lines = ["| step | what | paused | acked/s | timeouts | closed | elections | longest gap s "
             "| worst client gap s | 1st ack after resume s | all clients acked s | one leader after s "
             "| stale leader s | leader stepped down | fewest sessions | errors | (role, term, leader) after |",
             "|" + "---|" * 17]
    for r in rows:
        after = " ".join(f"{m}:{tuple(v) if v else None}" for m, v in sorted(r["after"].items()))
        lines.append(f"| {r['step']} | {r['what']} | {','.join(r['paused'])} | {r['acked_per_s']} | {r['timeouts']} "
                     f"| {r['closed']} | {r['elections']} | {r['longest_gap_s']:.2f} | {r['worst_client_gap_s']:.2f} "
                     f"| {num(r['first_ack_after_resume_s'])} | {num(r['all_clients_acked_after_resume_s'])} "
                     f"| {num(r['leader_agreed_after_resume_s'])} | {num(r['stale_leader_s'])} "
                     f"| {'' if r['leader_stepped_down'] is None else 'yes' if r['leader_stepped_down'] else 'no'} "
                     f"| {num(r['fewest_sessions'], '{}')} | {r['errors']} | {after} |")
    return "\n".join(lines)
