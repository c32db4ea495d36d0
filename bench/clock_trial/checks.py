"""The clock trial's analysis: pure functions over what a run recorded (tested with hand-made
event lists in tests/ops/test_clock_trial_plan.py).

A run is a dict: ``epoch_ns`` (the driver's wall clock minus its monotonic clock: the driver
runs on the true clock), ``events`` (the driver's, each with ``kind`` and ``mono``, the host's
monotonic clock in ns) and ``records`` (what probe.ClockProbe wrote on each member: ``ev``,
``ts`` cluster time, ``m`` member, ``mono``, ``wall`` that member's shifted wall clock, ...).
The monotonic clock is one clock for every process of the host and no shim moves it, so it
orders the driver's and the members' observations; "real time" is ``mono + epoch_ns``.
Each ``check_*`` returns (figures, failures): lines to print, and what broke a promise of
docs/operations.md, "Cluster time".
"""
from __future__ import annotations

import re
import statistics
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from . import plan

S = 1_000_000_000
CHAIN_CID = 1
CHAIN_NS = 1000 * 1_000_000
WARNING_RE = re.compile(r"leads with its clock ([0-9]+(?:\.[0-9]+)?) s behind cluster time")
Result = Tuple[List[str], List[str]]


# -- reading a run -----------------------------------------------------------------------------

def parse_warnings(log_text: str) -> List[float]:
    """The 'behind' seconds of each leader_clock_behind WARNING in a member's log text."""
    return [float(m.group(1)) for line in log_text.splitlines() if "WARNING" in line
            for m in [WARNING_RE.search(line)] if m]


def events(run: Mapping, kind: str, **match) -> List[dict]:
    return [e for e in run["events"] if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())]


def first_event(run: Mapping, kind: str, **match) -> Optional[dict]:
    found = events(run, kind, **match)
    return found[0] if found else None


def real_s(run: Mapping, mono: int) -> float:
    return (mono + run["epoch_ns"]) / S


def skew_s(run: Mapping, ts: int, mono: int) -> float:
    """Cluster time minus real time, s."""
    return (ts - mono - run["epoch_ns"]) / S


def replies(run: Mapping, after: float = float("-inf"), before: float = float("inf")) -> List[dict]:
    """Ping replies (cluster time of the entry, received at ``mono``) with after < mono < before."""
    return [e for e in run["events"] if e["kind"] == "reply" and after < e["mono"] < before]


def applied(records: Sequence[Mapping], ev: str) -> List[dict]:
    """One record per log entry of kind ``ev`` (a ``timer``, ``sched`` or ``close``): the first
    member to apply it, by mono. A restarted member replays old entries later; that is not when
    they happened."""
    key_fields = {"timer": ("cid", "ts"), "sched": ("cid", "ts", "deadline"), "close": ("sid",)}[ev]
    first: Dict[tuple, dict] = {}
    for r in records:
        if r["ev"] == ev:
            key = tuple(r.get(k) for k in key_fields)
            if key not in first or r["mono"] < first[key]["mono"]:
                first[key] = r
    return sorted(first.values(), key=lambda r: (r["ts"], r["mono"]))


def fires_with_deadlines(records: Sequence[Mapping]) -> List[dict]:
    """Every timer fire with the deadline it was scheduled for (``deadline`` None if no schedule
    is known): the chain's is its previous fire + 1 s, another timer's its latest schedule."""
    scheds = applied(records, "sched")
    out, chain_deadline = [], None
    for fire in applied(records, "timer"):
        if fire["cid"] == CHAIN_CID:
            deadline = chain_deadline
            if deadline is None:
                known = [s["deadline"] for s in scheds if s["cid"] == CHAIN_CID and s["ts"] <= fire["ts"]]
                deadline = known[-1] if known else None
            chain_deadline = fire["ts"] + CHAIN_NS
        else:
            known = [s["deadline"] for s in scheds if s["cid"] == fire["cid"] and s["ts"] <= fire["ts"]]
            deadline = known[-1] if known else None
        out.append(dict(fire, deadline=deadline))
    return out


def takeover_mono(run: Mapping, member: int, after: int) -> Optional[int]:
    """When ``member`` became leader after ``after`` (its service's role change)."""
    for r in sorted(run["records"], key=lambda r: r["mono"]):
        if r["m"] == member and r["ev"] == "role" and r.get("new") == "LEADER" and r["mono"] > after:
            return r["mono"]
    return None


def session_ids(run: Mapping) -> Dict[str, int]:
    return {e["client"]: e["session"] for e in events(run, "connect")}


# -- checks every scenario makes ----------------------------------------------------------------

def common_failures(run: Mapping) -> List[str]:
    """No timer fires before its deadline in cluster time; each client sees cluster time never
    go backwards; no member logged an error."""
    failures = []
    for f in fires_with_deadlines(run["records"]):
        if f["deadline"] is not None and f["ts"] < f["deadline"]:
            failures.append(f"timer {f['cid']} fired at cluster time {(f['deadline'] - f['ts']) / S:.3f} s "
                            "before its deadline")
    last: Dict[str, int] = {}
    back: Dict[str, List[int]] = {}
    for e in run["events"]:
        if e["kind"] == "reply":
            if e["ts"] < last.get(e["client"], e["ts"]):
                back.setdefault(e["client"], []).append(last[e["client"]] - e["ts"])
            last[e["client"]] = max(e["ts"], last.get(e["client"], e["ts"]))
    failures += [f"client {client}: cluster time went back {len(steps)} times, by up to {max(steps) / S:.3f} s"
                 for client, steps in sorted(back.items())]
    failures += [f"member {e['member']} logged: {e['line']}" for e in events(run, "member_error")]
    return failures


def session_failures(run: Mapping, allowed: Sequence[str] = ()) -> List[str]:
    """A session closed, or a client saw its session closed, other than those ``allowed``."""
    sids = session_ids(run)
    names = {sid: name for name, sid in sids.items()}
    allowed_sids = {sids.get(name) for name in allowed}
    closing = first_event(run, "closing")              # the driver closes its clients at the end
    until = closing["mono"] if closing else float("inf")
    failures = [f"session of client {names.get(c['sid'], c['sid'])} closed ({c['reason']}) at "
                f"t={c['mono'] / S - run['t0_mono'] / S:.2f} s" for c in applied(run["records"], "close")
                if c["sid"] not in allowed_sids and c["mono"] < until]
    failures += [f"client {e['client']} saw its session closed: {e['why']}" for e in events(run, "closed")
                 if e["client"] not in allowed]
    return failures


def warning_checks(run: Mapping, member: int, phase: str, expect: bool, behind_s: Tuple[float, float]) -> Result:
    """``member``'s WARNING and leader_clock_behind count in ``phase``: one, behind within
    ``behind_s`` (inclusive), if ``expect``; else none."""
    found = [e["behind_s"] for e in events(run, "warning", member=member, phase=phase)]
    counted = first_event(run, "counters", member=member, phase=phase)
    count = None if counted is None else counted.get("leader_clock_behind")
    figures = [f"member {member}: WARNINGs {found or 'none'}, leader_clock_behind {count}"]
    failures = []
    if expect:
        if not found:
            failures.append(f"member {member} ({phase}) logged no leader_clock_behind WARNING")
        elif not any(behind_s[0] <= b <= behind_s[1] for b in found):
            failures.append(f"member {member} ({phase}) warned {found} s behind, expected "
                            f"{behind_s[0]:.1f}..{behind_s[1]:.1f} s")
        if count is None or count < 1 or count != len(found):
            failures.append(f"member {member} ({phase}) counted leader_clock_behind {count}, "
                            f"logged {len(found)} WARNINGs")
    else:
        if found or count:
            failures.append(f"member {member} ({phase}) warned it leads behind cluster time "
                            f"({found}, counted {count}) where no warning is due")
    return figures, failures


def standstill(run: Mapping, after: int, before: int) -> Tuple[Optional[int], List[dict]]:
    """The replies received in (after, before) and the one cluster time they all carry (None
    if they differ or there are none)."""
    got = replies(run, after, before)
    stamps = {e["ts"] for e in got}
    return (stamps.pop() if len(stamps) == 1 else None), got


# -- the scenarios ------------------------------------------------------------------------------

def check_failover(run: Mapping, negative_control: bool = False) -> Result:
    """ahead / behind: member 0 (true clock) leads, timers are scheduled, member 0 is killed,
    a member whose clock is ``offset_s`` off takes over."""
    figures: List[str] = []
    failures = common_failures(run)
    kill = first_event(run, "kill", member=0)
    new = first_event(run, "leader", phase="failover")
    if kill is None or new is None:
        return figures, failures + ["the run did not reach a failover (no kill of member 0 or no new leader)"]
    member = new["member"]
    offset_s = next((e["offset_s"] for e in events(run, "start", member=member)), 0.0)
    t_over = takeover_mono(run, member, kill["mono"]) or new["mono"]
    t0 = run["t0_mono"]
    before = replies(run, before=kill["mono"])
    # what the old leader had committed (seen by a reply or a record) by the takeover
    last_stamp = max([e["ts"] for e in replies(run, before=t_over)]
                     + [r["ts"] for r in run["records"] if r["mono"] < kill["mono"]], default=None)
    after = replies(run, after=t_over)
    if not before or not after or last_stamp is None:
        return figures, failures + ["no ping replies before or after the failover: nothing to compare"]
    bad = [e for e in before if abs(skew_s(run, e["ts"], e["mono"])) > plan.CLOCK_MATCH_S]
    if bad:
        failures.append(f"{len(bad)} replies before the failover carry cluster time off real time by "
                        f"{skew_s(run, bad[0]['ts'], bad[0]['mono']):+.3f} s (member 0 has the true clock)")
    first_stamp = after[0]["ts"]
    # the new leader's clock (real + offset) reaches the first stamp at catch_up
    catch_up = first_stamp - int(offset_s * S) - run["epoch_ns"]
    figures.append(f"member 0 killed at t={(kill['mono'] - t0) / S:.2f} s; member {member} (clock {offset_s:+g} s) "
                   f"leads from t={(t_over - t0) / S:.2f} s; cluster time - real time "
                   f"{skew_s(run, before[-1]['ts'], before[-1]['mono']):+.3f} s before, "
                   f"{skew_s(run, after[-1]['ts'], after[-1]['mono']):+.3f} s at the end")
    if offset_s < 0:
        stood, during = standstill(run, t_over, catch_up - int(plan.CLOCK_MATCH_S * S))
        moved = next((e for e in after if e["ts"] > first_stamp), None)
        figures.append(f"cluster time stood at the last stamp for "
                       f"{((moved['mono'] if moved else after[-1]['mono']) - t_over) / S:.2f} s "
                       f"(expected {(catch_up - t_over) / S:.2f} s: until the new leader's clock reached it); "
                       f"{len(during)} replies in between")
        if during and stood is None:
            failures.append("cluster time moved while the new leader's clock was behind the last stamp")
        if not last_stamp <= first_stamp <= last_stamp + int(plan.CLOCK_MATCH_S * S):
            failures.append(f"the new leader's first stamp is {(first_stamp - last_stamp) / S:+.3f} s from the "
                            "last one before the failover: it did not stand still")
    settled = replies(run, after=max(t_over, catch_up) + int(plan.CLOCK_MATCH_S * S))
    off = [e for e in settled if abs(skew_s(run, e["ts"], e["mono"]) - offset_s) > plan.CLOCK_MATCH_S]
    if not settled:
        failures.append("no replies after cluster time caught up with the new leader's clock")
    elif off:
        failures.append(f"{len(off)} of {len(settled)} replies after the failover are not at the new leader's "
                        f"clock: cluster time - real time {skew_s(run, off[0]['ts'], off[0]['mono']):+.3f} s, "
                        f"expected {offset_s:+g} s")
    # timers scheduled before the kill
    fires = fires_with_deadlines(run["records"])
    run_end = run["events"][-1]["mono"]
    for cid, delay_ms in plan.FAILOVER_TIMERS:
        fire = next((f for f in fires if f["cid"] == cid), None)
        sched = next((s for s in applied(run["records"], "sched") if s["cid"] == cid), None)
        if sched is None:
            failures.append(f"timer {cid} was never scheduled")
            continue
        deadline = sched["deadline"]
        # when the new leader's clock (real + offset) reaches the deadline, in the driver's mono
        due_mono = max(t_over, deadline - int(offset_s * S) - run["epoch_ns"])
        if fire is None:
            if due_mono < run_end - int(plan.CLOCK_MATCH_S * S):
                failures.append(f"timer {cid} (+{delay_ms / 1000:g} s) never fired")
            else:
                figures.append(f"timer {cid} (+{delay_ms / 1000:g} s): not fired by the end of the run, as expected "
                               f"(due at t={(due_mono - t0) / S:.2f} s by the new leader's clock)")
            continue
        early_s = deadline / S - real_s(run, fire["mono"])
        if fire["mono"] < kill["mono"]:
            failures.append(f"timer {cid} fired before the failover")
        elif deadline <= first_stamp:
            figures.append(f"timer {cid} (+{delay_ms / 1000:g} s, due at the takeover): fired "
                           f"{(fire['mono'] - t_over) / S:.3f} s after it, {early_s:.2f} s early in real time")
            if fire["mono"] - t_over > plan.FIRE_AT_ONCE_S * S:
                failures.append(f"timer {cid} was due at the takeover but fired "
                                f"{(fire['mono'] - t_over) / S:.2f} s after it")
        else:
            figures.append(f"timer {cid} (+{delay_ms / 1000:g} s): fired {-early_s:+.2f} s from its deadline in real "
                           f"time (expected {-offset_s:+g} s), {(fire['ts'] - deadline) / S:.3f} s past it in cluster time")
            if abs(early_s - offset_s) > plan.CLOCK_MATCH_S or fire["ts"] - deadline > plan.TIMER_LATE_S * S:
                failures.append(f"timer {cid} fired {early_s:+.2f} s early in real time, "
                                f"{(fire['ts'] - deadline) / S:.3f} s late in cluster time: not when the new "
                                f"leader's clock ({offset_s:+g} s) reached its deadline")
            if offset_s < 0 and fire["mono"] < catch_up - int(plan.CLOCK_MATCH_S * S):
                failures.append(f"timer {cid} fired while cluster time stood still")
    chain = [f["mono"] for f in fires if f["cid"] == CHAIN_CID]
    gap = max((b - a for a, b in zip(chain, chain[1:])), default=0)
    figures.append(f"1 s timer chain: {len(chain)} fires, longest gap {gap / S:.2f} s")
    # sessions: the silent one is closed a session timeout after the takeover, no other
    sids = session_ids(run)
    quiet = next((c for c in applied(run["records"], "close") if c["sid"] == sids.get("quiet")), None)
    timeout_s = plan.SESSION_TIMEOUT_MS / 1000
    if quiet is None:
        failures.append("the silent client's session was never closed by the new leader")
    else:
        after_s = (quiet["mono"] - t_over) / S
        figures.append(f"silent client closed ({quiet['reason']}) {after_s:.2f} s after the takeover "
                       f"(session timeout {timeout_s:g} s); other sessions closed: "
                       f"{len(session_failures(run, ('quiet',)))}")
        if quiet["reason"] != "TIMEOUT" or not timeout_s - plan.SESSION_SLACK_S <= after_s <= timeout_s + 2:
            failures.append(f"the silent client's session closed ({quiet['reason']}) {after_s:.2f} s after the "
                            f"takeover, expected a TIMEOUT {timeout_s:g} s after it (silence judged on the new "
                            "leader's clock, from its takeover)")
    failures += session_failures(run, ("quiet",))
    expected_behind = (first_stamp / S - real_s(run, t_over) - offset_s)
    expect = (offset_s < 0) != negative_control
    f, bad = warning_checks(run, member, "failover", expect,
                            (expected_behind - plan.CLOCK_MATCH_S, expected_behind + plan.CLOCK_MATCH_S))
    return figures + f, failures + bad


def check_restart(run: Mapping, negative_control: bool = False) -> Result:
    """restart: phases minus (member 1 restarted -1 h, leads), plus (+1 h, leads), back
    (member 0, true clock, leads after it)."""
    figures: List[str] = []
    failures = common_failures(run) + session_failures(run)
    t0 = run["t0_mono"]
    fires = fires_with_deadlines(run["records"])
    hour = plan.HOUR_S
    for phase, member, offset_s in (("minus", 1, -hour), ("plus", 1, hour), ("back", 0, 0.0)):
        begin, end = first_event(run, "phase", name=phase), first_event(run, "phase_end", name=phase)
        led = first_event(run, "leader", phase=phase)
        if begin is None or end is None:
            failures.append(f"{phase}: the run did not reach this phase")
            continue
        if member == 1:
            caught = first_event(run, "caught_up", member=1, phase=phase)
            if caught is None:
                failures.append(f"{phase}: member 1, restarted with its clock {offset_s:+g} s off, did not catch "
                                f"up with the leader within {plan.RECOVER_WITHIN_S:g} s")
                continue
            figures.append(f"{phase}: member 1 restarted ({offset_s:+g} s) caught up in {caught['after_s']:.2f} s")
        if led is None or led["member"] != member:
            failures.append(f"{phase}: member {member} could not be made leader "
                            f"({(led or {}).get('why', 'no leader event')})")
            continue
        t_over = takeover_mono(run, member, begin["mono"]) or led["mono"]
        window = replies(run, t_over + int(0.3 * S), end["mono"])
        if len(window) < 2:
            failures.append(f"{phase}: fewer than 2 replies while member {member} led")
            continue
        skews = [skew_s(run, e["ts"], e["mono"]) for e in window]
        in_phase = [f for f in fires if t_over < f["mono"] < end["mono"]]
        sched = next((s for s in applied(run["records"], "sched") if s["cid"] == begin["timer"]), None)
        line = (f"{phase}: member {member} led t={(t_over - t0) / S:.2f}..{(end['mono'] - t0) / S:.2f} s; "
                f"cluster time - real time {skews[0]:+.3f} -> {skews[-1]:+.3f} s; timers fired: "
                f"{sorted({f['cid'] for f in in_phase}) or 'none'}")
        figures.append(line)
        if offset_s > 0:
            off = [s for s in skews if abs(s - offset_s) > plan.CLOCK_MATCH_S]
            if off:
                failures.append(f"{phase}: cluster time - real time {off[0]:+.3f} s, expected the leader's "
                                f"clock, {offset_s:+g} s")
            for cid, delay_ms in plan.RESTART_TIMERS:
                fire = next((f for f in fires if f["cid"] == cid), None)
                due = delay_ms / 1000 <= offset_s
                if due and (fire is None or not 0 <= fire["mono"] - t_over <= plan.FIRE_AT_ONCE_S * S):
                    failures.append(f"{phase}: timer {cid} (+{delay_ms / 60000:g} min) did not fire at the takeover "
                                    f"of a leader {offset_s:+g} s ahead")
                if not due and fire is not None:
                    failures.append(f"{phase}: timer {cid} (+{delay_ms / 60000:g} min) fired, beyond the skew")
            fire = next((f for f in fires if f["cid"] == begin["timer"]), None)
            if sched is None or fire is None or fire["ts"] - sched["deadline"] > plan.TIMER_LATE_S * S \
                    or abs((fire["mono"] - sched["mono"]) / S - plan.RESTART_PHASE_TIMER_MS / 1000) > plan.CLOCK_MATCH_S:
                failures.append(f"{phase}: timer {begin['timer']} (+{plan.RESTART_PHASE_TIMER_MS / 1000:g} s) did not "
                                "fire on time")
        else:
            stood, _ = standstill(run, t_over + int(0.3 * S), end["mono"])
            if stood is None:
                failures.append(f"{phase}: cluster time moved while member {member} led behind it")
            # what was due by the takeover's stamp fires at once; nothing may fire after that
            later = [f["cid"] for f in in_phase if f["mono"] > t_over + plan.FIRE_AT_ONCE_S * S]
            if later or any(f["cid"] == begin["timer"] for f in in_phase):
                failures.append(f"{phase}: timers {later or [begin['timer']]} fired while cluster time stood still")
        expect = (offset_s <= 0) != negative_control
        f, bad = warning_checks(run, member, phase, expect, (hour - 15, hour + plan.CLOCK_MATCH_S))
        figures += [f"{phase}: " + line for line in f]
        failures += bad
    return figures, failures


def check_step(run: Mapping, negative_control: bool = False) -> Result:
    """step: the leader's (member 0's) wall clock stepped by each ``shift`` event."""
    figures: List[str] = []
    failures = common_failures(run) + session_failures(run)
    t0 = run["t0_mono"]
    shifts = events(run, "shift", member=0)
    end = first_event(run, "end")
    if not shifts or end is None:
        return figures, failures + ["the run did not reach the steps"]
    base = replies(run, before=shifts[0]["mono"])
    if not base:
        return figures, failures + ["no ping replies before the step"]
    skew0 = statistics.median(skew_s(run, e["ts"], e["mono"]) for e in base)
    figures.append(f"bound {plan.STEP_BOUND_S:g} s on both: cluster time is the wall clock read once at the "
                   "node's start plus the monotonic clock, which no step moves; what is left is the duty "
                   "cycle, the reply's trip and the driver's 5 ms poll (the reply lag, ~5 ms, shows as "
                   "'off their deadlines')")
    fires = fires_with_deadlines(run["records"])
    bounds = [(s["mono"], nxt["mono"] if nxt else end["mono"], s["offset_s"])
              for s, nxt in zip(shifts, shifts[1:] + [None])]
    for start, stop, offset_s in bounds:
        window = replies(run, start, stop)
        devs = [skew_s(run, e["ts"], e["mono"]) - skew0 for e in window]
        worst = max(devs, key=abs, default=None)
        own = [r for r in run["records"] if r["m"] == 0 and start + S // 10 < r["mono"] < stop]
        walls = [(r["wall"] - r["mono"] - run["epoch_ns"]) / S for r in own]
        late = [(real_s(run, f["mono"]) - (f["deadline"] / S - skew0)) for f in fires
                if start < f["mono"] < stop and f["deadline"] is not None]
        figures.append(f"t={(start - t0) / S:5.2f}..{(stop - t0) / S:5.2f} s, leader's wall clock {offset_s:+g} s "
                       f"(its service read {statistics.median(walls) if walls else float('nan'):+.3f} s): "
                       f"{len(window)} replies, cluster time - real time moved at most "
                       f"{(worst or 0) * 1000:+.1f} ms; {len(late)} timer fires, "
                       f"{max(late, key=abs, default=0) * 1000:+.1f} ms off their deadlines at most (real time)")
        if not walls or abs(statistics.median(walls) - offset_s) > 1.0:
            failures.append(f"the shim did not shift the leader's wall clock to {offset_s:+g} s "
                            f"(its service read {walls[:1]}): the step was not tested")
        if not window:
            failures.append(f"no replies while the leader's clock was {offset_s:+g} s off")
        elif abs(worst) > plan.STEP_BOUND_S:
            failures.append(f"a step of the leader's wall clock to {offset_s:+g} s moved cluster time "
                            f"{worst:+.3f} s against real time")
        if any(abs(x) > plan.STEP_BOUND_S for x in late):
            failures.append(f"a timer fired {max(late, key=abs):+.3f} s off its deadline in real time while the "
                            f"leader's clock was {offset_s:+g} s off")
    chain = [f for f in fires if f["cid"] == CHAIN_CID and f["mono"] > shifts[0]["mono"]]
    span_s = (end["mono"] - shifts[0]["mono"]) / S
    if len(chain) < span_s - 1:
        failures.append(f"the 1 s timer chain fired {len(chain)} times in {span_s:.1f} s of steps")
    for cid, delay_ms in plan.STEP_TIMERS:
        fire = next((f for f in fires if f["cid"] == cid), None)
        if fire is None:
            failures.append(f"timer {cid} (+{delay_ms / 1000:g} s) never fired")
        else:
            figures.append(f"timer {cid} (+{delay_ms / 1000:g} s): {(fire['ts'] - fire['deadline']) / 1e6:.2f} ms past "
                           "its deadline in cluster time")
    changes = [r["m"] for r in run["records"] if r["ev"] == "role" and r.get("new") == "LEADER"
               and r["mono"] > shifts[0]["mono"]]
    figures.append(f"leader changes during the steps: {changes or 'none'}")
    for member in range(3):
        f, bad = warning_checks(run, member, "step", negative_control, (0, float("inf")))
        failures += bad
    return figures, failures


CHECKS = {"ahead": check_failover, "behind": check_failover, "restart": check_restart, "step": check_step}
