"""Swarm testing: many seeds, each a random history of faults, every invariant checked after
every event; then a liveness phase on a healed network that must converge in bounded time.

    python -m aeronpy.testing.swarm --seeds 1000            # seeds 0..999
    python -m aeronpy.testing.swarm --seed 4242             # replay one seed
    python -m aeronpy.testing.swarm --seeds 200 --bug commit_old_term_by_counting
    python -m aeronpy.testing.swarm --seeds 50 --bug restore_without_module_state

A failing seed prints the command that replays it. The fault schedule comes from a
generator seeded by the same seed as the cluster, so a seed names the whole run.

Besides the random faults, every seed runs two *targeted windows* (``targeted_windows``), each
once, at a time drawn from the seed (from a generator of their own, so the random faults draw
as before); each sets up the moment in which one durability rule matters:

* ``ack_window``: the leader is partitioned with just enough followers for a quorum, one of
  them armed to crash inside its next write (``crash_mid_ready``), and a message offered: that
  follower's acknowledgement completes the quorum, so it must not go out before its write
  (the ``acks_before_persist`` negative control commits an entry held by too few disks). The
  follower restarts a moment later.
* ``vote_window``: the leader hands over to one caught-up follower and at once to another
  (``transfer_leadership`` twice), so two candidates ask for votes in one term, and every
  other member crashes right after granting a vote and restarts at once
  (``crash_after_vote``): the second ballot asks a restarted voter, which must remember its
  vote (the ``vote_not_persisted`` negative control votes twice in a term).

Each window counts in the faults as run or skipped (no leader, too few members up or caught
up); the fault phase is lengthened by the time the windows take, so the random faults keep
theirs. ``targeted_windows=False`` leaves both out, so a seed runs as it did before they
existed.

``wipes=True`` (``--wipes``; off by default, so every seed keeps its course) adds data-dir
wipes: now and then a member is stopped, its disk replaced by an empty one (``SimCluster.wipe``)
and started again, only while ``_wipe_allowed`` holds (the rejoining mark's precondition,
written there), and a third window, ``wipe_window``: the operator walkthrough of
docs/operations.md ("Replacing a member's data dir"): an entry committed by a bare quorum
only, that quorum stopped, one of its members wiped and started with the stale rest. The
``rejoin_mark_off`` negative control (no mark) lets a stale member win with the wiped
member's vote and lose the entry.
"""
from __future__ import annotations

import argparse
import hashlib
import random
import struct
import sys
import time

from aeronpy.core import config as core_config
from aeronpy.core.quorum import quorum_size
from aeronpy.errors import ClusterClosedError, ClusterTimeoutError, NotConnectedError
from aeronpy.service import ClusteredService, Role
from aeronpy.testing.invariants import InvariantViolation
from aeronpy.testing.member import MEMBER_BUGS, member_bugs
from aeronpy.testing.sim import SimCluster
from aeronpy.testing.sim_snapshots import SNAPSHOT_BUGS, snapshot_bugs

FAULT_PHASE_MS = 2500          # simulated time with faults
LIVENESS_WITHIN_MS = 6000      # after healing, the cluster must converge within this
STEP_MS = (10, 250)            # pause between fault actions
OFFERS_PER_BURST_MAX = 6
TIMER_DELAY_MS = 50
REQUEST_TIMEOUT_S = (0.05, 0.4)
SNAPSHOT_LOG_BYTES = (0, 150, 300, 800)   # per seed; 0: admin snapshots only
# entries a member incarnation applies per Ready at most (0: all), as a ClusterNode whose apply
# budget runs out leaves the rest to later cycles (SimCluster apply_caps)
APPLY_CAPS = (0, 0, 1, 2, 5)
# how long a member's writes may wait for their sync while it steps on (SimCluster
# sync_lags_ms; the node's background syncer): 0 syncs at once
SYNC_LAGS_MS = (0, 0, 1, 5, 30)
WINDOW_PHASE = (0.2, 0.8)      # the targeted windows run in this part of the fault phase
WINDOW_SETTLE_MS = 1000        # a window waits up to this long for a leader with caught-up followers
VOTE_WINDOW_MS = 250           # voters stay armed to crash after voting at most this long
ACK_WINDOW_MS = 250            # a follower stays armed to crash inside its next write at most this long
_PLAIN_ENTRY = 15              # an entry type of the core's range: replicated, skipped by the services
WIPE_CHANCE = 0.05             # with wipes: per fault step, the chance of a wipe (if allowed)
WIPE_WINDOW_MS = 1500          # the wiped member and the stale ones alone this long


class RecordingService(ClusteredService):
    """Keeps every message applied, with its cluster time, and echoes it back. A message
    starting with ``t`` also schedules a timer (correlation id = its session's message count)
    TIMER_DELAY_MS of cluster time later; the timer's firing offers a service message."""

    # The name members compare (and leaders write into every term's first entry): fixed, so
    # ``python -m aeronpy.testing.swarm`` (where this module is ``__main__``) replays a seed
    # exactly as run_seed ran it; the class's own name there made entries, snapshot sizes
    # and so the whole run differ from the run the replay command was printed for.
    service_name = "aeronpy.testing.swarm:RecordingService"

    def __init__(self):
        self.applied = []
        self.timers_scheduled = []
        self.timers_fired = []
        self.cluster = None

    def on_start(self, cluster, snapshot):
        self.cluster = cluster
        if snapshot is not None:        # replace the whole state (also on install-snapshot)
            self.applied, self.timers_scheduled, self.timers_fired = _decode_recording(snapshot.read())

    def on_take_snapshot(self, writer):
        writer.write(_encode_recording(self.applied, self.timers_scheduled, self.timers_fired))

    def state_hash(self) -> str:
        return hashlib.blake2b(_encode_recording(self.applied, self.timers_scheduled, self.timers_fired),
                               digest_size=16).hexdigest()

    def on_session_message(self, session, timestamp_ns, message):
        body = bytes(message)
        self.applied.append((timestamp_ns, body))
        if session is not None:
            session.offer(b"re:" + body)
            if body.startswith(b"t"):
                correlation_id = len(self.applied)
                self.timers_scheduled.append(correlation_id)
                self.cluster.schedule_timer(correlation_id, timestamp_ns + TIMER_DELAY_MS * 1_000_000)

    def on_timer_event(self, correlation_id, timestamp_ns):
        self.timers_fired.append(correlation_id)
        self.cluster.offer(b"timer%d" % correlation_id)


_COUNT = struct.Struct("<I")
_APPLIED = struct.Struct("<qI")
_ID = struct.Struct("<q")


def _encode_recording(applied, scheduled, fired) -> bytes:
    out = [_COUNT.pack(len(applied))]
    for timestamp_ns, body in applied:
        out.append(_APPLIED.pack(timestamp_ns, len(body)))
        out.append(body)
    for ids in (scheduled, fired):
        out.append(_COUNT.pack(len(ids)))
        out.extend(_ID.pack(i) for i in ids)
    return b"".join(out)


def _decode_recording(data: bytes) -> tuple:
    view = memoryview(data)
    pos = 0

    def take(st):
        nonlocal pos
        values = st.unpack_from(view, pos)
        pos += st.size
        return values
    applied = []
    for _ in range(take(_COUNT)[0]):
        timestamp_ns, n = take(_APPLIED)
        applied.append((timestamp_ns, bytes(view[pos:pos + n])))
        pos += n
    scheduled = [take(_ID)[0] for _ in range(take(_COUNT)[0])]
    fired = [take(_ID)[0] for _ in range(take(_COUNT)[0])]
    if pos != len(view):
        raise ValueError(f"{len(view) - pos} trailing bytes in a RecordingService snapshot")
    return applied, scheduled, fired


def two_services():
    return [RecordingService(), RecordingService()]


class SeedResult:
    def __init__(self, seed: int, ok: bool, error: str = "", events: int = 0, faults: dict | None = None,
                 sim_ms: float = 0.0, entries: int = 0, trace: str = "", fast_steps: tuple = (0, 0)):
        self.seed = seed
        self.ok = ok
        self.error = error
        self.events = events
        self.faults = faults or {}
        self.sim_ms = sim_ms
        self.entries = entries
        self.trace = trace                  # the simulator's trace digest (SimCluster.trace_hash)
        self.fast_steps = fast_steps        # (AppendResponses, AppendEntries) aeronpy._steppath took

    def __repr__(self) -> str:
        return f"SeedResult(seed={self.seed}, ok={self.ok}, events={self.events}, error={self.error[:200]!r})"


def replay_command(seed: int, bugs=(), wipes: bool | str = False) -> str:
    extra = "".join(f" --bug {b}" for b in sorted(bugs))
    if wipes:
        extra += " --wipes" if wipes is True or wipes == "in_step" else f" --wipes {wipes}"
    return f"python -m aeronpy.testing.swarm --seed {seed}{extra}"


def run_seed(seed: int, fault_phase_ms: float = FAULT_PHASE_MS, liveness_within_ms: float = LIVENESS_WITHIN_MS,
             bugs=(), mid_ready_crashes: bool = True, fast_step_path: bool = True,
             targeted_windows: bool = True, wipes: bool | str = False,
             state_digests: bool = False) -> SeedResult:
    """One swarm run; never raises for a cluster failure (the result says what broke).

    ``mid_ready_crashes=False`` leaves out the crash_mid_ready fault and its random draw, so a
    seed runs exactly as it did before that fault existed (regression seeds found then).
    ``targeted_windows=False`` leaves out the ack and vote windows (module docstring), so a
    seed runs as it did before they existed.
    ``fast_step_path=False`` steps every message through ``RaftCore.step`` (the differential
    test of aeronpy._steppath compares the two runs' traces).
    ``wipes=True`` (or ``"in_step"``) adds data-dir wipes under the documented precondition
    and the wipe window; ``"non_empty"`` wipes under a weaker one (``_wipe_allowed``).
    ``state_digests=True``: members compare snapshot checksums through the log, as nodes do."""
    unknown = set(bugs) - core_config.KNOWN_BUGS - set(SNAPSHOT_BUGS) - set(MEMBER_BUGS)
    if unknown:
        raise ValueError(f"unknown bug switch(es): {sorted(unknown)}")
    saved = set(core_config._BUGS)
    core_config._BUGS.clear()
    core_config._BUGS.update(b for b in bugs if b in core_config.KNOWN_BUGS)
    try:
        with snapshot_bugs([b for b in bugs if b in SNAPSHOT_BUGS]), \
                member_bugs([b for b in bugs if b in MEMBER_BUGS]):
            return _run_seed(seed, fault_phase_ms, liveness_within_ms, mid_ready_crashes, fast_step_path,
                             targeted_windows, wipes, state_digests)
    finally:
        core_config._BUGS.clear()
        core_config._BUGS.update(saved)


class Traffic:
    """The client side of a run: what was offered to which service, and what came back.

    Every reply must be the echo of the message its correlation id names, at most once; at
    the end every accepted message must have been applied exactly once, in offer order."""

    def __init__(self, client):
        self.client = client
        self.offered = {0: [], 1: []}         # service id -> bodies accepted, in offer order
        self.body_of: dict = {}               # correlation id -> body
        self.replies = 0
        self.requests = 0
        self.request_timeouts = 0
        self.errors: list = []

    def _accepted(self, correlation_id: int, body: bytes, service_id: int) -> None:
        self.offered[service_id].append(body)
        self.body_of[correlation_id] = body

    def offer(self, body: bytes, service_id: int) -> int:
        correlation_id = self.client.offer(body, service_id)
        if correlation_id > 0:
            self._accepted(correlation_id, body, service_id)
        return correlation_id

    def request(self, body: bytes, service_id: int, timeout_s: float) -> None:
        self.requests += 1
        next_id = self.client.core._next_correlation_id
        try:
            reply = self.client.request(body, service_id, timeout_s)
        except ClusterTimeoutError:
            self.request_timeouts += 1          # offered; may still be applied, never twice
            self._accepted(next_id, body, service_id)
            return
        except (ClusterClosedError, NotConnectedError) as exc:
            self.errors.append(f"request failed: {exc!r}")
            return
        self._accepted(next_id, body, service_id)
        self._check_reply(next_id, reply)

    def poll(self) -> None:
        self.client.poll_egress(lambda cid, payload: self._check_reply(cid, bytes(payload)))

    def _check_reply(self, correlation_id: int, payload: bytes) -> None:
        self.replies += 1
        body = self.body_of.get(correlation_id)
        if body is None or payload != b"re:" + body:
            self.errors.append(f"reply {payload!r} to correlation id {correlation_id}, which offered {body!r}")


def _run_seed(seed: int, fault_phase_ms: float, liveness_within_ms: float,
              mid_ready_crashes: bool = True, fast_step_path: bool = True,
              targeted_windows: bool = True, wipes: bool | str = False,
              state_digests: bool = False) -> SeedResult:
    plan = random.Random(f"swarm-plan-{seed}")
    members = plan.choice((3, 3, 3, 5, 5))
    file_sync = plan.choice(("data", "full", "none"))
    max_append_bytes = plan.choice((64 * 1024, 64 * 1024, 600, 100, 1))   # 1: one entry per append
    pre_vote = plan.random() < 0.75
    max_inflight_appends = plan.choice((64, 4, 1))
    check_quorum = pre_vote or plan.random() < 0.5
    snapshot_log_bytes = plan.choice(SNAPSHOT_LOG_BYTES)
    snapshots_to_keep = plan.choice((1, 1, 2))
    sim = SimCluster(members=members, seed=seed, service=two_services, file_sync=file_sync,
                     max_append_bytes=max_append_bytes, max_inflight_appends=max_inflight_appends,
                     pre_vote=pre_vote, check_quorum=check_quorum, snapshot_log_bytes=snapshot_log_bytes,
                     snapshots_to_keep=snapshots_to_keep, snapshot_chunk_bytes=plan.choice((128, 512, 4096)),
                     snapshot_write_ms=plan.choice((0.0, 2.0, 20.0)),
                     fast_step_path=fast_step_path, apply_caps=APPLY_CAPS, state_digests=state_digests,
                     sync_lags_ms=SYNC_LAGS_MS)
    faults = {"members": members, "file_sync": file_sync, "max_append_bytes": max_append_bytes,
              "pre_vote": pre_vote, "snapshot_log_bytes": snapshot_log_bytes, "snapshots_to_keep": snapshots_to_keep,
              "partition": 0, "cut": 0, "heal": 0, "crash": 0, "power_fail": 0, "restart": 0,
              "network": 0, "transfer": 0, "offers": 0, "requests": 0, "admin_snapshot": 0,
              "corrupt_snapshot": 0, "crash_mid_ready": 0, "mid_ready_crashes": mid_ready_crashes}
    windows = None
    if targeted_windows:
        faults.update({"ack_window": 0, "ack_window_skipped": 0, "vote_window": 0, "vote_window_skipped": 0})
        windows = random.Random(f"swarm-windows-{seed}")   # apart: the plan's draws stay as they were
    wiper = None
    if wipes:
        wipes = "in_step" if wipes is True else wipes
        if wipes not in WIPE_PRECONDITIONS:
            raise ValueError(f"wipes: expected True or one of {WIPE_PRECONDITIONS}, got {wipes!r}")
        faults.update({"wipes": wipes, "wipe": 0, "wipe_refused": 0})
        if targeted_windows:
            faults.update({"wipe_window": 0, "wipe_window_skipped": 0})
        wiper = random.Random(f"swarm-wipes-{seed}")         # apart too
    result = _drive(seed, sim, plan, faults, members, fault_phase_ms, liveness_within_ms, windows, wiper)
    result.trace = sim.trace_hash()
    result.fast_steps = tuple(sim.fast_steps)
    return result


def _drive(seed: int, sim: SimCluster, plan: random.Random, faults: dict, members: int,
           fault_phase_ms: float, liveness_within_ms: float, windows: random.Random | None = None,
           wiper: random.Random | None = None) -> SeedResult:
    """The run itself: faults, then healing and the final checks; never raises."""
    try:
        traffic = Traffic(sim.client())
        sim.network(**_random_network(plan))
        end_ns = fault_phase_ms * 1_000_000
        due = []                          # (start ns, window), soonest first
        if windows is not None:
            names = list(_WINDOWS) + (["wipe_window"] if wiper is not None else [])
            due = sorted((windows.uniform(*WINDOW_PHASE) * end_ns, name) for name in names)
        while sim.now_ns < end_ns:
            sim.run_for(plan.uniform(*STEP_MS))
            _random_action(sim, plan, traffic, faults)
            if wiper is not None and wiper.random() < WIPE_CHANCE:
                started = sim.now_ns
                _random_wipe(sim, wiper, faults, faults["wipes"])
                end_ns += sim.now_ns - started
            traffic.poll()
            while due and sim.now_ns >= due[0][0]:
                started = sim.now_ns
                _ALL_WINDOWS[due.pop(0)[1]](sim, windows, traffic, faults)
                traffic.poll()
                end_ns += sim.now_ns - started    # the random faults keep their whole phase
        # ---- liveness: heal everything, then the cluster must converge
        sim.heal()
        sim.network(drop=0.0, duplicate=0.0, delay_ms=(1.0, 1.0))
        sim.disarm_crashes()
        for m in range(members):
            if not sim.alive(m):
                sim.restart(m)
        for service_id in (0, 1):
            traffic.offer(b"final", service_id)
            faults["offers"] += 1
        client = traffic.client
        if not sim.run_until(lambda: _converged(sim, client), liveness_within_ms):
            return SeedResult(seed, False, f"{sim.describe()}: no convergence within {liveness_within_ms}ms "
                              f"after healing: {_state(sim)} client pending={client.pending} "
                              f"state={client.core.state.name}", sim.events, faults, sim.now_ns / 1e6)
        traffic.poll()
        sim.check()
        faults.update(sim.snapshot_totals)
        faults["crashed_mid_ready"] = sim.crashed_mid_ready
        faults["crashed_after_vote"] = sim.crashed_after_vote
        faults["apply_capped"] = sim.apply_capped
        faults["lagged_syncs"] = sim.lagged_syncs
        if wiper is not None:
            faults["rejoins_completed"] = sim.rejoins_completed
            faults["votes_again_after_wipe"] = sim.checker.votes_again_after_wipe
        problem = _final_problem(sim, traffic)
        if problem:
            return SeedResult(seed, False, f"{sim.describe()}: {problem}", sim.events, faults, sim.now_ns / 1e6)
        return SeedResult(seed, True, "", sim.events, faults, sim.now_ns / 1e6, sim.core(0).commit_index)
    except InvariantViolation as exc:
        return SeedResult(seed, False, str(exc), sim.events, faults, sim.now_ns / 1e6)
    except Exception as exc:       # the stack itself raised (e.g. a member cannot recover)
        return SeedResult(seed, False, f"{sim.describe()}: {type(exc).__name__}: {exc}", sim.events, faults,
                          sim.now_ns / 1e6)


_SETTINGS = ("members", "max_append_bytes", "snapshot_log_bytes", "snapshots_to_keep", "wipes")   # not counts


def _final_problem(sim: SimCluster, traffic: Traffic) -> str:
    """End-to-end exactly-once after convergence; '' when all is well."""
    if traffic.errors:
        return "client saw: " + "; ".join(traffic.errors[:3])
    for service_id in (0, 1):
        services = [sim.service(m, service_id) for m in range(sim.member_count)]
        first = services[0]
        for other in services[1:]:
            if (other.applied, other.timers_fired) != (first.applied, first.timers_fired):
                return (f"service {service_id} diverged: {[len(s.applied) for s in services]} messages, "
                        f"{[len(s.timers_fired) for s in services]} timers")
        from_clients = [body for _ts, body in first.applied if not body.startswith(b"timer")]
        if from_clients != traffic.offered[service_id]:
            return (f"service {service_id} applied {len(from_clients)} client messages, "
                    f"{len(traffic.offered[service_id])} were offered: not exactly once in order")
        if sorted(first.timers_fired) != sorted(first.timers_scheduled) or \
                len(set(first.timers_fired)) != len(first.timers_fired):
            return f"service {service_id} timers: scheduled {first.timers_scheduled}, fired {first.timers_fired}"
        from_timers = sorted(body for _ts, body in first.applied if body.startswith(b"timer"))
        if from_timers != sorted(b"timer%d" % c for c in first.timers_fired):
            return f"service {service_id}: the timers' service messages were not applied once each"
    return ""


def _random_network(plan) -> dict:
    lo = plan.uniform(0.2, 2.0)
    return {"drop": plan.choice((0.0, 0.0, 0.01, 0.05, 0.2)), "duplicate": plan.choice((0.0, 0.01, 0.05)),
            "delay_ms": (lo, lo + plan.choice((0.0, 2.0, 10.0, 40.0)))}


def _random_action(sim: SimCluster, plan, traffic: Traffic, faults: dict) -> None:
    n = sim.member_count
    roll = plan.random()
    dead = [m for m in range(n) if not sim.alive(m)]
    live = [m for m in range(n) if sim.alive(m)]
    if roll < 0.27:
        for _ in range(plan.randint(1, OFFERS_PER_BURST_MAX)):
            kind = b"t" if plan.random() < 0.2 else b"m"
            traffic.offer(kind + b"%d" % faults["offers"], plan.choice((0, 0, 1)))
            faults["offers"] += 1
    elif roll < 0.30:
        traffic.request(b"r%d" % faults["requests"], plan.choice((0, 1)), plan.uniform(*REQUEST_TIMEOUT_S))
        faults["requests"] += 1
    elif roll < 0.42:
        members = list(range(n))
        plan.shuffle(members)
        cut = plan.randint(1, n - 1)
        sim.partition(set(members[:cut]), set(members[cut:]))
        faults["partition"] += 1
    elif roll < 0.47:
        src, dst = plan.sample(range(n), 2)
        sim.cut(src, dst)
        faults["cut"] += 1
    elif roll < 0.60:
        sim.heal()
        faults["heal"] += 1
    elif roll < 0.70 and live:
        victim = sim.leader() if plan.random() < 0.5 and sim.leader() is not None else plan.choice(live)
        if sim.disks[victim].file_sync != "none" and plan.random() < 0.4:
            sim.power_fail(victim)
            faults["power_fail"] += 1
        elif faults["mid_ready_crashes"] and plan.random() < 0.3:
            sim.crash_mid_ready(victim)       # at its next write, after what it sends first
            faults["crash_mid_ready"] += 1
        else:
            sim.crash(victim)
            faults["crash"] += 1
    elif roll < 0.82 and dead:
        member = plan.choice(dead)
        if sim.snapshot_options.snapshots_to_keep >= 2 and not faults["corrupt_snapshot"] \
                and len(sim.disks[member].archive.recorded_snapshots()) >= 2 and plan.random() < 0.5:
            sim.corrupt_snapshot(member)     # one disk fault per run: recovery falls back
            faults["corrupt_snapshot"] += 1
        sim.restart(member)
        faults["restart"] += 1
    elif roll < 0.90:
        sim.network(**_random_network(plan))
        faults["network"] += 1
    elif roll < 0.95:
        if sim.transfer_leadership():
            faults["transfer"] += 1
    elif roll < 0.97:
        if sim.snapshot():
            faults["admin_snapshot"] += 1
    # else: quiet period


# ------------------------------------------------------------------ targeted windows
def _ack_window(sim: SimCluster, rng: random.Random, traffic: Traffic, faults: dict) -> None:
    """The leader and just enough caught-up followers for a quorum, cut off from the rest; one
    of those followers armed to crash inside its next write, after what it may send first; a
    message offered. Its acknowledgement completes the quorum: sent before its write, the
    leader commits an entry that too few disks hold. The follower restarts a moment later."""
    n = sim.member_count
    need = quorum_size(n) - 1                 # with the leader's own copy: a quorum
    with _Window(sim, faults):
        picked = _leader_and_caught_up(sim, rng, faults, "ack_window", need)
        if picked is None:
            return
        leader, chosen = picked
        armed = chosen[0]
        group = {leader, *chosen}
        sim.partition(group, set(range(n)) - group)
        sim.crash_mid_ready(armed)
        lead = sim.core(leader)
        last = lead.log.last_index
        traffic.offer(b"a%d" % faults["offers"], rng.choice((0, 1)))
        faults["offers"] += 1
        faults["ack_window"] += 1
        if not sim.run_until(lambda: not sim.alive(armed) or lead.log.last_index > last, 30.0) \
                and sim.leader() == leader:
            # the client's window is full or its session elsewhere: an entry of the core's
            # range (the cluster layer skips it) gives the leader something to replicate
            sim.propose(leader, _PLAIN_ENTRY, b"ack-window")
        sim.run_until(lambda: not sim.alive(armed), ACK_WINDOW_MS)
        if sim.alive(armed):
            sim.members[armed].crash_at_next_write = False    # nothing came to write: disarmed
        else:
            sim.run_for(rng.uniform(50.0, 100.0))    # what it sent has arrived (delays < ~42 ms)
            if not sim.alive(armed):
                sim.restart(armed)
                faults["restart"] += 1


class _Window:
    """What every targeted window does first and last: no earlier random crash arm goes off
    inside it, members that are down restart, partitions heal and links stop losing and
    duplicating datagrams (the hand-overs, ballots and appends it aims must arrive, once;
    delays and reordering stay); at the end the seed's link settings come back."""

    def __init__(self, sim: SimCluster, faults: dict):
        self.sim = sim
        self.faults = faults

    def __enter__(self):
        sim = self.sim
        sim.disarm_crashes()
        for m in range(sim.member_count):
            if not sim.alive(m):
                sim.restart(m)
                self.faults["restart"] += 1
        sim.heal()
        link = sim.net.default
        self.saved = (link.drop, link.duplicate, (link.delay_lo_ns / 1e6, link.delay_hi_ns / 1e6))
        sim.network(0.0, 0.0, self.saved[2])
        return self

    def __exit__(self, *exc):
        drop, duplicate, delay_ms = self.saved
        self.sim.network(drop, duplicate, delay_ms)
        return False


def _caught_up_followers(sim: SimCluster) -> list:
    leader = sim.leader()
    if leader is None:
        return []
    lead = sim.core(leader)
    if lead.leader_state is None or lead.leader_state.transfer_target is not None:
        return []
    last = lead.log.last_index
    return sorted(m for m, pr in lead.leader_state.progress.items()
                  if pr.match == last and sim.alive(m) and sim.core(m).term == lead.term
                  and sim.core(m).role == Role.FOLLOWER and sim.core(m).leader_id == leader)


def _leader_and_caught_up(sim: SimCluster, rng: random.Random, faults: dict, window: str,
                          need: int, settled=lambda: True):
    """Wait (WINDOW_SETTLE_MS) for a leader with ``need`` caught-up followers (and ``settled``);
    the leader and a random ``need`` of them, or None, counted as ``<window>_skipped``."""
    if not sim.run_until(lambda: len(_caught_up_followers(sim)) >= need and settled(), WINDOW_SETTLE_MS):
        faults[f"{window}_skipped"] += 1
        return None
    return sim.leader(), rng.sample(_caught_up_followers(sim), need)


def _vote_window(sim: SimCluster, rng: random.Random, traffic: Traffic, faults: dict) -> None:
    """Two candidates in one term: the leader hands over to two caught-up followers at once
    (neither hears the other). Each candidate's links out are cut right after its ballot went
    out, so no leader's entries reach a voter in between. Every other member is armed to crash
    right after it grants a vote and to restart at once: the second ballot reaches a restarted
    voter, which must refuse it, having voted in the term already (unless the vote was never
    saved)."""
    n = sim.member_count
    with _Window(sim, faults):
        picked = _leader_and_caught_up(sim, rng, faults, "vote_window", 2)
        if picked is None:
            return
        leader, pair = picked
        term = sim.core(leader).term
        sim.cut(pair[0], pair[1])             # else one's ballot may reach the other before its
        sim.cut(pair[1], pair[0])             # hand-over does: one candidate only
        for m in range(n):
            if m not in pair and sim.alive(m):
                sim.crash_after_vote(m)
        faults["transfer"] += sim.transfer_leadership(pair[0])
        if sim.leader() == leader:
            faults["transfer"] += sim.transfer_leadership(pair[1])
        faults["vote_window"] += 1
        end_ns = sim.now_ns + VOTE_WINDOW_MS * 1_000_000

        def left_ms() -> float:
            return max(0.0, (end_ns - sim.now_ns) / 1e6)
        waiting = set(pair)

        def campaigned() -> list:
            return [m for m in waiting if sim.alive(m) and sim.core(m).term > term]
        while waiting and sim.run_until(lambda: bool(campaigned()), left_ms()):
            for m in campaigned():            # its ballot is out, and nothing else of it gets out
                waiting.discard(m)
                for other in range(n):
                    if other != m:
                        sim.cut(m, other)
        # until every armed voter has voted, then time for the other ballot to arrive
        sim.run_until(lambda: not sim.armed_after_vote, left_ms())
        sim.run_for(VOTE_WINDOW_MS / 2)
        sim.disarm_vote_crashes()
        sim.heal()


# ------------------------------------------------------------------ data-dir wipes
WIPE_PRECONDITIONS = ("in_step", "non_empty")


def _wipe_allowed(sim: SimCluster, victim: int, precondition: str = "in_step") -> bool:
    """When one wipe is safe with the rejoining mark.

    The wipe takes the victim's copies and its term and votes. Raft's up-to-date lemma needs
    every election's quorum to meet every commit's quorum in a member that still holds the
    entry. While the victim withholds its vote (and, since the fix found here, its own
    candidacy), an election needs a quorum of the *others*, which meets any commit quorum
    minus the victim ((n+1)/2 + (n-1)/2 > n-1). That needs ``non_empty``: no other member
    marked, every other log or snapshot non-empty (two empty members elect each other).
    The victim's term is gone too, so the first leader it hears may be a deposed one, which
    it followed in the old term and helped commit there (``--wipes non_empty`` seed 3298; the
    wipe window on seeds 320, 732, 1268, 1611, 2276, 2684 before it waited for stale leaders
    to step down), and a new leader's commit index lifted the mark early (seed 2661). Since
    RaftCore.rejoin_follows and the term rule of rejoin_caught_up, ``non_empty`` runs clean
    too (0 of 5,000 seeds failed). ``in_step`` is the documented guarantee: every member up
    and in step with one leader (term, log end and commit; nothing uncommitted), so no
    deposed leader exists and every other member holds all the victim held; later faults
    (crashes, partitions, power failures) are the random ones."""
    n = sim.member_count
    if any(sim.rejoining(m) for m in range(n)):
        return False
    if precondition == "non_empty":
        return all(sim.disks[m].written_index or sim.disks[m].snapshot_index for m in range(n) if m != victim)
    leader = sim.leader()
    if leader is None:
        return False
    lead = sim.core(leader)
    last = lead.log.last_index
    if lead.commit_index != last:
        return False
    for m in range(n):
        core = sim.core(m)
        if core is None or core.term != lead.term or core.leader_id != leader \
                or core.log.last_index != last or core.commit_index != last:
            return False
    return True


def _random_wipe(sim: SimCluster, rng: random.Random, faults: dict, precondition: str) -> None:
    """The operator's replacement of a lost disk: stop the member, empty its data dir,
    start it (docs/operations.md). ``in_step`` waits (as an operator would, network healed,
    members up) until the cluster is in step; ``non_empty`` wipes at once if allowed."""
    victim = rng.randrange(sim.member_count)
    if precondition == "in_step":
        with _Window(sim, faults):
            if not sim.run_until(lambda: _wipe_allowed(sim, victim), WINDOW_SETTLE_MS):
                faults["wipe_refused"] += 1
                return
            _wipe(sim, victim, faults)
        return
    if not _wipe_allowed(sim, victim, precondition):
        faults["wipe_refused"] += 1
        return
    _wipe(sim, victim, faults)


def _wipe(sim: SimCluster, victim: int, faults: dict) -> None:
    if sim.alive(victim):
        sim.crash(victim)
    sim.wipe(victim)
    sim.restart(victim)
    faults["wipe"] += 1


def _wipe_window(sim: SimCluster, rng: random.Random, traffic: Traffic, faults: dict) -> None:
    """The walkthrough: a leader and just enough caught-up followers for a quorum, cut off
    from the rest; an entry committed by them alone; then they stop, one of them is wiped and
    started again with the stale members only (a quorum with it). Its vote must not elect a
    stale member, which lacks the entry: no leader until the others come back."""
    n = sim.member_count
    need = quorum_size(n) - 1
    with _Window(sim, faults):
        picked = _leader_and_caught_up(sim, rng, faults, "wipe_window", need,
                                       settled=lambda: not any(sim.rejoining(m) for m in range(n)))
        if picked is None:
            return
        leader, chosen = picked
        victim = chosen[0]
        group = {leader, *chosen}
        stale = set(range(n)) - group
        sim.partition(group, stale)
        lead = sim.core(leader)
        index = sim.propose(leader, _PLAIN_ENTRY, b"wipe-window")
        if not index or not sim.run_until(lambda: lead.commit_index >= index
                                          and sim.core(victim).commit_index >= index, 200.0) \
                or not _wipe_allowed(sim, victim, "non_empty"):
            faults["wipe_window_skipped"] += 1
            return
        # a stale member that still thinks it leads: the window waits for check-quorum to
        # step it down, as it did before RaftCore.rejoin_follows (seeds keep their course)
        if not sim.run_until(lambda: all(sim.core(m).role != Role.LEADER for m in stale), WINDOW_SETTLE_MS):
            faults["wipe_window_skipped"] += 1
            return
        for m in sorted(group):
            sim.crash(m)
        sim.wipe(victim)
        sim.restart(victim)
        sim.heal()
        faults["wipe_window"] += 1
        sim.run_for(WIPE_WINDOW_MS)          # without the mark a stale member leads by now
        for m in sorted(group - {victim}):
            sim.restart(m)
        faults["restart"] += len(group) - 1


_WINDOWS = {"ack_window": _ack_window, "vote_window": _vote_window}
_ALL_WINDOWS = {**_WINDOWS, "wipe_window": _wipe_window}


def _converged(sim: SimCluster, client) -> bool:
    leader = sim.leader()
    if leader is None or client.pending:
        return False
    module = sim.module(leader)
    if not module.leader_ready or len(module.timers) or module.pending_service_messages:
        return False
    lead = sim.core(leader)
    last = lead.log.last_index
    if lead.commit_index != last:
        return False
    for m in range(sim.member_count):
        core = sim.core(m)
        if core is None or core.commit_index != last or core.applied_index != last or core.log.last_index != last:
            return False
    return True


def _state(sim: SimCluster) -> str:
    return "; ".join(repr(sim.core(m)) if sim.alive(m) else f"member {m} down" for m in range(sim.member_count))


def run_swarm(seeds, bugs=(), fault_phase_ms: float = FAULT_PHASE_MS, out=None, wipes: bool | str = False) -> list:
    """Run the given seeds; returns the failing results (printing each with its replay command)."""
    failures = []
    for seed in seeds:
        result = run_seed(seed, fault_phase_ms=fault_phase_ms, bugs=bugs, wipes=wipes)
        if not result.ok:
            failures.append(result)
            if out is not None:
                print(f"FAIL seed {seed}: {result.error}\n  replay: {replay_command(seed, bugs, wipes)}",
                      file=out)
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aeronpy.testing.swarm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run (from --start)")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--seed", type=int, default=None, help="run (replay) this one seed only")
    parser.add_argument("--bug", action="append", default=[],
                        choices=sorted(core_config.KNOWN_BUGS | set(SNAPSHOT_BUGS) | set(MEMBER_BUGS)),
                        help="switch on a deliberate bug (negative control)")
    parser.add_argument("--fault-ms", type=float, default=FAULT_PHASE_MS, help="simulated ms of the fault phase")
    parser.add_argument("--wipes", nargs="?", const="in_step", default=False, choices=WIPE_PRECONDITIONS,
                        help="also wipe members' data dirs (the rejoining mark's faults; off by default), "
                             "under the documented precondition (in_step) or a weaker one (non_empty)")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    started = time.perf_counter()
    failures = []
    events = 0
    count = 0
    totals: dict = {}
    for seed in seeds:
        result = run_seed(seed, fault_phase_ms=args.fault_ms, bugs=args.bug, wipes=args.wipes)
        count += 1
        events += result.events
        for key, value in result.faults.items():
            if isinstance(value, int) and not isinstance(value, bool) and key not in _SETTINGS:
                totals[key] = totals.get(key, 0) + value
        if not result.ok:
            failures.append(result)
            print(f"FAIL seed {seed}: {result.error}\n  faults: {result.faults}\n"
                  f"  replay: {replay_command(seed, args.bug, args.wipes)}", flush=True)
        elif args.seed is not None:
            print(f"ok seed {seed}: {result.events} events, {result.sim_ms:.0f} simulated ms, "
                  f"{result.entries} entries committed, faults {result.faults}")
    wall = time.perf_counter() - started
    print(f"{count} seeds, {len(failures)} failed, {events} events, {wall:.1f}s wall"
          f" ({events / wall if wall else 0:.0f} events/s)")
    if count > 1:
        print("totals: " + ", ".join(f"{key} {value}" for key, value in totals.items()))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
