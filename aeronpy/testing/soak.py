"""A soak of a real 3-process cluster under random faults, with end-of-run checks.

``python -m aeronpy.testing.soak --seconds 120 --seed 42`` (or ``tests/soak``, opt-in with
``AERONPY_LONG=1``) starts a 3-member :class:`~aeronpy.testing.process_cluster.ProcessCluster`
hosting the ``CounterService`` (service 0) and the ``KeyValueService`` (service 1) of
:mod:`aeronpy.testing.services`, with a small ``snapshot_log_bytes`` and ``segment_bytes`` so
snapshots, log purges and snapshot installs happen during the run. While client threads send
requests, a fault loop driven by ``random.Random(seed)`` SIGKILLs the leader or a follower and
restarts it, SIGSTOPs a member for a moment, kills two members at once (the cluster is
unavailable) and restarts both, or takes a snapshot with ``aeronpy tool snapshot``. Then it
heals everything, waits for all three members to be up and caught up, takes a final snapshot
and stops the cluster with ``aeronpy tool shutdown`` and checks (:func:`evaluate`):

1. exactly-once: every member's final count equals the acknowledged increments plus at most
   the indeterminate ones, no correlation id is answered twice, and every reply (the running
   total after that increment) is distinct;
2. linearizability of the key-value history (timeouts indeterminate; a compare-and-set
   recorded with the value the service reported the key held, so a failed one is a read of
   it; a final read of every key appended), with
   :func:`aeronpy.testing.linearizability.check_kv_history`;
3. the three members' service states agree (the records their services write at
   ``on_terminate``);
4. no member exited except by the soak's own kills and the final shutdown (exit status 0),
   and no member's ``errors.log`` or log has an error.

With ``--slow-disks`` (``file_sync`` data or full only) every member runs under the slow-sync
shim (:mod:`aeronpy.testing.slowdisk`; gcc needed) and the fault loop also slows disks for 1-4 s:
the leader's (syncs 20 ms-1 s, or 2.5 s, past the 2 s after which a leader hands over), one or
both followers' (20-600 ms), or one member's with a kill of it or of the leader in the middle of
the window and a restart (the restarted member's disk stays slow until the window ends); every
disk is fast again at the window's end. The summary adds the members' ``slow_log_syncs``,
``leader_sync_stalls``, ``sync_stalls`` and ``held_messages_dropped`` counters (summed over their runs) and the
sync calls the shim slowed.

The fault sequence and delays come from the seed; thread timing does not, so a re-run with the
same seed replays the same faults, not the same interleaving. Every wait is bounded.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

from aeronpy.testing.services import CounterService, KeyValueService, _write_hash_file
from aeronpy.testing.slowdisk import ShimUnavailable, Slowness

_MS = 1_000_000
_ONE = struct.Struct("<q")
COUNTER_SERVICE_ID = 0
KV_SERVICE_ID = 1
SERVICES = ["aeronpy.testing.soak:SoakCounterService", "aeronpy.testing.soak:SoakKeyValueService"]

# Failover in about a second with room for a loaded 2-core machine (as tests/e2e); small
# snapshot interval and segments, so snapshots, purges and snapshot installs happen.
CLUSTER_CONFIG = {
    "election_timeout_ms": 300,
    "heartbeat_interval_ms": 50,
    "leader_heartbeat_timeout_ms": 600,
    "session_timeout_ms": 10_000,
    "snapshot_log_bytes": 64 * 1024,
    "segment_bytes": 64 * 1024,
    "snapshots_to_keep": 1,
}
KEYS = tuple(f"k{i}" for i in range(16))
COUNTER_CLIENTS = 2
KV_CLIENTS = 2
COUNTER_WINDOW = 8                   # <= reply_cache_messages (256)
COUNTER_RATE_PER_CLIENT = 250.0      # increments/s per client, so the nodes keep some CPU
KV_RATE_PER_CLIENT = 40.0            # ops/s per client: keeps the history checkable
KV_TIMEOUT_S = 4.0                   # longer than a failover: most ops survive one
RERUN_HINT = ("re-run: python -m aeronpy.testing.soak --seconds {seconds:g} --seed {seed}{options}"
              "   (or AERONPY_LONG=1 AERONPY_SOAK_SECONDS={seconds:g} AERONPY_SOAK_SEED={seed}"
              " python -m pytest -s -p no:warnings tests/soak -k soak_under; the pytest form takes"
              " --file-sync as AERONPY_SOAK_FILE_SYNC, --slow-disks as -k slow_disks, and has no"
              " --kv-timeout/--overlap)")

# errors.log entries or log lines that the faults the soak injects may legitimately cause.
# Empty: any error is reported.
EXPECTED_ERRORS: Tuple[str, ...] = ()
_LOG_ERROR = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")


# ---------------------------------------------------------------------------------- services
def _write_service_record(cluster, service, record: dict) -> None:
    """``$AERONPY_HASH_DIR/member-<m>-s<service id>.json``, for every service (service 0
    included, so the soak reads one name pattern)."""
    if cluster is not None:
        _write_hash_file(cluster, service.state_hash(), record,
                         f"member-{cluster.member_id}-s{cluster.service_id}.json")


class SoakCounterService(CounterService):
    """``CounterService`` whose final record names its service id."""

    def on_terminate(self, cluster):
        _write_service_record(cluster, self, {"total": self.total, "applied": self.applied})


class SoakKeyValueService(KeyValueService):
    """``KeyValueService`` whose final record names its service id and holds its data."""

    def on_terminate(self, cluster):
        _write_service_record(cluster, self, {"data": self.data})


# ---------------------------------------------------------------------------------- outcome
@dataclasses.dataclass
class CounterOp:
    client: int
    session: int
    correlation_id: int
    invoke_ns: int
    complete_ns: Optional[int] = None
    replies: List[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class SoakOutcome:
    """Everything :func:`evaluate` checks; built by :func:`run_soak`, or by hand in tests."""
    seed: int
    seconds: float
    counter_ops: List[CounterOp] = dataclasses.field(default_factory=list)
    kv_history: list = dataclasses.field(default_factory=list)     # linearizability.Operation
    member_records: Dict[int, Dict[int, dict]] = dataclasses.field(default_factory=dict)  # member -> service -> record
    unexpected_exits: List[str] = dataclasses.field(default_factory=list)
    final_exit_codes: Dict[int, Optional[int]] = dataclasses.field(default_factory=dict)
    member_errors: Dict[int, List[str]] = dataclasses.field(default_factory=dict)
    log_errors: Dict[int, List[str]] = dataclasses.field(default_factory=dict)
    harness_problems: List[str] = dataclasses.field(default_factory=list)
    client_errors: List[str] = dataclasses.field(default_factory=list)
    faults: List[dict] = dataclasses.field(default_factory=list)
    stats: dict = dataclasses.field(default_factory=dict)
    members: int = 3
    linearizability_timeout_s: float = 120.0


def _unexpected(text: str) -> bool:
    return not any(re.search(p, text) for p in EXPECTED_ERRORS)


def evaluate(outcome: SoakOutcome) -> List[str]:
    """The failed checks of a run, each saying what was expected and what was seen ([]: pass)."""
    from aeronpy.testing.linearizability import Outcome, check_kv_history

    failures: List[str] = []
    members = range(outcome.members)

    # 4 (first: an unexpected exit explains most other failures)
    for what in outcome.unexpected_exits:
        failures.append(f"member death: expected members to exit only by the soak's SIGKILLs "
                        f"and the final shutdown; saw {what}")
    for m in members:
        code = outcome.final_exit_codes.get(m, "missing")
        if code != 0:
            failures.append(f"final shutdown: expected member {m} to exit with status 0 after "
                            f"'aeronpy tool shutdown'; saw {code!r}")
    for m, errors in sorted(outcome.member_errors.items()):
        bad = [e for e in errors if _unexpected(e)]
        if bad:
            failures.append(f"errors.log: expected no errors in member {m}'s errors.log; saw "
                            f"{len(bad)}: " + " | ".join(bad[:5]))
    for m, lines in sorted(outcome.log_errors.items()):
        bad = [e for e in lines if _unexpected(e)]
        if bad:
            failures.append(f"node log: expected no ERROR/CRITICAL/Traceback lines in member {m}'s "
                            f"log; saw {len(bad)}: " + " | ".join(bad[:5]))
    for problem in outcome.harness_problems:
        failures.append(f"harness: {problem}")
    for error in outcome.client_errors:
        failures.append(f"client: expected no client errors other than timeouts; saw {error}")

    # 1. exactly-once
    acked = [op for op in outcome.counter_ops if op.replies]
    indeterminate = [op for op in outcome.counter_ops if not op.replies]
    if not acked:       # else every count check below holds vacuously
        failures.append(f"exactly-once: expected acknowledged increments; saw none of "
                        f"{len(outcome.counter_ops)} sent")
    doubled = [op for op in acked if len(op.replies) != 1]
    if doubled:
        failures.append(f"exactly-once: expected one reply per increment; "
                        f"{len(doubled)} answered more than once, e.g. "
                        + ", ".join(f"client {o.client} session {o.session} cid {o.correlation_id}: "
                                    f"{o.replies}" for o in doubled[:5]))
    totals = [op.replies[0] for op in acked]
    if len(set(totals)) != len(totals):
        seen, dups = set(), set()
        for t in totals:
            (dups if t in seen else seen).add(t)
        failures.append(f"exactly-once: expected every increment's reply (the running total) to "
                        f"be unique; {len(totals) - len(seen)} repeated, e.g. {sorted(dups)[:10]}")
    counter_records = {m: outcome.member_records.get(m, {}).get(COUNTER_SERVICE_ID) for m in members}
    for m, record in counter_records.items():
        if record is None:
            failures.append(f"exactly-once: expected member {m} to record its final count at "
                            f"shutdown; no record")
            continue
        total, applied = record.get("total"), record.get("applied")
        if not (len(acked) <= total <= len(acked) + len(indeterminate)):
            failures.append(f"exactly-once: expected member {m}'s final count to be between the "
                            f"{len(acked)} acknowledged increments and that plus the "
                            f"{len(indeterminate)} indeterminate ones "
                            f"({len(acked)}..{len(acked) + len(indeterminate)}); saw {total}")
        if total != applied:
            failures.append(f"exactly-once: expected member {m}'s total to equal its applied "
                            f"message count (every message adds 1); saw total {total}, applied {applied}")
        if totals and max(totals) > total:
            failures.append(f"exactly-once: expected no reply above member {m}'s final count "
                            f"{total}; saw a reply of {max(totals)}")

    # 3. members agree
    for service_id, name in ((COUNTER_SERVICE_ID, "counter"), (KV_SERVICE_ID, "key-value")):
        records = {m: outcome.member_records.get(m, {}).get(service_id) for m in members}
        present = {m: r for m, r in records.items() if r is not None}
        if len(present) != outcome.members:
            failures.append(f"agreement: expected a final {name} record from every member; "
                            f"have members {sorted(present)}")
        states = {m: json.dumps({k: v for k, v in r.items() if k != "member_id"}, sort_keys=True)
                  for m, r in present.items()}
        if len(set(states.values())) > 1:
            shown = {m: (r.get("commit_index"), r.get("state_hash")) for m, r in present.items()}
            failures.append(f"agreement: expected every member's {name} service to end in the same "
                            f"state at the same index; saw (commit index, state hash) {shown}"
                            + ("" if len(set(shown.values())) > 1 else
                               " (equal hashes, but the records differ: " + "; ".join(
                                   f"member {m}: {states[m][:200]}" for m in sorted(states)) + ")"))

    # 2. linearizability (with a read of every key after the run; the final state must match)
    if outcome.kv_history:
        if not any(op.client_id != FINAL_READER and not op.indeterminate for op in outcome.kv_history):
            failures.append("linearizability: expected completed operations by the key-value "
                            "clients (else the check holds vacuously); saw none")
        result = check_kv_history(outcome.kv_history, timeout_s=outcome.linearizability_timeout_s)
        if result.outcome is Outcome.NOT_LINEARIZABLE:
            failures.append(f"linearizability: expected the key-value history "
                            f"({len(outcome.kv_history)} ops) to be linearizable; {result}")
        elif result.outcome is Outcome.UNKNOWN:
            failures.append(f"linearizability: expected a verdict; the checker's budget ran out: {result}")
        kv_final = {m: (outcome.member_records.get(m, {}).get(KV_SERVICE_ID) or {}).get("data")
                    for m in members}
        last_reads = {}
        for op in outcome.kv_history:
            if op.client_id == FINAL_READER and not op.indeterminate:
                last_reads[op.key] = op.result
        for m, data in kv_final.items():
            if data is None:
                continue
            diff = {k: (v, data.get(k)) for k, v in last_reads.items() if data.get(k) != v}
            if diff:
                failures.append(f"agreement: expected member {m}'s final key-value data to match "
                                f"the final reads through the leader; (read, member has): {diff}")
    else:
        failures.append("linearizability: expected a key-value history; it is empty")
    return failures


FINAL_READER = 10_000        # client id of the final read of every key


# ---------------------------------------------------------------------------------- clients
def _client_config():
    from aeronpy.client import ClientConfig

    return ClientConfig(resend_timeout_ns=250 * _MS, keepalive_interval_ns=200 * _MS,
                        connect_attempt_timeout_ns=200 * _MS)


def _connect(endpoints: str, timeout_s: float = 5.0):
    from aeronpy.client import ClusterClient

    return ClusterClient.connect(endpoints, timeout_s=timeout_s, config=_client_config())


class _ClientThread(threading.Thread):
    def __init__(self, index: int, endpoints: str, hard_deadline: float):
        super().__init__(daemon=True, name=f"soak-client-{index}")
        self.index = index
        self.endpoints = endpoints
        self.hard_deadline = hard_deadline
        self.stop_sending = threading.Event()
        self.errors: List[str] = []
        self.sessions = 0
        self.connect_failures = 0

    def _connect_or_wait(self):
        """A new client, or None after a short wait when no session could be opened."""
        from aeronpy.errors import NotConnectedError
        try:
            client = _connect(self.endpoints)
        except NotConnectedError:
            self.connect_failures += 1
            time.sleep(0.2)
            return None
        self.sessions += 1
        return client


class CounterClient(_ClientThread):
    """Offers increments of 1 to service 0, at most COUNTER_WINDOW awaiting a reply, paced;
    after ``stop_sending`` drains until ``drain_deadline``. A session the cluster closed is
    abandoned (its unanswered increments stay indeterminate) and a new one opened."""

    def __init__(self, index, endpoints, hard_deadline):
        super().__init__(index, endpoints, hard_deadline)
        self.ops: Dict[Tuple[int, int], CounterOp] = {}
        self.pending: Dict[int, CounterOp] = {}     # cid -> op, this session
        self.drain_deadline = hard_deadline
        self.late_replies = 0
        self.unknown_replies = 0
        self._lock = threading.Lock()

    def _on_reply(self, correlation_id: int, payload) -> None:
        now = time.monotonic_ns()
        op = self.ops.get((self.sessions, correlation_id))
        if op is None:
            self.unknown_replies += 1
            return
        try:
            value = _ONE.unpack(bytes(payload))[0]
        except struct.error:
            self.errors.append(f"counter client {self.index}: reply of {len(payload)} bytes")
            return
        if op.complete_ns is None:
            op.complete_ns = now
        op.replies.append(value)
        self.pending.pop(correlation_id, None)

    def snapshot_ops(self) -> List[CounterOp]:
        with self._lock:
            return [dataclasses.replace(op, replies=list(op.replies)) for op in self.ops.values()]

    def run(self) -> None:
        from aeronpy.cluster.codes import BACK_PRESSURED, CLOSED
        from aeronpy.errors import AeronpyError

        client = None
        next_send = time.monotonic()
        interval = 1.0 / COUNTER_RATE_PER_CLIENT
        try:
            while time.monotonic() < self.hard_deadline:
                draining = self.stop_sending.is_set()
                if draining and (not self.pending or time.monotonic() > self.drain_deadline):
                    break
                if client is None:
                    if draining:
                        break
                    client = self._connect_or_wait()
                    if client is None:
                        continue
                    self.pending = {}
                    idle = client.backoff()
                try:
                    now = time.monotonic()
                    while (not draining and len(self.pending) < COUNTER_WINDOW and now >= next_send):
                        cid = client.offer(_ONE.pack(1), COUNTER_SERVICE_ID)
                        if cid > 0:
                            op = CounterOp(self.index, self.sessions, cid, time.monotonic_ns())
                            with self._lock:
                                self.ops[(self.sessions, cid)] = op
                            self.pending[cid] = op
                            next_send = max(next_send + interval, now - 0.5)
                        elif cid == BACK_PRESSURED:
                            break
                        elif cid == CLOSED:
                            raise _SessionLost("offer returned CLOSED")
                        else:                  # NOT_CONNECTED: a moment during failover
                            break
                    with self._lock:
                        work = client.poll_egress(self._on_reply)
                    for cid, error in client.take_rejections():
                        self.errors.append(f"counter client {self.index}: cid {cid} rejected: {error!r}")
                        self.pending.pop(cid, None)
                    idle(work)
                except _SessionLost as exc:
                    self._abandon(client, str(exc))
                    client = None
                except AeronpyError as exc:
                    self._abandon(client, repr(exc))
                    client = None
        except Exception as exc:      # reported by the soak
            self.errors.append(f"counter client {self.index}: {exc!r}")
        finally:
            if client is not None:
                client.close()

    def _abandon(self, client, why: str) -> None:
        self.lost_sessions = getattr(self, "lost_sessions", []) + [(time.monotonic(), why, len(self.pending))]
        self.pending = {}
        try:
            client.close()
        except Exception:
            pass


class _SessionLost(Exception):
    pass


class KVClient(_ClientThread):
    """Sends read / write / cas requests on random keys to service 1, one at a time, paced;
    a timeout or a lost session is recorded as indeterminate. Replies are recorded by
    :func:`~aeronpy.testing.linearizability.complete_kv_request`: a cas with the key's value
    the service reports (``Operation.current``), which the check holds a failed cas to."""

    def __init__(self, index, endpoints, hard_deadline, recorder, rng: random.Random,
                 timeout_s: float = KV_TIMEOUT_S):
        super().__init__(index, endpoints, hard_deadline)
        self.timeout_s = timeout_s
        self.recorder = recorder
        self.rng = rng
        self.timeouts = 0
        self.completed = 0

    def run(self) -> None:
        from aeronpy.errors import AeronpyError, ClusterTimeoutError
        from aeronpy.testing.linearizability import complete_kv_request, random_kv_request

        client = None
        seen: dict = {}
        i = 0
        interval = 1.0 / KV_RATE_PER_CLIENT
        try:
            while not self.stop_sending.is_set() and time.monotonic() < self.hard_deadline:
                if client is None:
                    client = self._connect_or_wait()
                    if client is None:
                        continue
                started = time.monotonic()
                i += 1
                key = self.rng.choice(KEYS)
                value = f"c{self.index}-{i}"              # every written value is unique
                kind, args, request = random_kv_request(self.rng, key, value, seen)
                token = self.recorder.invoke(self.index, kind, args)
                try:
                    raw = client.request(json.dumps(request).encode(), KV_SERVICE_ID, timeout_s=self.timeout_s)
                except ClusterTimeoutError:
                    self.recorder.timeout(token)
                    self.timeouts += 1
                    continue
                except AeronpyError as exc:           # closed session, not connected
                    self.recorder.timeout(token)
                    self.timeouts += 1
                    self.lost_sessions = getattr(self, "lost_sessions", []) + [(time.monotonic(), repr(exc))]
                    client.close()
                    client = None
                    continue
                complete_kv_request(self.recorder, token, kind, key, value, json.loads(raw), seen)
                self.completed += 1
                rest = interval - (time.monotonic() - started)
                if rest > 0:
                    time.sleep(rest)
        except Exception as exc:
            self.errors.append(f"kv client {self.index}: {exc!r}")
        finally:
            if client is not None:
                client.close()


# ---------------------------------------------------------------------------------- the soak
DEFAULT_HOST = "127.0.0.1"
SLOW_WINDOW_S = (1.0, 4.0)           # how long a slow-disk fault keeps disks slow
LEADER_SYNC_MS = 1000                # a slowed leader's syncs: 20 ms up to this ...
STALL_SYNC_MS = 2500                 # ... or this, past the node's 2 s leader sync stall bound
STALL_SHARE = 0.25                   # of the slowed leaders
FOLLOWER_SYNC_MS = 600               # a slowed follower's syncs: 20 ms up to this
SYNC_COUNTERS = ("slow_log_syncs", "leader_sync_stalls", "sync_stalls", "held_messages_dropped")


@dataclasses.dataclass(frozen=True)
class FaultDraw:
    """One fault's random numbers, drawn from the seeded rng before it acts (Soak.draw_fault).
    The fields after ``pick2`` are drawn only with --slow-disks."""
    gap_s: float                     # the wait before it
    kind: str
    delay: float                     # 0.2-3 s: how long a killed member stays down
    pause_s: float
    pick: float                      # 0..1: which member
    pick2: float
    window_s: float = 0.0            # how long the disks are slow
    sync_span: Tuple[float, float] = (0.0, 0.0)   # 0..1 each: the bounds of a slowed sync's time
    stall: bool = False              # a slowed leader's syncs take STALL_SYNC_MS
    kill_at: float = 0.5             # share of the window before slow_then_kill's kill
    kill_leader: bool = False        # slow_then_kill kills the leader, not the slowed member

    def slowness(self, leader: bool) -> Slowness:
        """The shim setting of a slowed leader (``leader``) or follower: each sync a uniform time
        between the two drawn bounds (20 ms up to the role's ceiling), or a stalled leader's."""
        if leader and self.stall:
            return Slowness(STALL_SYNC_MS * 1000)
        ceiling = LEADER_SYNC_MS if leader else FOLLOWER_SYNC_MS
        lo, hi = sorted(round(20 + u * (ceiling - 20)) * 1000 for u in self.sync_span)   # whole ms
        return Slowness(lo, 1, hi - lo)


class Soak:
    """One run: :meth:`run` returns the :class:`SoakOutcome` (see the module docstring)."""

    def __init__(self, seconds: float, seed: int, verbose: bool = True, keep_dir: bool = False,
                 file_sync: str = "none", kv_timeout_s: float = KV_TIMEOUT_S, overlap: bool = False,
                 host: str = DEFAULT_HOST, slow_disks: bool = False):
        if slow_disks and file_sync not in ("data", "full"):
            raise ValueError(f"slow disks need file_sync 'data' or 'full' (with {file_sync!r} no member "
                             "syncs its log, so a slow disk slows nothing)")
        self.slow_disks = slow_disks  # every member under the slow-sync shim; slow-disk faults
        self.shim = None
        self.counter_runs: Dict[Tuple[int, int, int], Dict[str, int]] = {}   # (member, pid, start) -> SYNC_COUNTERS
        self.host = host              # the members' loopback address: ::1 soaks IPv6
        self.seconds = seconds
        self.seed = seed
        self.rng = random.Random(seed)
        self.verbose = verbose
        self.keep_dir = keep_dir
        self.file_sync = file_sync
        self.kv_timeout_s = kv_timeout_s
        self.overlap = overlap        # restart without waiting for the member to be up
        self.outcome = SoakOutcome(seed=seed, seconds=seconds)
        self.t0 = time.monotonic()
        self.paused: set = set()
        self.dir = None
        self.pc = None

    def options(self) -> str:
        """The command-line options (beyond seconds and seed) that re-run this soak."""
        out = ""
        if self.file_sync != "none":
            out += f" --file-sync {self.file_sync}"
        if self.kv_timeout_s != KV_TIMEOUT_S:
            out += f" --kv-timeout {self.kv_timeout_s:g}"
        if self.overlap:
            out += " --overlap"
        if self.host != DEFAULT_HOST:
            out += f" --host {self.host}"
        if self.slow_disks:
            out += " --slow-disks"
        return out

    def say(self, message: str) -> None:
        if self.verbose:
            print(f"[soak {time.monotonic() - self.t0:7.2f}s] {message}", flush=True)

    def fault(self, kind: str, **detail) -> dict:
        record = {"t": round(time.monotonic() - self.t0, 2), "kind": kind, **detail}
        self.outcome.faults.append(record)
        self.say(f"fault {kind} {detail}")
        return record

    def problem(self, text: str) -> None:
        self.outcome.harness_problems.append(text)
        self.say("PROBLEM " + text)

    # -- cluster helpers --------------------------------------------------------------------
    def counters(self, m: int) -> dict:
        return self.pc.read_counters(m) or {}

    def describe(self) -> str:
        lines = []
        for m in range(self.pc.members):
            c = self.counters(m)
            lines.append(f"member {m}: alive={self.pc.alive(m)} paused={m in self.paused} "
                         f"role={c.get('role')} term={c.get('leadership_term')} "
                         f"commit={c.get('commit_index')} append={c.get('append_index')} "
                         f"state={c.get('consensus_module_state')}")
        return "\n".join(lines)

    def check_running(self) -> None:
        from aeronpy.testing.process_cluster import MemberExitedError

        try:
            self.pc.check_running()
        except MemberExitedError as exc:
            self.outcome.unexpected_exits.append(str(exc))
            self.say(f"UNEXPECTED EXIT {exc}")
            for m in exc.exited:             # do not report it again; it stays down
                self.pc._stopped.add(m)
            raise

    def kill(self, m: int) -> None:
        code = self.pc.kill(m, signal.SIGKILL, wait_s=10.0)
        if code != -signal.SIGKILL:
            self.outcome.unexpected_exits.append(
                f"member {m} had exit status {code!r} when the soak SIGKILLed it (expected -9: "
                f"it had exited on its own); log tail:\n{self.pc.tail_log(m, 15)}")

    def start(self, m: int) -> None:
        self.bank_counters(m)            # the run that ended: its counters.dat is replaced now
        self.pc.start_member(m)

    def bank_counters(self, m: int) -> None:
        """Keep the SYNC_COUNTERS of the member's latest run (its counters.dat, readable after
        it stopped), by pid and start time: a node starts them at zero, so the run's figures
        are the sum over its runs. Nothing if unreadable."""
        from aeronpy.cluster.counters import CountersReader

        try:
            reader = CountersReader(self.pc.data_dir(m))
        except Exception:
            return
        try:
            h = reader.header
            values = reader.read()
            self.counter_runs[(m, h.pid, h.start_time_ns)] = {k: values[k] for k in SYNC_COUNTERS if k in values}
        finally:
            reader.close()

    def sync_counters(self) -> Dict[int, Dict[str, int]]:
        """SYNC_COUNTERS per member, summed over its runs."""
        out: Dict[int, Dict[str, int]] = {m: dict.fromkeys(SYNC_COUNTERS, 0) for m in range(self.pc.members)}
        for (m, _pid, _start), values in self.counter_runs.items():
            for k, v in values.items():
                out[m][k] += v
        return out

    def restart(self, members) -> None:
        for m in members:
            self.start(m)
        if not self.overlap:
            self.wait_up(members)

    def wait_up(self, members, timeout_s: float = 30.0) -> None:
        from aeronpy.testing.process_cluster import MemberExitedError

        try:
            self.pc.check_running(wait_up_s=timeout_s)
        except MemberExitedError as exc:
            if any(code is not None for code in exc.exited.values()):
                self.outcome.unexpected_exits.append(str(exc))
                for m in exc.exited:
                    self.pc._stopped.add(m)
                raise
            self.problem(f"members {sorted(exc.exited)} not up {timeout_s:g} s after restart")

    def pause(self, m: int, seconds: float) -> None:
        self.pc.pause(m)
        self.paused.add(m)
        try:
            time.sleep(seconds)
        finally:
            self.pc.resume(m)
            self.paused.discard(m)

    def tool(self, command: str, m: int, timeout_s: float) -> Tuple[int, str]:
        cmd = [sys.executable, "-m", "aeronpy", "tool", command, "--data-dir", self.pc.data_dir(m),
               "--json", "--timeout", str(timeout_s)]
        try:
            proc = subprocess.run(cmd, cwd=self.pc.base_dir, env=self.pc.env, capture_output=True,
                                  timeout=timeout_s + 20.0, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return -1, f"tool {command} did not finish in {timeout_s + 20:g} s"
        text = (proc.stdout + proc.stderr).decode(errors="replace").strip()
        return proc.returncode, text

    def leader(self, timeout_s: float = 5.0) -> Optional[int]:
        return self.pc.leader(timeout_s)

    # -- the fault loop ----------------------------------------------------------------------
    FAULTS = (("kill_leader", 3), ("kill_follower", 3), ("pause", 3), ("kill_two", 1), ("snapshot", 2),
              ("snapshot_then_kill", 1))
    SLOW_DISK_FAULTS = (("slow_leader", 2), ("slow_followers", 2), ("slow_then_kill", 3))   # --slow-disks

    def fault_table(self) -> tuple:
        return self.FAULTS + (self.SLOW_DISK_FAULTS if self.slow_disks else ())

    def draw_fault(self) -> "FaultDraw":
        """The next fault's random numbers, all drawn before it acts, so the sequence depends on
        the seed only. Without --slow-disks the draws are the ones the soak always made."""
        rng = self.rng
        gap_s = rng.uniform(0.3, 3.0)
        kinds, weights = zip(*self.fault_table())
        kind = rng.choices(kinds, weights)[0]
        delay = round(rng.uniform(0.2, 3.0), 2)
        pause_s = round(rng.uniform(0.2, 1.5), 2)
        pick = rng.random()
        pick2 = rng.random()
        if not self.slow_disks:
            return FaultDraw(gap_s, kind, delay, pause_s, pick, pick2)
        return FaultDraw(gap_s, kind, delay, pause_s, pick, pick2,
                         window_s=round(rng.uniform(*SLOW_WINDOW_S), 2),
                         sync_span=(rng.random(), rng.random()), stall=rng.random() < STALL_SHARE,
                         kill_at=round(rng.uniform(0.25, 0.6), 2), kill_leader=rng.random() < 0.3)

    def one_fault(self, draw: "FaultDraw") -> None:
        kind, delay, pause_s, pick, pick2 = draw.kind, draw.delay, draw.pause_s, draw.pick, draw.pick2
        members = list(range(self.pc.members))
        leader = self.leader(5.0)
        if leader is None:
            self.problem(f"no leader within 5 s before a fault at "
                         f"{time.monotonic() - self.t0:.1f} s\n{self.describe()}")
        followers = [m for m in members if m != leader]
        if kind == "kill_leader":
            target = leader if leader is not None else members[int(pick * len(members))]
            self.fault(kind, member=target, leader=leader, down_s=delay)
            self.kill(target)
            time.sleep(delay)
            self.restart([target])
        elif kind == "kill_follower":
            target = followers[int(pick * len(followers))]
            self.fault(kind, member=target, leader=leader, down_s=delay)
            self.kill(target)
            time.sleep(delay)
            self.restart([target])
        elif kind == "pause":
            target = members[int(pick * len(members))]
            self.fault(kind, member=target, leader=leader, paused_s=pause_s)
            self.pause(target, pause_s)
        elif kind == "kill_two":
            first = members[int(pick * len(members))]
            rest = [m for m in members if m != first]
            pair = sorted([first, rest[int(pick2 * len(rest))]])
            down = min(delay, 2.0)
            self.fault(kind, members=pair, leader=leader, down_s=down)
            for m in pair:
                self.kill(m)
            time.sleep(down)
            self.restart(pair)
        elif kind == "snapshot_then_kill":
            # a snapshot requested through one member, and a member (the leader half the time)
            # SIGKILLed a moment later: while the members serialise, record or send it
            via = members[int(pick * len(members))]
            target = leader if (leader is not None and pick2 < 0.5) else members[int(pick2 * len(members))]
            after = round(pause_s / 5.0, 3)          # 0.04 .. 0.3 s
            record = self.fault(kind, via=via, member=target, leader=leader, after_s=after, down_s=delay)
            cmd = [sys.executable, "-m", "aeronpy", "tool", "snapshot", "--data-dir", self.pc.data_dir(via),
                   "--json", "--timeout", "5"]
            tool = subprocess.Popen(cmd, cwd=self.pc.base_dir, env=self.pc.env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                time.sleep(after)
                self.kill(target)
                time.sleep(delay)
                self.restart([target])
                try:
                    text = tool.communicate(timeout=30.0)[0].decode(errors="replace")
                    record["exit_status"] = tool.returncode
                    record["answer"] = text.strip()[-300:] if tool.returncode != 0 else ""
                except subprocess.TimeoutExpired:
                    record["exit_status"] = "hung"
                    self.problem("'aeronpy tool snapshot --timeout 5' still running after 30 s")
            finally:
                if tool.poll() is None:
                    tool.kill()
                    tool.wait(5.0)
                if tool.stdout is not None:
                    tool.stdout.close()
        elif kind == "snapshot":
            target = members[int(pick * len(members))]
            code, text = self.tool("snapshot", target, 5.0)
            self.fault(kind, member=target, leader=leader, exit_status=code,
                       answer=text[-300:] if code != 0 else "")
        else:
            self.slow_disk_fault(draw, leader, followers)

    def slow_disk_fault(self, draw: "FaultDraw", leader: Optional[int], followers: List[int]) -> None:
        """slow_leader, slow_followers or slow_then_kill: disks slow for ``draw.window_s``, then
        every disk fast again."""
        members = list(range(self.pc.members))
        lead = leader if leader is not None else members[int(draw.pick * len(members))]
        if draw.kind == "slow_leader":
            slowed, kill = [lead], None
        elif draw.kind == "slow_followers":
            slowed = followers if draw.pick2 < 0.5 else [followers[int(draw.pick * len(followers))]]
            kill = None
        elif draw.kind == "slow_then_kill":
            slowed = [lead if draw.pick < 0.5 else followers[int(draw.pick2 * len(followers))]]
            kill = lead if draw.kill_leader else slowed[0]
        else:
            raise ValueError(f"unknown fault kind {draw.kind!r}")
        slowness = draw.slowness(leader=slowed == [lead])
        window = draw.window_s
        detail = dict(members=slowed, leader=leader, syncs=slowness.describe(), window_s=window)
        if kill is not None:
            kill_at = round(window * draw.kill_at, 2)
            down = round(max(0.1, min(draw.delay, (window - kill_at) / 2)), 2)
            detail.update(killed=kill, kill_at_s=kill_at, down_s=down)
        self.fault(draw.kind, **detail)
        start = time.monotonic()
        try:
            for m in slowed:
                self.shim.set(m, slowness)
            if kill is not None:
                time.sleep(max(0.0, start + kill_at - time.monotonic()))
                self.kill(kill)
                time.sleep(down)
                self.restart([kill])
            time.sleep(max(0.0, start + window - time.monotonic()))
        finally:
            self.shim.all_fast()

    def run_faults(self, until: float) -> None:
        n = 0
        while time.monotonic() < until and n < 100_000:
            n += 1
            draw = self.draw_fault()
            time.sleep(max(0.0, min(draw.gap_s, until - time.monotonic())))
            self.check_running()
            if time.monotonic() >= until:
                break
            self.one_fault(draw)
            self.check_running()

    # -- whole run ------------------------------------------------------------------------------
    def run(self) -> SoakOutcome:
        from aeronpy.testing.linearizability import HistoryRecorder
        from aeronpy.testing.process_cluster import MemberExitedError, ProcessCluster

        out = self.outcome
        self.dir = tempfile.mkdtemp(prefix="aeronpy-soak-")
        hash_dir = os.path.join(self.dir, "hashes")
        os.makedirs(hash_dir)
        self.say(f"seed {self.seed}, {self.seconds:g} s, dir {self.dir}; "
                 + RERUN_HINT.format(seconds=self.seconds, seed=self.seed, options=self.options()))
        if self.slow_disks:
            from aeronpy.testing.slowdisk import SlowSyncShim

            self.shim = SlowSyncShim(self.dir, 3, self.seed)        # ShimUnavailable: no gcc
        self.pc = pc = ProcessCluster(members=3, services=SERVICES, base_dir=os.path.join(self.dir, "cluster"),
                                      host=self.host,
                                      config={**CLUSTER_CONFIG, "file_sync": self.file_sync},
                                      env={"AERONPY_HASH_DIR": hash_dir},
                                      wrap_command=self.shim.wrap if self.shim is not None else None)
        clients: List[_ClientThread] = []
        recorder = HistoryRecorder()
        failed = True
        try:
            pc.start()
            if pc.leader(30.0) is None:
                raise RuntimeError("no leader 30 s after start\n" + self.describe())
            pc.check_running(wait_up_s=30.0)
            hard_deadline = time.monotonic() + self.seconds + 180.0
            for i in range(COUNTER_CLIENTS):
                clients.append(CounterClient(i, pc.ingress_endpoints, hard_deadline))
            for i in range(KV_CLIENTS):
                clients.append(KVClient(100 + i, pc.ingress_endpoints, hard_deadline, recorder,
                                        random.Random(self.seed * 1000 + i), self.kv_timeout_s))
            for c in clients:
                c.start()
            self.t0 = time.monotonic()
            try:
                self.run_faults(self.t0 + self.seconds)
            except MemberExitedError:
                pass                      # recorded; heal and check what can be checked
            self.heal()
            self.say("healed; stopping clients\n" + self.describe())
            drain_deadline = time.monotonic() + 30.0
            for c in clients:
                if isinstance(c, CounterClient):
                    c.drain_deadline = drain_deadline
                c.stop_sending.set()
            for c in clients:
                c.join(max(1.0, drain_deadline + 10.0 - time.monotonic()))
                if c.is_alive():
                    self.problem(f"client thread {c.name} still running 40 s after it was told to stop")
            self.final_reads(recorder)
            self.collect_clients(clients, recorder)
            self.settle()
            self.shutdown()
            self.collect_members(hash_dir)
            failed = False
        except MemberExitedError:
            self.say("a member exited; stopping")
        finally:
            for c in clients:
                c.stop_sending.set()
                if isinstance(c, CounterClient):
                    c.drain_deadline = time.monotonic()
            for c in clients:
                c.join(10.0)
            if failed:
                self.collect_clients(clients, recorder)
                self.collect_logs()
            out.stats["node_logs"] = self.log_stats()
            pc.close(remove=False)
            self.disk_stats()
        return out

    def heal(self) -> None:
        pc = self.pc
        for m in list(self.paused):
            pc.resume(m)
            self.paused.discard(m)
        if self.shim is not None:
            self.shim.all_fast()
        down = [m for m in range(pc.members) if not pc.alive(m)]
        for m in down:
            self.start(m)
        self.wait_up(range(pc.members), 60.0)
        if pc.leader(30.0) is None:
            self.problem("no leader 30 s after healing\n" + self.describe())

    def final_reads(self, recorder) -> None:
        """Read every key through the leader after the clients stopped; appended to the history."""
        from aeronpy.errors import AeronpyError
        from aeronpy.testing.linearizability import READ

        try:
            client = _connect(self.pc.ingress_endpoints, 15.0)
        except AeronpyError as exc:
            self.problem(f"final reads: could not connect: {exc!r}")
            return
        try:
            for key in KEYS:
                token = recorder.invoke(FINAL_READER, READ, (key,))
                try:
                    raw = client.request(json.dumps({"op": "read", "key": key}).encode(),
                                         KV_SERVICE_ID, timeout_s=10.0)
                except AeronpyError as exc:
                    recorder.timeout(token)
                    self.problem(f"final read of {key}: {exc!r}")
                    continue
                recorder.complete(token, json.loads(raw)["value"])
        finally:
            client.close()

    def collect_clients(self, clients, recorder) -> None:
        out = self.outcome
        out.counter_ops = []
        out.client_errors = []
        stats = {"counter_sessions": 0, "kv_sessions": 0, "kv_timeouts": 0, "kv_completed": 0,
                 "connect_failures": 0, "lost_sessions": []}
        for c in clients:
            out.client_errors += c.errors
            stats["connect_failures"] += c.connect_failures
            stats["lost_sessions"] += [list(map(str, x)) for x in getattr(c, "lost_sessions", [])]
            if isinstance(c, CounterClient):
                out.counter_ops += c.snapshot_ops()
                stats["counter_sessions"] += c.sessions
            else:
                stats["kv_sessions"] += c.sessions
                stats["kv_timeouts"] += c.timeouts
                stats["kv_completed"] += c.completed
        out.kv_history = recorder.history()
        acked = sum(1 for op in out.counter_ops if op.replies)
        stats["counter_acked"] = acked
        stats["counter_indeterminate"] = len(out.counter_ops) - acked
        stats["kv_ops"] = len(out.kv_history)
        stats["kv_indeterminate"] = sum(1 for op in out.kv_history if op.indeterminate)
        lat = sorted(op.complete_ns - op.invoke_ns for op in out.counter_ops if op.complete_ns)
        if lat:
            stats["counter_latency_ms_p50_p99_max"] = [round(lat[len(lat) // 2] / 1e6, 1),
                                                       round(lat[int(len(lat) * 0.99)] / 1e6, 1),
                                                       round(lat[-1] / 1e6, 1)]
        kinds: Dict[str, int] = {}
        for f in out.faults:
            kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
        stats["faults"] = kinds
        stats["snapshot_tool_status"] = [f.get("exit_status") for f in out.faults
                                         if f["kind"] in ("snapshot", "snapshot_then_kill")]
        out.stats.update(stats)

    def settle(self, timeout_s: float = 60.0) -> None:
        """Wait until all members are up, have committed all they appended, at one index,
        twice in a row."""
        try:
            self.say(f"settled at index {self.pc.wait_settled(timeout_s, interval_s=0.25)}")
        except TimeoutError as exc:
            self.problem(f"members not caught up {timeout_s:g} s after healing ({exc}):\n"
                         f"{self.describe()}")

    def shutdown(self) -> None:
        pc = self.pc
        leader = pc.leader(10.0)
        target = leader if leader is not None else 0
        code, text = self.tool("shutdown", target, 30.0)
        self.say(f"aeronpy tool shutdown via member {target}: status {code}")
        if code != 0:
            self.problem(f"'aeronpy tool shutdown' via member {target}: expected status 0, saw {code}: {text[-500:]}")
        codes = {}
        for m in range(pc.members):
            proc = pc.procs[m]
            try:
                proc.wait(timeout=30.0)
            except subprocess.TimeoutExpired:
                self.problem(f"member {m} still running 30 s after the shutdown; SIGTERM")
            codes[m] = pc.kill(m, signal.SIGTERM, wait_s=20.0)
        self.outcome.final_exit_codes = codes

    def collect_members(self, hash_dir: str) -> None:
        records: Dict[int, Dict[int, dict]] = {}
        for name in sorted(os.listdir(hash_dir)):
            if name.endswith(".json"):
                with open(os.path.join(hash_dir, name)) as f:
                    r = json.load(f)
                records.setdefault(r["member_id"], {})[r["service_id"]] = r
        self.outcome.member_records = records
        self.collect_logs()

    def collect_logs(self) -> None:
        from aeronpy.cluster.nodefiles import read_errors

        pc = self.pc
        for m in range(pc.members):
            try:
                entries = read_errors(pc.data_dir(m))
                self.outcome.member_errors[m] = [f"x{e.count} {e.text}" for e in entries]
            except Exception as exc:
                self.outcome.member_errors[m] = [f"errors.log unreadable: {exc!r}"]
            lines = []
            try:
                with open(pc.log_path(m), "rb") as f:
                    for line in f.read().decode(errors="replace").splitlines():
                        if _LOG_ERROR.search(line):
                            lines.append(line.strip()[:300])
            except OSError:
                pass
            self.outcome.log_errors[m] = lines

    _STAT_PATTERNS = {
        "snapshots_recorded": re.compile(r"snapshot at index \d+ recorded"),
        "snapshots_installed": re.compile(r"installed snapshot at index"),
        "snapshots_sent": re.compile(r"sending snapshot at index"),
        "snapshots_restored": re.compile(r"restored snapshot at index"),
        "warnings": re.compile(r"\bWARNING\b"),
    }
    _WARNING = re.compile(r"\bWARNING\b\s+(?:\S+:\s*)?(.*)")

    def log_stats(self) -> dict:
        stats = {k: 0 for k in self._STAT_PATTERNS}
        for m in range(self.pc.members):
            try:
                with open(self.pc.log_path(m), "rb") as f:
                    text = f.read().decode(errors="replace")
            except OSError:
                continue
            for k, pattern in self._STAT_PATTERNS.items():
                stats[k] += len(pattern.findall(text))
            kinds = stats.setdefault("warning_kinds", {})
            for line in text.splitlines():
                found = self._WARNING.search(line)
                if found:
                    kind = re.sub(r"\d+(\.\d+)?", "N", found.group(1))[:110]
                    kinds[kind] = kinds.get(kind, 0) + 1
        return stats

    def disk_stats(self) -> None:
        """The slow-disk figures of the summary (after the members stopped): the slow-disk faults
        by kind, the members' SYNC_COUNTERS summed over their runs, the sync calls the shim saw
        and slowed."""
        if not self.slow_disks:
            return
        stats = self.outcome.stats
        kinds = dict(self.SLOW_DISK_FAULTS)
        stats["slow_disk_faults"] = {k: sum(1 for f in self.outcome.faults if f["kind"] == k) for k in kinds}
        for m in range(self.pc.members):
            self.bank_counters(m)
        stats["sync_counters"] = self.sync_counters()
        if self.shim is not None:
            totals = {m: self.shim.total_stats(m) for m in range(self.pc.members)}
            stats["shim_syncs_calls_slowed"] = {m: [t.get("calls", 0), t.get("slowed", 0)] for m, t in totals.items()}
            if sum(stats["slow_disk_faults"].values()) and not any(t.get("slowed") for t in totals.values()):
                self.problem("slow-disk faults ran but the shim slowed no member's sync (its statistics "
                             f"{totals}): the members did not run under it")

    def cleanup(self, keep: bool) -> None:
        if self.pc is not None:
            self.pc.close(remove=False)
        if self.dir and not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def run_soak(seconds: float, seed: int, verbose: bool = True, keep_on_failure: bool = True,
             file_sync: str = "none", kv_timeout_s: float = KV_TIMEOUT_S,
             overlap: bool = False, host: str = DEFAULT_HOST,
             slow_disks: bool = False) -> Tuple[SoakOutcome, List[str]]:
    """Run one soak and check it: (outcome, failures). A failure list ends with the re-run
    command; on failure the cluster's directory (logs, data dirs) is kept and named."""
    soak = Soak(seconds, seed, verbose=verbose, file_sync=file_sync, kv_timeout_s=kv_timeout_s,
                overlap=overlap, host=host, slow_disks=slow_disks)
    failures: List[str] = []
    try:
        outcome = soak.run()
        failures = evaluate(outcome)
    finally:
        keep = bool(failures) and keep_on_failure
        soak.cleanup(keep)
    if failures:
        failures.append(RERUN_HINT.format(seconds=seconds, seed=seed, options=soak.options()))
        if keep:
            failures.append(f"logs and data dirs kept in {soak.dir}")
    return outcome, failures


def summary(outcome: SoakOutcome) -> str:
    s = outcome.stats
    return json.dumps({"seed": outcome.seed, "seconds": outcome.seconds, **{k: v for k, v in s.items()
                       if k != "lost_sessions"}, "lost_sessions": len(s.get("lost_sessions", []))},
                      indent=None, default=str)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aeronpy.testing.soak",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--file-sync", default="none", choices=("none", "data", "full"))
    parser.add_argument("--kv-timeout", type=float, default=KV_TIMEOUT_S,
                        help="key-value request timeout (s); shorter gives more indeterminate ops")
    parser.add_argument("--overlap", action="store_true",
                        help="restart killed members without waiting for them to be up, so the "
                             "next fault may hit a member still recovering")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="the members' loopback address (default 127.0.0.1; ::1 soaks IPv6)")
    parser.add_argument("--slow-disks", action="store_true",
                        help="run every member under the slow-sync shim (gcc needed) and add slow-disk "
                             "faults: the leader's, followers', or one with a kill (--file-sync data or full)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.slow_disks and args.file_sync == "none":
        parser.error("--slow-disks needs --file-sync data or full: with file_sync none no member syncs "
                     "its log, so a slow disk slows nothing")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"soak seed {seed}", flush=True)
    try:
        outcome, failures = run_soak(args.seconds, seed, verbose=not args.quiet, file_sync=args.file_sync,
                                     kv_timeout_s=args.kv_timeout, overlap=args.overlap, host=args.host,
                                     slow_disks=args.slow_disks)
    except ShimUnavailable as exc:
        print(f"soak: --slow-disks: {exc}", file=sys.stderr)
        return 2
    print("faults:", json.dumps(outcome.faults))
    print("summary:", summary(outcome))
    if failures:
        print("FAILED:\n" + "\n".join(failures))
        return 1
    print("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
