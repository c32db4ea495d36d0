"""The consensus module: between the Raft core and the services, sans-I/O.

One ``ConsensusModule`` per member. The driver (``ClusterNode`` or ``SimCluster``) feeds it
client ingress (:meth:`on_ingress`), time (:meth:`tick`) and the committed entries in log
order (:meth:`apply` / :meth:`apply_ready`), and drains its egress (:meth:`drain_egress`).
It never reads a clock or touches a socket.

Two kinds of state live here, and they must not be mixed:

* **replicated** (sessions, last applied seq and reply cache per session, timers, pending
  service messages, cluster time): changed only by :meth:`apply`, so identical on every
  member and written to snapshots (:meth:`snapshot_state`);
* **leader-local** (who was heard from when, what was already proposed in this term, which
  connects wait for their SESSION_OPEN): rebuilt whenever a member becomes leader.

A new leader turns *ready* only once it has applied every entry its log held when it won:
only then does it know each session's last sequenced message, so only then does it accept
session messages, propose timers and service messages, and send NEW_LEADER events that make
clients re-send what they have not seen acknowledged. Messages numbered at or below what a
session already had applied are answered from the reply cache instead of being proposed.
"""
from __future__ import annotations

import enum
import logging
import time
from collections import Counter, OrderedDict
from typing import Any, BinaryIO, Callable, Optional, Sequence

from aeronpy._applypath import apply_session_run
from aeronpy._ingress import IngressPath
from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P
from aeronpy.cluster.acks import AckHold
from aeronpy.cluster.codes import BACK_PRESSURED
from aeronpy.cluster.module_config import ModuleConfig
from aeronpy.cluster.container import Cluster, ServiceContainer, ServiceError
from aeronpy.core.config import NEW_LEADERSHIP_TERM
from aeronpy.cluster.egress import EgressQueues
from aeronpy.cluster.leader import LeaderDuties
from aeronpy.cluster.sessions import ClientSession, ReplyPath, SessionState, SessionTable
from aeronpy.cluster.term_checks import TermEntryChecks
from aeronpy.cluster.timers import TimerTable
from aeronpy.errors import ClusterStateError, MessageTooLargeError
from aeronpy.service import CloseReason, ClusteredService, Role

__all__ = ["ConsensusModule", "ModuleState", "ServiceError"]

_LEADER = Role.LEADER      # a global: Role.LEADER is an enum class attribute lookup, slow on 3.11
_HOLDING_ACTIONS = (E.ACTION_SUSPEND, E.ACTION_SHUTDOWN, E.ACTION_ABORT)
_TERMINAL_ACTIONS = (E.ACTION_SHUTDOWN, E.ACTION_ABORT)
# a leader this far behind the last stamp warns: its cluster time stands still meanwhile
CLOCK_BEHIND_WARN_NS = 1_000_000_000
_log = logging.getLogger("aeronpy.cluster")


class ModuleState(enum.Enum):
    INIT = 0      # constructed, services not started
    ACTIVE = 1
    FAILED = 2    # a service raised: every apply raises ServiceError, the node must stop
    CLOSED = 3


def public_role(core_role: Any) -> Role:
    """Map the core's role value (its own enum or an int) onto aeronpy.Role."""
    if isinstance(core_role, Role):
        return core_role
    name = getattr(core_role, "name", None)
    if name in Role.__members__:
        return Role[name]
    return Role(int(core_role))


class ConsensusModule(LeaderDuties, AckHold, TermEntryChecks):
    def __init__(self, member_id: int, core: Any, services: Sequence[ClusteredService],
                 config: Optional[ModuleConfig] = None, now_ns: int = 0):
        self.member_id = member_id
        self.core = core
        self.config = config or ModuleConfig()
        self.container = ServiceContainer(services)
        self._service_count = len(self.container)    # ids 0 .. n-1; others refused at ingress
        self.clusters = [Cluster(self, i) for i in range(len(self.container))]
        self.counters: Counter = Counter()
        self._state = ModuleState.INIT
        # replicated state
        self.sessions = SessionTable()
        self.timers = TimerTable()
        self.pending_service_messages: "OrderedDict[int, tuple[int, bytes]]" = OrderedDict()
        self.next_service_message_id = 1
        self.cluster_time_ns = 0
        self.applied_index = 0
        self.suspended = False      # CLUSTER_ACTION suspend applied (and no resume since)
        # leader-local state
        self._now_ns = now_ns
        self._role = public_role(core.role)
        self._leadership_term = -1
        self._leader_ready = False
        self._ready_index = 0
        self._last_stamp_ns = 0
        self._last_heard_ns: dict[int, int] = {}
        self._leader_seq: dict[int, int] = {}
        self._proposed_closes: set[int] = set()
        self._proposed_timer_fires: set[int] = set()
        self._service_messages_proposed_upto = 0
        self._pending_connects: dict[tuple[str, int], tuple[object, int, int]] = {}
        self._init_acks()       # the ack hold's state (acks.py)
        self._proposals_held = 0        # action (suspend/shutdown/abort) this leader proposed: append no more
        self._halted = False            # the driver stopped applying (cluster shutdown/abort)
        self.egress = EgressQueues(self.config.egress_queue_max)
        # apply context
        self._views: dict[int, ClientSession] = {}
        self._in_apply = False
        # which message a service handles, and whether it replied: what ClientSession.offer
        # needs of this member (compiled, with the reply cache and egress queueing)
        self._reply = ReplyPath(self.config, self.counters, self.egress)
        self._reply.leader = self._role is _LEADER
        self._service_closes: list[int] = []
        self._closing: set[int] = set()     # sessions whose on_session_close is running
        self.cluster_action_listeners: list[Callable[[int, int, int], None]] = []
        self.service_set_listeners: list = []      # fn(ServiceSetError) on a list mismatch
        self.config_mismatch_listeners: list = []  # fn(ConfigMismatchError) on a settings mismatch
        # fn(index, snapshot_index, checksum) for each leader's snapshot digest (state_digests.py)
        self.state_digest_listeners: list[Callable[[int, int, int], None]] = []
        # the node's SessionMessage frames: the common case compiled, the rest through
        # on_session_message (csrc/_ingress.pyx)
        self.ingress_path = IngressPath(self)
        self._ingress_handlers = {
            P.SessionConnect: self._on_connect, P.SessionMessage: self._on_session_message,
            P.SessionKeepAlive: self._on_keepalive, P.SessionClose: self._on_close,
            P.SessionWindow: self._on_session_window,
        }

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self, snapshots: Optional[Sequence[Optional[BinaryIO]]] = None) -> None:
        """Call every service's on_start (after restore_state, before replaying the log)."""
        snapshots = list(snapshots) if snapshots is not None else [None] * len(self.container)
        if len(snapshots) != len(self.container):
            raise ValueError(f"{len(snapshots)} service snapshots for {len(self.container)} services")
        self._role = public_role(self.core.role)
        self._reply.leader = self._role is _LEADER
        for service_id, snapshot in enumerate(snapshots):
            # fresh (no snapshot), every member runs on_start before the first entry, so it may
            # schedule timers or offer; given a snapshot it runs at one member's restore point
            self._invoke_local(service_id, "on_start", snapshot is not None,
                               self.clusters[service_id], snapshot)
        self._finish_service_closes()
        self._state = ModuleState.ACTIVE

    def _invoke_local(self, service_id: int, callback: str, local: bool, *args) -> None:
        """A callback outside log order (one member, its own moment): while it runs, changes to
        replicated state raise ClusterStateError (``check_log_order``) instead of diverging."""
        if not local:
            self.container.invoke(service_id, callback, *args)
            return
        reply = self._reply
        outer, reply.local_callback = reply.local_callback, callback
        try:
            self.container.invoke(service_id, callback, *args)
        finally:
            reply.local_callback = outer

    def check_log_order(self, what: str) -> None:
        """Raise ClusterStateError if ``what`` (a change to replicated state) is attempted from a
        callback outside log order."""
        callback = self._reply.local_callback
        if callback is not None:
            raise ClusterStateError.outside_log_order(what, callback)

    def take_service_snapshots(self, writers: Sequence[BinaryIO]) -> None:
        for service_id, writer in enumerate(writers):
            self._invoke_local(service_id, "on_take_snapshot", True, writer)

    def close(self) -> None:
        """on_terminate to every service (best effort: a failing one is logged and counted)."""
        if self._state is ModuleState.CLOSED:
            return
        for service_id in range(len(self.container)):
            try:
                self._invoke_local(service_id, "on_terminate", True, self.clusters[service_id])
            except ServiceError:
                pass
        self._state = ModuleState.CLOSED

    @property
    def state(self) -> ModuleState:
        if self.container.failure is not None and self._state is not ModuleState.CLOSED:
            return ModuleState.FAILED
        return self._state

    @property
    def failure(self) -> Optional[ServiceError]:
        return self.container.failure

    # ---- views --------------------------------------------------------------------------
    @property
    def role(self) -> Role:
        return self._role

    @property
    def is_leader(self) -> bool:
        return self._role is _LEADER

    @property
    def leader_ready(self) -> bool:
        return self._role is _LEADER and self._leader_ready

    @property
    def commit_index(self) -> int:
        return self.core.commit_index

    # ---- role tracking ------------------------------------------------------------------
    def _sync_role(self) -> None:
        role = public_role(self.core.role)
        term = self.core.term
        if role is self._role and (role is not _LEADER or term == self._leadership_term):
            return
        changed = role is not self._role
        self._role = role
        self._reply.leader = role is _LEADER
        self._reset_leader_state()
        if role is _LEADER:
            self._leadership_term = term
            self._ready_index = self.core.log.last_index
            self._check_ready()
        if changed:
            for service_id in range(len(self.container)):
                self._invoke_local(service_id, "on_role_change", True, role)

    def _reset_leader_state(self) -> None:
        self._leader_ready = False
        self._last_heard_ns.clear()
        self._leader_seq.clear()
        self._proposed_closes.clear()
        self._proposed_timer_fires.clear()
        self._service_messages_proposed_upto = 0
        self._pending_connects.clear()
        self._reset_acks()
        self._proposals_held = 0
        self.egress.clear()

    def _check_ready(self) -> None:
        if self._leader_ready or self._role is not _LEADER or self.applied_index < self._ready_index:
            return
        self._leader_ready = True
        self._last_stamp_ns = max(self._last_stamp_ns, self.cluster_time_ns)
        behind_ns = self._last_stamp_ns - self._now_ns
        if behind_ns > CLOCK_BEHIND_WARN_NS:
            self.counters["leader_clock_behind"] += 1
            _log.warning("this member leads with its clock %.1f s behind cluster time (the last "
                         "entry's): cluster time stands still, and no timer fires, until its "
                         "clock catches up. A member whose clock ran ahead has led, or this "
                         "one's is wrong (docs/operations.md, 'Cluster time')", behind_ns / 1e9)
        self.timers.rebuild_heap()
        # Replies dropped while catching up hold nothing: the client may have had them from the
        # old leader (then it never re-sends them, and a hold would stall it), and one that
        # lacks a reply still holds its message, which it re-sends on the NEW_LEADER event
        # below, ahead of every ack of this leader (_flush_acks).
        self._reply.dropped_replies.clear()
        endpoints = self.config.ingress_endpoints()
        put, client_ref = self.egress.put, self.config.client_ref
        for s in self.sessions:
            session_id = s.session_id
            self._last_heard_ns[session_id] = self._now_ns
            self._leader_seq[session_id] = s.last_applied_seq
            self._new_leader_event(s, put, client_ref, endpoints)
        self.counters["leader_ready"] += 1

    # ---- proposals ----------------------------------------------------------------------
    def _stamp(self) -> int:
        """Cluster time for a new entry: the leader's clock, never going backwards."""
        ts = max(self._now_ns, self._last_stamp_ns, self.cluster_time_ns)
        self._last_stamp_ns = ts
        return ts

    def _propose(self, entry_type: int, payload: bytes) -> int:
        if self._proposals_held or self.suspended:
            self.counters["proposals_held"] += 1    # the client re-sends after resume
            return 0
        index = self.core.propose(entry_type, payload)
        if index:
            self.counters["proposed"] += 1
        else:
            self.counters["propose_refused"] += 1
        return index

    def propose_cluster_action(self, action: int, argument: int = 0) -> int:
        """Leader only: append a CLUSTER_ACTION entry; the log index, or 0 when not leader."""
        if action not in E.CLUSTER_ACTIONS:
            raise ValueError(f"unknown cluster action {action}")
        if not self.is_leader:
            return 0
        if action == E.ACTION_SNAPSHOT and (self._halted or self._proposals_held in _TERMINAL_ACTIONS):
            return 0           # nothing is applied past a stop entry (as the admin path refuses)
        index = self.core.propose(E.CLUSTER_ACTION, E.encode_cluster_action(self._stamp(), action, argument))
        if index:
            self.counters["cluster_actions_proposed"] += 1
            if action in _HOLDING_ACTIONS and self._proposals_held not in _TERMINAL_ACTIONS:
                # nothing else goes into the log behind it (until a resume is applied)
                self._proposals_held = action
        return index

    def propose_state_digest(self, snapshot_index: int, checksum: int) -> int:
        """Leader only: append the checksum of its snapshot at ``snapshot_index`` for the
        members to compare with theirs (state_digests.py); the log index, or 0 when not leader
        or the cluster is stopping."""
        if not self.is_leader or self._halted or self._proposals_held in _TERMINAL_ACTIONS:
            return 0
        return self.core.propose(E.CLUSTER_ACTION,
                                 E.encode_state_digest(self._stamp(), snapshot_index, checksum))

    def halt_applying(self) -> None:
        """Stop applying entries (the driver calls it while the shutdown or abort entry is
        applied): the services stay at that entry's index, on every member alike."""
        self._halted = True

    @property
    def halted(self) -> bool:
        return self._halted

    def tick(self, now_ns: int) -> int:
        """Leader duties (see LeaderDuties.tick); none while suspended or stopping: timers,
        session timeouts and service messages wait for resume."""
        if self.suspended or self._proposals_held:
            self._now_ns = now_ns
            self._sync_role()
            return 0
        return LeaderDuties.tick(self, now_ns)

    def next_due_ns(self) -> int:
        """When ``tick`` or the egress drain next has something to do, in cluster time: 0
        while egress is queued, acks or events wait for a retry, or service messages wait
        to be proposed; else the next timer or session timeout a ready leader proposes
        (1 << 62 for none). A driver with nothing else to do may sleep until then
        (ClusterNode's idle park); what arrives from a client or peer wakes it anyway."""
        if len(self.egress) or self._ack_pending or self._ack_retry or self._new_leader_owed:
            return 0
        if self.suspended or self._proposals_held:
            return 1 << 62                 # nothing proposed until a resume (an admin request)
        return LeaderDuties.next_due_ns(self)

    # ---- applying committed entries -----------------------------------------------------
    def apply_ready(self, ready: Any, now_ns: int, budget_ns: int = 0) -> int:
        """Apply the committed range a core ``Ready`` names, from ``core.log``; returns the
        first index not applied: ``ready.apply_hi`` or more (more when this module had applied
        past the range already) unless ``budget_ns`` (> 0) of wall time ran out first (read
        after each entry, so one is applied at least), when the driver applies the rest in its
        next duty cycles. Runs of SESSION_MESSAGE entries (nearly all of a busy log) take a
        fast path."""
        self._now_ns = now_ns
        self._sync_role()
        log = self.core.log
        type_at = log.type_at
        index = max(ready.apply_lo, self.applied_index + 1)
        hi = ready.apply_hi
        deadline_ns = time.monotonic_ns() + budget_ns if budget_ns > 0 else 0
        while index < hi:
            entry_type = type_at(index)
            if entry_type == E.SESSION_MESSAGE and self.container.failure is None \
                    and not self._halted:      # halted: apply() counts and skips each entry
                run_end = self._apply_session_messages(log, index, hi, deadline_ns)
                if run_end <= index:      # a broken run must fail here, not spin forever
                    raise AssertionError(f"the run of session messages at {index} applied nothing")
                index = run_end
            else:
                self.apply(index, log.term_at(index), entry_type, log.payload_at(index))
                index += 1
            if deadline_ns and index < hi and time.monotonic_ns() >= deadline_ns:
                self.counters["apply_budget_spent"] += 1
                break
        return max(index, ready.apply_lo)

    def _apply_session_messages(self, log: Any, index: int, hi: int, deadline_ns: int = 0) -> int:
        """``apply`` for consecutive SESSION_MESSAGE entries from ``index`` (below ``hi``);
        returns the first index not applied. The compiled loop (_applypath.apply_session_run)
        does what _apply_session_message and _deliver do per entry, with everything that
        cannot change while committed entries are applied (role, services' callbacks, tables)
        looked up once per run.

        A subclass or a test that replaces _apply_session_message or _deliver gets the
        path through them instead (the simulator's negative controls do); a wrapped
        ``container.invoke`` (the simulator's invariant checker) is called, as by _deliver.
        """
        cls = type(self)
        if cls._apply_session_message is not _INLINED[0] or cls._deliver is not _INLINED[1]:
            return self._apply_session_messages_via_hooks(log, index, hi, deadline_ns)
        container = self.container
        invoke = container.invoke
        # call the services directly, as container.invoke would (their on_session_message
        # looked up per call), unless something (the simulator's invariant checker) wraps
        # invoke to watch the calls
        handlers = container.services if getattr(invoke, "__func__", None) is _INVOKE else None
        self._in_apply = True
        try:
            return apply_session_run(self, log, index, hi, handlers, invoke, self.leader_ready,
                                     self._role is _LEADER and not self._leader_ready, deadline_ns)
        finally:
            self._in_apply = False

    def _apply_session_messages_via_hooks(self, log: Any, index: int, hi: int,
                                          deadline_ns: int = 0) -> int:
        """The run of SESSION_MESSAGE entries through _apply_session_message (see above)."""
        type_at, payload_at = log.type_at, log.payload_at
        unpack, header = E.SESSION_MESSAGE_STRUCT.unpack_from, E.SESSION_MESSAGE_HEADER_BYTES
        container = self.container
        apply_message = self._apply_session_message
        check_ready = self._role is _LEADER and not self._leader_ready
        session_message = E.SESSION_MESSAGE
        self._in_apply = True
        try:
            while index < hi and type_at(index) == session_message:
                payload = payload_at(index)
                if len(payload) < header:
                    E.decode_session_message(payload)          # raises EntryDecodeError
                timestamp_ns, session_id, seq, correlation_id, service_id = unpack(payload, 0)
                self.applied_index = index
                container.current_index = index
                index += 1
                if timestamp_ns > self.cluster_time_ns:
                    self.cluster_time_ns = timestamp_ns
                apply_message(session_id, seq, correlation_id, service_id, payload[header:])
                if self._service_closes:
                    self._finish_service_closes()
                if check_ready:
                    self._check_ready()
                    check_ready = not self._leader_ready
                if deadline_ns and time.monotonic_ns() >= deadline_ns:
                    break
        finally:
            self._in_apply = False
        return index

    def apply(self, index: int, term: int, entry_type: int, payload) -> None:
        """Apply one committed entry. Entries must come in log order, each exactly once.

        Raises ServiceError (now and on every later call) once a service callback raised.
        """
        self.container.check()
        if self._halted:
            self.counters["not_applied_after_halt"] += 1
            return
        if index <= self.applied_index:
            self.counters["apply_already_applied"] += 1
            return
        self._sync_role()
        self.applied_index = index
        self.container.current_index = index
        if entry_type == NEW_LEADERSHIP_TERM and len(payload) > 8:
            self._check_term_entry(index, term, payload)
        if entry_type >= E.FIRST_CLUSTER_ENTRY_TYPE:
            entry = E.decode_entry(entry_type, payload)
            if entry.timestamp_ns > self.cluster_time_ns:
                self.cluster_time_ns = entry.timestamp_ns
            self._in_apply = True
            try:
                self._apply_entry(index, entry_type, entry)
                self._finish_service_closes()
            finally:
                self._in_apply = False
        self._check_ready()

    def _apply_entry(self, index: int, entry_type: int, entry: Any) -> None:
        if entry_type == E.SESSION_MESSAGE:
            self._apply_session_message(entry.session_id, entry.seq, entry.correlation_id,
                                        entry.service_id, entry.payload)
        elif entry_type == E.SESSION_OPEN:
            self._apply_session_open(index, entry)
        elif entry_type == E.SESSION_CLOSE:
            s = self.sessions.get(entry.session_id)
            if s is None:
                self.counters["close_of_closed_session"] += 1
            else:
                self._close_session(s, CloseReason(entry.reason))
        elif entry_type == E.TIMER_FIRE:
            self._proposed_timer_fires.discard(entry.timer_seq)
            if self.timers.take_if_live(entry.service_id, entry.correlation_id, entry.timer_seq):
                self._invoke(entry.service_id, "on_timer_event", entry.correlation_id, self.cluster_time_ns)
            else:
                self.counters["timer_fire_stale"] += 1
        elif entry_type == E.SERVICE_MESSAGE:
            pending = self.pending_service_messages.pop(entry.pending_id, None)
            if pending is None:
                self.counters["service_message_duplicate"] += 1
            else:
                self._deliver(entry.service_id, None, entry.payload)
        elif entry_type == E.CLUSTER_ACTION:
            if entry.action == E.ACTION_STATE_DIGEST:
                for digest_listener in self.state_digest_listeners:
                    digest_listener(index, entry.argument, entry.checksum)
                return
            self._apply_cluster_action(entry.action)
            for listener in self.cluster_action_listeners:
                listener(self.applied_index, entry.action, entry.argument)

    def _apply_cluster_action(self, action: int) -> None:
        """The replicated part of suspend/resume (snapshot, shutdown and abort belong to the
        driver's listeners)."""
        if action == E.ACTION_SUSPEND:
            self.suspended = True
        elif action == E.ACTION_RESUME:
            self.suspended = False
            if self.is_leader:
                if self._proposals_held == E.ACTION_SUSPEND:
                    self._proposals_held = 0
                if self._leader_ready:
                    # clients re-send what waited during the suspension now, not after their
                    # resend timeout
                    endpoints = self.config.ingress_endpoints()
                    for s in self.sessions:
                        self._last_heard_ns[s.session_id] = self._now_ns
                        self._emit(s, P.NewLeaderEvent(s.session_id, self._leadership_term,
                                                       self.member_id, endpoints))

    def _invoke(self, service_id: int, callback: str, *args: Any) -> bool:
        if not 0 <= service_id < len(self.container):
            self.counters["unknown_service"] += 1
            return False
        self.container.invoke(service_id, callback, *args)
        return True

    def _deliver(self, service_id: int, session: Optional[ClientSession], payload: memoryview) -> None:
        try:
            if 0 <= service_id < len(self.container.services):
                self.container.invoke(service_id, "on_session_message", session, self.cluster_time_ns,
                                      payload)
            else:
                self.counters["unknown_service"] += 1
        finally:
            try:
                payload.release()       # "valid only during the call", enforced
            except BufferError:
                pass                    # the service holds an export of it; nothing to enforce

    def _view(self, s: SessionState) -> ClientSession:
        view = self._views.get(s.session_id)
        if view is None:
            view = self._views[s.session_id] = ClientSession(s, self._reply)
        return view

    def _apply_session_open(self, index: int, e: E.SessionOpen) -> None:
        key = (e.response_endpoint, e.client_nonce)
        existing = self.sessions.find_client(*key)
        if existing is not None:
            self.counters["session_open_duplicate"] += 1
            s, opened = existing, False
        else:
            s, opened = SessionState(index, e.response_endpoint, e.client_nonce, e.correlation_id,
                                     self.cluster_time_ns), True
            self.sessions.open(s)
            if self.config.on_session_opened is not None:
                self.config.on_session_opened(e.response_endpoint)
        if self.is_leader:
            pending = self._pending_connects.pop(key, None)
            client_ref = pending[0] if pending else self.config.client_ref(e.response_endpoint)
            self._last_heard_ns.setdefault(s.session_id, self._now_ns)
            self._leader_seq.setdefault(s.session_id, s.last_applied_seq)
            # a leader that did not take the connect (it came to an earlier one) does not know
            # the client's protocol: the endpoint alone, which every version reads
            self._event(client_ref, e.correlation_id, s.session_id, P.EVENT_OK,
                        self.config.connect_ok_detail(self.config.members.get(self.member_id, ""),
                                                      pending[2] if pending else 1))
        if opened:
            self.container.broadcast("on_session_open", self._view(s), self.cluster_time_ns)

    def _close_session(self, s: SessionState, reason: CloseReason) -> None:
        # closing: a close_client_session of it from these callbacks is False (already closing)
        self._closing.add(s.session_id)
        try:
            self.container.broadcast("on_session_close", self._view(s), self.cluster_time_ns, reason)
        finally:
            self._closing.discard(s.session_id)
        self.sessions.close(s.session_id)
        self._views.pop(s.session_id, None)
        if self.is_leader:
            self._emit(s, P.SessionEvent(0, s.session_id, P.EVENT_CLOSED, self.member_id,
                                         self._leadership_term, reason.name))
        for leader_local in (self._last_heard_ns, self._leader_seq):
            leader_local.pop(s.session_id, None)
        self._proposed_closes.discard(s.session_id)
        self._forget_acks(s.session_id)
        if self.config.on_session_closed is not None and \
                not self.sessions.has_endpoint(s.response_endpoint):
            # another open session answers there (its client reconnected from the same
            # address): the transport place is now that client's
            self.config.on_session_closed(s.response_endpoint)

    def _apply_session_message(self, session_id: int, seq: int, correlation_id: int,
                               service_id: int, payload: memoryview) -> None:
        """Exactly-once delivery of one session message (both apply paths come here)."""
        s = self.sessions.get(session_id)
        if s is None:
            self.counters["message_for_closed_session"] += 1
            return
        if seq <= s.last_applied_seq:
            self.counters["duplicate_message_skipped"] += 1
            return
        if seq != s.last_applied_seq + 1:
            self.counters["seq_gap_applied"] += 1
        s.last_applied_seq = seq
        reply = self._reply
        if service_id == E.REJECTED_MESSAGE_SERVICE_ID:
            self.counters["rejected_message_skipped"] += 1    # it only consumes its seq
            reply.replied = False
        else:
            reply.handling = s
            reply.handling_seq = seq
            reply.handling_correlation_id = correlation_id
            reply.replied = False
            try:
                self._deliver(service_id, self._views.get(session_id) or self._view(s), payload)
            finally:
                reply.handling = None
        # Only a ready leader acks. A SessionAck releases the client's window up to
        # last_applied_seq; a new leader still applying its predecessor's entries cannot
        # know which of their replies the client got (the old leader may have died before
        # sending them), so it leaves acks and the re-sent window to after its NEW_LEADER
        # event, when the reply cache answers every message the client still holds.
        if self.leader_ready and not reply.replied:
            self._ack_pending.add(session_id)

    # ---- services' side (Cluster facade and ClientSession) ------------------------------
    def _emit(self, s: SessionState, message: object) -> bool:
        if not self.egress.put(self.config.client_ref(s.response_endpoint), message):
            self.counters["egress_dropped"] += 1
            return False
        return True

    def _schedule_timer(self, service_id: int, correlation_id: int, deadline_ns: int) -> bool:
        timers = self.timers
        if len(timers) >= self.config.max_timers and \
                timers.deadline(service_id, correlation_id) is None:
            # replicated count at this log index: every member refuses alike
            self.counters["timer_schedule_refused"] += 1
            return False
        timers.schedule(service_id, correlation_id, deadline_ns)
        return True

    def _cancel_timer(self, service_id: int, correlation_id: int) -> bool:
        return self.timers.cancel(service_id, correlation_id)

    def _offer_service_message(self, service_id: int, message) -> int:
        if isinstance(message, int):
            # bytes(5) is five zero bytes (and bytes(10**12) a terabyte before the size check)
            raise TypeError("message must be bytes-like (bytes, bytearray, memoryview), got int")
        data = bytes(message)
        if len(data) > self.config.max_message_bytes:
            raise MessageTooLargeError(
                f"service message of {len(data)} bytes exceeds max_message_bytes {self.config.max_message_bytes}")
        if len(self.pending_service_messages) >= self.config.service_message_queue_max:
            self.counters["service_message_back_pressured"] += 1
            return BACK_PRESSURED
        pending_id = self.next_service_message_id
        self.next_service_message_id += 1
        self.pending_service_messages[pending_id] = (service_id, data)
        return pending_id

    def _client_sessions(self) -> tuple[ClientSession, ...]:
        return tuple(self._view(s) for s in self.sessions)

    def _get_client_session(self, session_id: int) -> Optional[ClientSession]:
        s = self.sessions.get(session_id)
        return None if s is None else self._view(s)

    def _close_client_session_by_service(self, session_id: int) -> bool:
        if session_id not in self.sessions or session_id in self._service_closes \
                or session_id in self._closing:
            return False
        self._service_closes.append(session_id)
        if not self._in_apply:
            self._finish_service_closes()
        return True

    def _finish_service_closes(self) -> None:
        while self._service_closes:
            s = self.sessions.get(self._service_closes[0])
            if s is not None:
                self._close_session(s, CloseReason.SERVICE_ACTION)
            self._service_closes.pop(0)


    # ---- snapshots of the consensus-layer state -----------------------------------------
    def snapshot_state(self) -> bytes:
        from aeronpy.cluster.snapshot import encode_module_state
        return encode_module_state(self)

    def restore_state(self, data: bytes) -> None:
        from aeronpy.cluster.snapshot import decode_module_state
        decode_module_state(self, data)
        self._views.clear()
        self._reset_leader_state()
        self._role = public_role(self.core.role)
        self._reply.leader = self._role is _LEADER
        self._leadership_term = -1


# what _apply_session_messages inlines: when these are replaced, it calls them instead
_INLINED = (ConsensusModule._apply_session_message, ConsensusModule._deliver)
_INVOKE = ServiceContainer.invoke
