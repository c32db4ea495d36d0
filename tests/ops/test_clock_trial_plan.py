"""bench/clock_trial's pure parts on hand-made runs: a tiny model of cluster time (the leader
stamps max(last stamp, its clock); timers fire once the stamp reaches them; pings every 250 ms)
writes the events and records a real run would, with knobs that break one promise each, which
the checks must catch. No cluster, no shim."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

from clock_trial import checks, plan  # noqa: E402

S = 1_000_000_000
EPOCH = 1_700_000_000 * S          # driver's wall clock - monotonic clock
TICK = S // 20
CHAIN = checks.CHAIN_CID


class Model:
    """Cluster time as aeronpy makes it, member clocks as offsets from real time.
    ``bug``: "follow-clock" stamps the leader's clock even backwards; "session-on-skew" closes a
    silent session at once when the new leader's clock differs; "timer-early" fires a timer
    half a second before its deadline; "late-fire" fires due timers 2 s after a takeover."""

    def __init__(self, bug=None):
        self.bug, self.mono, self.stamp = bug, 10 * S, 0
        self.leader, self.offset = None, 0.0
        self.timers, self.events, self.records = {}, [], []
        self.next_ping, self.took_over, self.silent_since = 10 * S, None, None
        self.run = {"epoch_ns": EPOCH, "t0_mono": self.mono, "events": self.events, "records": self.records}

    def event(self, kind, **kw):
        self.events.append(dict(kw, kind=kind, mono=self.mono))

    def record(self, ev, member=None, **kw):
        member = self.leader if member is None else member
        wall = self.mono + EPOCH + int(self.member_offset.get(member, 0.0) * S)
        self.records.append(dict(kw, ev=ev, ts=self.stamp, m=member, mono=self.mono, wall=wall, role="LEADER"))

    member_offset = {}

    def clock(self):
        return self.mono + EPOCH + int(self.offset * S)

    def new_stamp(self):
        self.stamp = self.clock() if self.bug == "follow-clock" else max(self.stamp, self.clock())
        return self.stamp

    def start(self, member, offset_s):
        self.member_offset = {**self.member_offset, member: offset_s}
        self.event("start", member=member, offset_s=offset_s)

    def lead(self, member, phase, quiet=False):
        self.leader, self.offset = member, self.member_offset[member]
        self.took_over = self.mono
        self.record("role", new="LEADER")
        behind = self.stamp - self.clock()
        if behind > S:
            self.event("warning", member=member, phase=phase, behind_s=round(behind / S, 1))
            self.count = 1
        else:
            self.count = 0
        self.event("leader", member=member, phase=phase)
        self.new_stamp()
        if self.bug == "late-fire":
            self.hold_until = self.mono + 2 * S

    def schedule(self, cid, delay_ms):
        self.new_stamp()
        self.timers[cid] = self.stamp + delay_ms * 1_000_000
        self.record("sched", cid=cid, deadline=self.timers[cid])

    def advance(self, seconds, quiet_sid=None):
        for _ in range(int(round(seconds * S / TICK))):
            self.mono += TICK
            self.new_stamp()
            if getattr(self, "hold_until", 0) <= self.mono:
                early = S // 2 if self.bug == "timer-early" else 0
                for cid, deadline in sorted(self.timers.items()):
                    if self.stamp + early >= deadline:
                        del self.timers[cid]
                        self.record("timer", cid=cid)
                        if cid == CHAIN:
                            self.timers[cid] = self.stamp + checks.CHAIN_NS
            if self.mono >= self.next_ping:
                self.next_ping += int(plan.PING_INTERVAL_S * S)
                for client in ("p0", "p1"):
                    self.event("reply", client=client, ts=self.stamp)
            if quiet_sid is not None and self.took_over is not None and self.quiet_open:
                limit = 0 if self.bug == "session-on-skew" and self.offset else plan.SESSION_TIMEOUT_MS * 1_000_000
                if self.mono - self.took_over >= limit + TICK:
                    self.quiet_open = False
                    self.record("close", sid=quiet_sid, reason="TIMEOUT")

    def collect(self, phase, member):
        self.event("counters", member=member, phase=phase, leader_clock_behind=self.count)


def failover_run(offset_s, bug=None):
    m = Model(bug)
    m.start(0, 0.0)
    m.start(1, offset_s)
    m.start(2, offset_s)
    m.lead(0, "first")
    for sid, name in enumerate(("p0", "p1", "keep", "quiet", "cmd"), 1):
        m.event("connect", client=name, session=sid)
    m.quiet_open = True
    m.advance(1.0)
    m.schedule(CHAIN, 1000)
    for cid, delay_ms in plan.FAILOVER_TIMERS:
        m.schedule(cid, delay_ms)
    m.advance(plan.KILL_AFTER_TIMERS_S)
    m.event("kill", member=0)
    m.mono += 3 * S // 10
    m.lead(1, "failover")
    m.advance(plan.FAILOVER_WATCH_S, quiet_sid=4)
    m.collect("failover", 1)
    return m.run


@pytest.mark.parametrize("offset_s", [plan.SKEW_S, -plan.SKEW_S])
def test_a_failover_as_documented_holds(offset_s):
    figures, failures = checks.check_failover(failover_run(offset_s))
    assert failures == []
    text = "\n".join(figures)
    if offset_s > 0:
        assert "timer 100 (+3 s, due at the takeover): fired 0.050 s after it" in text
        assert "timer 102 (+14 s): fired -8.00 s from its deadline in real time" in text
    else:
        assert "cluster time stood at the last stamp" in text
        assert "timer 101 (+6 s): fired +8.00 s from its deadline in real time" in text
        assert "timer 102 (+14 s): not fired by the end of the run, as expected" in text
        assert "member 1: WARNINGs [7.7], leader_clock_behind 1" in text
    assert "silent client closed (TIMEOUT) 5.05 s after the takeover" in text


@pytest.mark.parametrize("offset_s, bug, expected", [
    (-plan.SKEW_S, "follow-clock", "the new leader's first stamp is -7.650 s from the last one"),
    (-plan.SKEW_S, "follow-clock", "client p0: cluster time went back 31 times, by up to 7.650 s"),
    (plan.SKEW_S, "session-on-skew", "the silent client's session closed (TIMEOUT) 0.05 s after the takeover"),
    (-plan.SKEW_S, "timer-early", "timer 100 fired at cluster time 0.500 s before its deadline"),
    (plan.SKEW_S, "late-fire", "timer 100 was due at the takeover but fired 2."),
])
def test_a_failover_that_breaks_a_promise_fails(offset_s, bug, expected):
    _, failures = checks.check_failover(failover_run(offset_s, bug))
    assert any(expected in f for f in failures), failures


def test_failover_warning_expectations_and_the_negative_control():
    behind = failover_run(-plan.SKEW_S)
    behind["events"] = [e for e in behind["events"] if e["kind"] != "warning"]
    _, failures = checks.check_failover(behind)
    assert "member 1 (failover) logged no leader_clock_behind WARNING" in failures
    assert "member 1 (failover) counted leader_clock_behind 1, logged 0 WARNINGs" in failures
    _, failures = checks.check_failover(failover_run(-plan.SKEW_S), negative_control=True)
    assert any("where no warning is due" in f for f in failures)
    _, failures = checks.check_failover(failover_run(plan.SKEW_S), negative_control=True)
    assert "member 1 (failover) logged no leader_clock_behind WARNING" in failures
    wrong = failover_run(-plan.SKEW_S)
    next(e for e in wrong["events"] if e["kind"] == "warning")["behind_s"] = 2.0
    assert any("warned [2.0] s behind, expected 7." in f for f in checks.check_failover(wrong)[1])


def test_failover_sessions_other_than_the_silent_one_must_stay_open():
    run = failover_run(plan.SKEW_S)
    run["records"].append(dict(run["records"][-1], ev="close", sid=3, reason="TIMEOUT"))
    run["events"].append(dict(kind="closed", client="p1", why="ClusterClosedError()", mono=run["events"][-1]["mono"]))
    failures = checks.check_failover(run)[1]
    assert any(f.startswith("session of client keep closed (TIMEOUT)") for f in failures)
    # the driver closing its clients at the end closes their sessions: not a failure
    ended = failover_run(plan.SKEW_S)
    ended["events"].append(dict(kind="closing", mono=ended["events"][-1]["mono"]))
    ended["records"].append(dict(ended["records"][-1], ev="close", sid=1, reason="CLIENT_ACTION", mono=ended["events"][-1]["mono"] + 1))
    assert checks.check_failover(ended)[1] == []
    assert "client p1 saw its session closed: ClusterClosedError()" in failures
    assert checks.check_failover({"epoch_ns": EPOCH, "t0_mono": 0, "events": [], "records": []})[1] == [
        "the run did not reach a failover (no kill of member 0 or no new leader)"]


def true_clocks_model(timers, bug=None):
    """As scenarios._start_true_clocks: every clock true, member 0 leads, p0, p1 and cmd
    connect, cmd starts the chain and schedules ``timers``."""
    m = Model(bug)
    for member in range(3):
        m.start(member, 0.0)
    m.lead(0, "first")
    for sid, name in enumerate(("p0", "p1", "cmd"), 1):
        m.event("connect", client=name, session=sid)
    m.advance(1.0)
    m.schedule(CHAIN, 1000)
    for cid, delay_ms in timers:
        m.schedule(cid, delay_ms)
    return m


def restart_run(bug=None, skip_warning=None):
    m = true_clocks_model(plan.RESTART_TIMERS, bug)
    m.advance(1.5)
    for phase, member, offset_s, cid in (("minus", 1, -plan.HOUR_S, 300), ("plus", 1, plan.HOUR_S, 301),
                                         ("back", 0, 0.0, 302)):
        m.event("phase", name=phase, member=member, timer=cid)
        if member == 1:
            m.event("kill", member=1)
            if phase == "plus":                 # member 2 (true clock) leads while 1 restarts
                m.lead(2, "before-plus")
            m.advance(1.0)
            m.start(1, offset_s)
            m.advance(1.0)
            m.event("caught_up", member=1, phase=phase, after_s=1.0)
        m.lead(member, phase)
        if phase == skip_warning:
            m.events.pop(-2)
        m.schedule(cid, plan.RESTART_PHASE_TIMER_MS)
        m.advance(plan.RESTART_PHASE_S)
        m.collect(phase, member)
        m.event("phase_end", name=phase)
    return m.run


def test_restarts_as_documented_hold_and_broken_ones_fail():
    figures, failures = checks.check_restart(restart_run())
    assert failures == [], failures
    text = "\n".join(figures)
    assert "timers fired: [1, 100, 101, 301]" in text and "minus: member 1: WARNINGs [3600.0]" in text
    assert "back: member 0: WARNINGs [3600.0], leader_clock_behind 1" in text
    failures = checks.check_restart(restart_run(bug="follow-clock"))[1]
    assert "minus: cluster time moved while member 1 led behind it" in failures
    assert "back: cluster time moved while member 0 led behind it" in failures
    failures = checks.check_restart(restart_run(skip_warning="back"))[1]
    assert "member 0 (back) logged no leader_clock_behind WARNING" in failures
    failures = checks.check_restart(restart_run(), negative_control=True)[1]
    assert "member 1 (minus) warned it leads behind cluster time ([3600.0], counted 1) where no warning is due" in failures
    assert "member 1 (plus) logged no leader_clock_behind WARNING" in failures
    run = restart_run()
    run["events"] = [e for e in run["events"] if not (e["kind"] == "caught_up" and e["phase"] == "plus")]
    assert any("member 1, restarted with its clock +3600 s off, did not catch up" in f
               for f in checks.check_restart(run)[1])


def step_run(follow_step=False, shim_took=True):
    """Member 0 leads; its wall clock steps per plan.STEP_SHIFTS. ``follow_step``: cluster time
    follows the stepped wall clock (what an unanchored clock would do)."""
    m = true_clocks_model(plan.STEP_TIMERS)
    elapsed = 0.0
    for at_s, offset_s in plan.STEP_SHIFTS:
        m.advance(at_s - elapsed)
        elapsed = at_s
        m.event("shift", member=0, offset_s=offset_s)
        if shim_took:
            m.member_offset = {**m.member_offset, 0: offset_s}
        if follow_step:
            m.offset = offset_s
    m.advance(plan.STEP_WATCH_S - elapsed)
    m.event("end")
    for member in range(3):
        m.collect("step", member)
    return m.run


def test_steps_that_do_not_move_cluster_time_hold():
    figures, failures = checks.check_step(step_run())
    assert failures == [], failures
    assert figures[0].startswith("bound 0.25 s on both")
    assert "leader's wall clock +3600 s (its service read +3600.000 s)" in figures[1]
    assert "moved at most +0.0 ms" in figures[1]


def test_steps_that_move_cluster_time_or_did_not_take_fail():
    failures = checks.check_step(step_run(follow_step=True))[1]
    assert any("a step of the leader's wall clock to +3600 s moved cluster time +3600.0" in f for f in failures)
    assert any(f.startswith("a timer fired -") and "off its deadline in real time" in f for f in failures)
    failures = checks.check_step(step_run(shim_took=False))[1]
    assert any("the shim did not shift the leader's wall clock to +3600 s" in f for f in failures)
    failures = checks.check_step(step_run(), negative_control=True)[1]
    assert "member 0 (step) logged no leader_clock_behind WARNING" in failures


def test_warning_lines_are_read_from_a_node_log():
    log = ("2026-01-01 10:00:00,000 INFO    aeronpy.cluster.module: this member leads with its clock 9.0 s behind cluster time\n"
           "2026-01-01 10:00:01,000 WARNING aeronpy.cluster.module: this member leads with its clock 7.7 s behind "
           "cluster time (the last entry's): cluster time stands still\n"
           "2026-01-01 10:00:02,000 WARNING aeronpy.cluster.module: this member leads with its clock 3600 s behind cluster time\n")
    assert checks.parse_warnings(log) == [7.7, 3600.0]
    assert checks.parse_warnings("") == []


def test_a_replayed_entry_counts_when_it_was_first_applied():
    recs = [{"ev": "timer", "cid": 5, "ts": 7, "m": 0, "mono": 100}, {"ev": "timer", "cid": 5, "ts": 7, "m": 1, "mono": 90},
            {"ev": "timer", "cid": 5, "ts": 7, "m": 1, "mono": 5000}]        # member 1 restarted: a replay
    assert [r["mono"] for r in checks.applied(recs, "timer")] == [90]


def test_scenario_names():
    assert plan.scenario_names(" ahead, step ") == ["ahead", "step"]
    assert plan.scenario_names(plan.DEFAULT_SCENARIOS) == ["ahead", "behind", "restart", "step"]
    with pytest.raises(ValueError, match="unknown scenario 'sideways'"):
        plan.scenario_names("ahead,sideways")
    with pytest.raises(ValueError, match="no scenario"):
        plan.scenario_names(" , ")
