"""Per-step figures and the recovery verdict of the slow-disk trial: pure functions over what the
clients recorded, the counters the trial sampled and the shim's statistics (tested in
tests/ops/test_slowdisk_trial_plan.py). Exactly-once and agreement are the loss trial's checker;
gaps, first acknowledgements and the agreed leader are the partition trial's helpers.

Records are the loss trial's ``[sent_at_s, latency_ns, outcome, payload, reply, paced]``. A step
record (built by __main__) holds ``name``, ``what``, ``target``, ``slowness`` (text),
``targets`` (members slowed), ``leader`` (at the start), ``t0`` (disks slowed), ``t_fast``
(fast again), ``t_end`` (end of the settle), ``counters_before`` / ``counters_fast`` /
``counters_after`` ({member: counters or None}), ``samples`` ``[(t, {member: counters})]`` and
``shim_before`` / ``shim_fast`` ({member: shim statistics or None}).
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Sequence

from aeronpy.testing.slowdisk import SHIM_FIELDS, parse_shim_stats  # noqa: F401
from loss_trial.checker import ACKED, CLOSED, TIMED_OUT
from partition_trial.metrics import (LEADER_ROLE, ack_times, agreed_leader, counter_rise, first_ack_after,
                                     longest_gap, max_term, settle_violations, stuck_members)


def shim_delta(before: Optional[Mapping[str, int]], after: Optional[Mapping[str, int]]) -> Dict[str, int]:
    """Sync calls, slowed calls and injected time over a window (a missing side counts as zero;
    ``real_max_ns`` is the process's maximum so far, not the window's)."""
    before, after = before or {}, after or {}
    out = {k: max(0, after.get(k, 0) - before.get(k, 0)) for k in ("calls", "slowed", "injected_ns", "real_ns")}
    out["real_max_ns"] = after.get("real_max_ns", 0)
    return out


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """Nearest-rank percentile of ``values`` (q in 0..100); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def leader_in(counters: Mapping[int, Optional[Mapping[str, int]]]) -> Optional[int]:
    """The member that leads in the highest term any member shows (None: none does)."""
    top = max_term(counters)
    return next((m for m, c in sorted(counters.items())
                 if c and c["role"] == LEADER_ROLE and c["leadership_term"] == top), None)


def led_share(samples: Sequence[tuple], member: Optional[int], t0: float, t1: float) -> Optional[float]:
    """The share of samples in [t0, t1) in which ``member`` led in the highest term (None: no
    member or no sample)."""
    inside = [c for t, c in samples if t0 <= t < t1]
    if member is None or not inside:
        return None
    return sum(1 for c in inside if leader_in(c) == member) / len(inside)


def latency_ms(records: Sequence[list], t0: float, t1: float) -> Dict[str, Optional[float]]:
    """p50, p99 and max of the acknowledged paced requests sent in [t0, t1), in ms."""
    lat = [r[1] / 1e6 for r in records if t0 <= r[0] < t1 and r[2] == ACKED and r[5]]
    return {"p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": max(lat) if lat else None}


def recovered_after_s(acks: Sequence[tuple], samples: Sequence[tuple], tags: Sequence[str],
                      t_fast: float, t_end: float) -> Dict[str, object]:
    """From the disks turning fast: when every client had an acknowledgement again and when the
    members first agreed on one leader (None: not by ``t_end``), and the clients never acked."""
    first = first_ack_after([(t, g) for t, g in acks if t <= t_end], tags, t_fast)
    agreed = next((t - t_fast for t, c in samples if t_fast <= t <= t_end and agreed_leader(c) is not None), None)
    unacked = sorted(tag for tag, s in first.items() if s is None)
    clients = None if unacked or not first else max(first.values())
    rounded = [None if s is None else round(s, 3) for s in (clients, agreed)]
    return {"all_clients_acked_s": rounded[0], "leader_agreed_s": rounded[1], "unrecovered_clients": unacked,
            "recovered_s": None if None in rounded else max(rounded)}


def step_row(step: Mapping, records: Sequence[list], tags: Sequence[str]) -> Dict[str, object]:
    """One line of the table (see the module docstring for ``step``)."""
    t0, t_fast, t_end = step["t0"], step["t_fast"], step["t_end"]
    slow = [r for r in records if t0 <= r[0] < t_fast]
    settle = [r for r in records if t_fast <= r[0] < t_end]
    acks = ack_times(records)
    gaps = {tag: longest_gap([t for t, g in acks if g == tag], t0, t_fast) for tag in tags}
    before, fast, after = step["counters_before"], step["counters_fast"], step["counters_after"]
    samples = step["samples"]
    targets = list(step["targets"])
    syncs = {m: shim_delta(step["shim_before"].get(m), step["shim_fast"].get(m)) for m in targets}
    slow_s = max(t_fast - t0, 1e-9)
    return {
        "step": step["name"], "what": step["what"], "slowness": step["slowness"], "targets": targets,
        "leader": step.get("leader"),
        "acked_per_s": round(sum(1 for r in slow if r[2] == ACKED) / slow_s),
        **latency_ms(records, t0, t_fast),
        "timeouts": sum(1 for r in slow if r[2] == TIMED_OUT),
        "closed": sum(1 for r in slow + settle if r[2] == CLOSED),
        "elections": max_term(fast) - max_term(before),
        "longest_gap_s": round(longest_gap([t for t, _ in acks], t0, t_fast), 3),
        "worst_client_gap_s": round(max(gaps.values(), default=0.0), 3),
        # did the slow disk keep its member leading? (only when the step slows the leader)
        "slow_leader_led_share": (led_share(samples, step.get("leader"), t0, t_fast)
                                  if step["target"] == "leader" else None),
        "leader_at_fast": leader_in(fast),
        "syncs_slowed": sum(s["slowed"] for s in syncs.values()),
        "syncs": sum(s["calls"] for s in syncs.values()),
        "injected_s": round(sum(s["injected_ns"] for s in syncs.values()) / 1e9, 3),
        "settle_acked_per_s": round(sum(1 for r in settle if r[2] == ACKED) / max(t_end - t_fast, 1e-9)),
        "settle_elections": max_term(after) - max_term(fast),
        **recovered_after_s(acks, samples, tags, t_fast, t_end),
        "stuck_members": stuck_members(fast, after),
        "errors": counter_rise(before, after, "errors"),
        "after": {m: None if c is None else [c["role"], c["leadership_term"], c["leader_id"]]
                  for m, c in after.items()},
    }


def recovery_violations(rows: Sequence[Mapping], bounds_s: Mapping[str, float]) -> List[str]:
    """What breaks the verdict in a step: after the disks turned fast, a client not acknowledged
    again or no agreed leader within the step's bound (``bounds_s`` by step name); a member not
    at the commit index the cluster had at that moment by the end of the settle; errors
    recorded; any session closed (a slow disk explains none: sessions_timeout_ms is 10 s and
    ingress is polled while a sync runs)."""
    violations = []
    for r in rows:
        where, bound = f"step {r['step']} ({r['what']})", bounds_s[r["step"]]
        if r["unrecovered_clients"]:
            violations.append(f"{where}: clients {', '.join(r['unrecovered_clients'])} never acknowledged "
                              "after the disks turned fast")
        elif r["all_clients_acked_s"] > bound:
            violations.append(f"{where}: a client waited {r['all_clients_acked_s']:.2f} s after the disks turned "
                              f"fast for an acknowledgement (bound {bound:g} s)")
        if r["leader_agreed_s"] is None or r["leader_agreed_s"] > bound:
            violations.append(f"{where}: the members did not agree on one leader within {bound:g} s of the "
                              "disks turning fast")
        violations += settle_violations(where, r, "when the disks turned fast")
        if r["closed"]:
            violations.append(f"{where}: {r['closed']} requests ended with their session closed")
    return violations


def format_table(rows: Sequence[Mapping]) -> str:
    def num(value, fmt="{:.2f}"):
        return "-" if value is None else fmt.format(value)

    lines = ["| step | slowed | how | syncs slowed/all | acked/s | p50 ms | p99 ms | max ms | timeouts "
             "| elections | longest gap s | worst client gap s | slow leader led | leader at fast "
             "| recovered s | settle acked/s | settle elections | (role, term, leader) after |",
             "|" + "---|" * 18]
    for r in rows:
        after = " ".join(f"{m}:{tuple(v) if v else None}" for m, v in sorted(r["after"].items()))
        share = r["slow_leader_led_share"]
        lines.append(
            f"| {r['step']} | {','.join(map(str, r['targets'])) or '-'} | {r['slowness']} "
            f"| {r['syncs_slowed']}/{r['syncs']} | {r['acked_per_s']} | {num(r['p50_ms'])} | {num(r['p99_ms'])} "
            f"| {num(r['max_ms'], '{:.0f}')} | {r['timeouts']} | {r['elections']} | {r['longest_gap_s']:.2f} "
            f"| {r['worst_client_gap_s']:.2f} | {'-' if share is None else f'{share:.0%}'} "
            f"| {num(r['leader_at_fast'], '{}')} | {num(r['recovered_s'])} | {r['settle_acked_per_s']} "
            f"| {r['settle_elections']} | {after} |")
    return "\n".join(lines)
