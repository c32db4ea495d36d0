"""Cluster-wide admin actions on a real node (suspend, resume, shutdown, abort), the consensus
module state counter, and what the node logs about elections. Kept out of node.py.

Why through the log: an operator's ``aeronpy tool suspend | resume | shutdown | abort`` reaches
one member's ingress as an AdminRequest; the leader appends a CLUSTER_ACTION entry and every
member acts when it applies that entry, so all agree on *where* it happened.

- **suspend / resume** are replicated state of the consensus module (``module.suspended``,
  kept in snapshots): while suspended the leader appends nothing but admin actions; client
  messages are held (not answered; clients re-send after resume, which nudges them with a
  NEW_LEADER event naming the same leader).
- **shutdown**: each member stops applying at the entry (``module.halt_applying``), takes its
  final snapshot at that index (the snapshot machinery of `aeronpy.cluster.node_snapshots`),
  then closes: services get ``on_terminate``, the counters file is marked closed, ``aeronpy
  node`` exits with status 0. **abort**: the same without the snapshot.
- A leader does not leave first: it keeps heart-beating (the heartbeats carry the commit
  index that tells followers the action is committed) until every follower has gone quiet
  (it stopped) or ``quit_linger`` has passed, so a follower is not left to learn the commit
  from an election.
- Once a shutdown or abort was ordered, a snapshot request is refused ("the cluster is
  stopping"): its entry would follow the stop entry, which no member applies past.
- An admin snapshot that a member queued behind one still being written is taken when that
  one is done, also when it failed (``_on_snapshot_failed``).
- A shutdown/abort entry is acted on only when it is applied live in the term that ordered
  it. Met while replaying the log at start, or applied after a later leadership term began
  (a member catching up after the cluster was restarted), it is history: skipped, with a log
  line. Edge: a follower that learns the commit only after its leader left and a new term
  began keeps running; the tool then reports that member as not stopped.
"""
from __future__ import annotations

import logging
import struct
from typing import Any, Optional

from aeronpy.endpoints import format_endpoint
from aeronpy.cluster import entries as E
from aeronpy.cluster.admin_auth import AdminGate, remove_key_file, sign_response, write_key_file
from aeronpy.cluster import protocol as P
from aeronpy.cluster.counters import COUNTER, GAUGE, ConsensusModuleState, SlotId
from aeronpy.cluster.logsetup import log_transition
from aeronpy.core.election import ElectionState
from aeronpy.service import Role

# AdminRequest.request_type (1 = snapshot and 16/17 = backup belong to node_snapshots)
ADMIN_SUSPEND = 2
ADMIN_RESUME = 3
ADMIN_SHUTDOWN = 4
ADMIN_ABORT = 5
ADMIN_TRANSFER_LEADERSHIP = 6       # payload: i64 target member id, -1 for the best follower
ADMIN_ACTIONS = {ADMIN_SUSPEND: E.ACTION_SUSPEND, ADMIN_RESUME: E.ACTION_RESUME,
                 ADMIN_SHUTDOWN: E.ACTION_SHUTDOWN, ADMIN_ABORT: E.ACTION_ABORT}
ACTION_NAMES = {E.ACTION_SNAPSHOT: "snapshot", E.ACTION_SUSPEND: "suspend",
                E.ACTION_RESUME: "resume", E.ACTION_SHUTDOWN: "shutdown", E.ACTION_ABORT: "abort"}

# Extra counter slots the node declares (beside the standard ones).
ADMIN_EXTRA_SLOTS: tuple = (
    ("election_transitions", COUNTER, "Election state machine transitions since start"),
    ("stopped_at_index", GAUGE, "Log index of the shutdown/abort entry this node stopped at"),
    ("admin_rejected", COUNTER, "Admin requests refused: no valid tag (with a secret) or sent "
                                "from another machine (without one)"),
    ("follower_lag_max", GAUGE, "On the leader: log entries the follower furthest behind has not "
                                "acknowledged (0 on other members)"),
)
ENUM_NAMES = {"election_state": ElectionState, "consensus_module_state": ConsensusModuleState}

_S = ConsensusModuleState
_I64 = struct.Struct("<q")
_MS = 1_000_000
_QUIET_HEARTBEATS = 3          # a follower silent this many heartbeat intervals has stopped
_ANSWERS_KEPT = 64             # AdminResponses kept for re-sent requests (same correlation id)


def _not_leader_answer(core: Any, module: Any) -> tuple:
    from aeronpy.cluster.node_snapshots import not_leader_answer   # loaded with the node
    return not_leader_answer(core, module)


def _leader_text(core: Any) -> str:
    """The leader as a log line names it: "not known yet" rather than None mid-election."""
    return "not known yet" if core.leader_id is None else str(core.leader_id)


class NodeAdmin:
    """The node calls: ``observe_election`` (when the core's election or term moved),
    ``on_role_change`` (a Ready with a role or leader change), ``on_admin_request``,
    ``do_work`` (each duty cycle while ``pending``), ``closing``/``closed`` from ``close``."""

    def __init__(self, node: Any):
        from aeronpy.cluster.node_snapshots import (ADMIN_ERROR, ADMIN_NOT_LEADER, ADMIN_OK,
                                                    ADMIN_SNAPSHOT)
        self._ok, self._not_leader, self._error = ADMIN_OK, ADMIN_NOT_LEADER, ADMIN_ERROR
        self._snapshot_kind = ADMIN_SNAPSHOT
        self.node = node
        self.core, self.module, self.log = node.core, node.module, node.log
        self.snapshotter = node.snapshots.snapshotter
        counters = node.counters
        self._values = counters.values
        self._transitions_slot = counters.index("election_transitions")
        self._stopped_at_slot = counters.index("stopped_at_index")
        self._rejected_slot = counters.index("admin_rejected")
        self._elections_slot = int(SlotId.ELECTIONS_HELD)
        self._snapshots_slot = int(SlotId.SNAPSHOT_COUNT)
        config = node.config
        self.gate = AdminGate(config.secret, config.member.host,
                              format_endpoint(config.member.host, config.member.ingress_port),
                              data_dir=config.data_dir)
        self._seen_lost_logged = False
        # the key aeronpy tool signs admin requests with (derived from the secret, once, by
        # the gate; without a secret only this machine may send them, and no key is left)
        try:
            if self.gate.key is not None:
                write_key_file(config.data_dir, self.gate.key)
            else:
                remove_key_file(config.data_dir)
        except BaseException:
            self.gate.close()       # the node never gets this NodeAdmin to close it later
            raise
        self._heartbeat_ns = config.heartbeat_interval_ms * _MS
        self.quit_linger_ns = max(1_000 * _MS, 2 * config.leader_heartbeat_timeout_ms * _MS)
        # what was already seen of the core, so each change is logged once
        self.transitions_seen = self.core.election.transition_count
        self.handing_over = False       # this node is giving its leadership away (close())
        self._repeating = None          # the state of a run of same-state transitions
        self._repeats = 0               # ... and how many of them went unlogged (DEBUG)
        self.term_seen = self.core.term
        self._was_leader = False
        self._led_term = 0            # the term this member last led (its role-change lines)
        # state for the consensus_module_state counter: 0 = derive from module.suspended
        self.phase = 0
        self.pending = False          # do_work has something to finish
        self.stop_index = 0           # the shutdown/abort entry we stop at
        self.stop_action = 0
        self._snapshot_started = False
        self._quit_started_ns = 0
        self.stop_requested = False
        self._answers: dict = {}
        self._transfer: Optional[tuple] = None   # a transfer request do_work is to start
        self._announce_until_ns = 0              # a transfer started: tell clients its outcome
        self.module.cluster_action_listeners.append(self.on_cluster_action)
        self.snapshotter.listeners.append(self._on_snapshot_recorded)
        self.snapshotter.failure_listeners.append(self._on_snapshot_failed)

    # ------------------------------------------------------------------ counters
    @property
    def state_code(self) -> int:
        return self.phase or (_S.SUSPENDED if self.module.suspended else _S.ACTIVE)

    def _on_snapshot_recorded(self, info: Any) -> None:
        self._values[self._snapshots_slot] += 1

    def _on_snapshot_failed(self, index: int, exc: BaseException) -> None:
        """An admin snapshot queued behind the one that failed (the requester asked for a
        snapshot, not for that one) is taken now, at the applied index, rather than dropped
        with it; the phase stays SNAPSHOT meanwhile, so ``aeronpy tool snapshot`` reports its
        outcome. Not while the node closes, nor when a shutdown takes its own final one.
        (This listener runs inside Snapshotter.poll.)"""
        if self.stop_action or self.phase in (_S.TERMINATING, _S.CLOSED, _S.FAILED) \
                or getattr(self.node, "_closed", False):
            return
        if self.snapshotter.take_queued():
            self.log.warning("snapshot at index %d failed: took the admin snapshot requested "
                             "behind it now", index)

    # ------------------------------------------------------------------ elections and roles
    def observe_election(self) -> None:
        """Log each election transition once (the pure core records them, it cannot log) and
        count elections: a leadership term advancing is one election held, whoever ran it."""
        core = self.core
        election = core.election
        count = election.transition_count
        new = count - self.transitions_seen
        if new > 0:
            history = election.history
            shown = history[-min(new, len(history)):]
            if new > len(shown):
                self.log.info("election: %d earlier transitions not shown (history is bounded)",
                              new - len(shown))
            for _now_ns, old, state, reason in shown:
                # a member without a quorum canvasses again and again (3 a second): log the
                # first of a run of same-state transitions, then how many followed
                if old == state and self._repeating == state:
                    self._repeats += 1
                    level = logging.DEBUG
                else:
                    if self._repeats:
                        self.log.info("election: %s -> %s repeated %d more times",
                                      getattr(self._repeating, "name", self._repeating),
                                      getattr(self._repeating, "name", self._repeating),
                                      self._repeats)
                    self._repeating, self._repeats = (state if old == state else None), 0
                    level = logging.INFO
                log_transition(self.log, "election", old, state, f"{reason} (term {core.term})",
                               level)
            self.transitions_seen = count
            self._values[self._transitions_slot] = count
        term = core.term
        if term != self.term_seen:
            if term > self.term_seen:
                self._values[self._elections_slot] += 1
            self.term_seen = term

    def on_role_change(self) -> None:
        core = self.core
        if core.election.transition_count != self.transitions_seen or core.term != self.term_seen:
            self.observe_election()           # the transition that caused it reads first
        role = Role(int(core.role))
        leading = role == Role.LEADER
        if self._was_leader and not leading:
            history = core.election.history
            reason = history[-1][3] if history else "unknown"
            given, self.handing_over = self.handing_over, False
            (self.log.info if given else self.log.warning)(
                "%s leadership of term %d: now %s in term %d, leader %s (%s)",
                "handed over" if given else "lost", self._led_term, role.name, core.term,
                _leader_text(core), reason)
        else:
            self.log.info("role %s, leader %s, term %d", role.name, _leader_text(core), core.term)
        if leading:
            self._led_term = core.term
        self._was_leader = leading

    # ------------------------------------------------------------------ admin requests
    def on_admin_request(self, client_ref: int, msg: Any) -> None:
        """Admit the request (aeronpy/cluster/admin_auth.py), then suspend/resume/shutdown/abort
        here and every other request type in node_snapshots, with the request's arguments."""
        kind = msg.request_type
        address = self.node.ingress.peer_address(client_ref)
        admitted, result, request_tag, refusal = self.gate.admit(
            None if address is None else address[0], client_ref, msg.correlation_id, kind,
            msg.payload)
        if self.gate.seen_lost is not None and not self._seen_lost_logged:
            self._seen_lost_logged = True
            self.log.warning("admin requests: %s", self.gate.seen_lost)
        if not admitted:
            self._values[self._rejected_slot] += 1
            self.node._drop_log.record(f"admin request refused: {refusal}")
            # tagged for the request when its tag verified, so the sender can show the reason
            self.respond(client_ref, msg.correlation_id, kind, self._error, result.encode(),
                         request_tag)
            return
        msg = P.AdminRequest(msg.correlation_id, kind, result)
        if kind == ADMIN_TRANSFER_LEADERSHIP:
            answer = self._answers.get((client_ref, msg.correlation_id))
            if answer is not None:     # re-sent (the answer was lost): never a second transfer
                self.respond(client_ref, msg.correlation_id, kind, *answer, request_tag)
                return
            refusal = self._check_transfer(result)
            if refusal is not None:
                self.respond(client_ref, msg.correlation_id, kind, *refusal, request_tag)
                return
            # started in do_work (between Readies, where the core takes a transfer), and
            # answered there
            self._transfer = (client_ref, msg.correlation_id, kind, request_tag,
                              _I64.unpack(result)[0])
            self.pending = True
            return
        if kind not in ADMIN_ACTIONS:
            if kind == self._snapshot_kind and self._refuse_snapshot(client_ref,
                                                                     msg.correlation_id):
                code, payload = self._error, (b"the cluster is stopping (a shutdown or abort was "
                                              b"ordered): no snapshot taken")
            else:
                code, payload = self.node.snapshots.on_admin_request(client_ref, msg)
            self.respond(client_ref, msg.correlation_id, kind, code, payload, request_tag)
            return
        key = (client_ref, msg.correlation_id)
        answer = self._answers.get(key)
        if answer is None:            # a re-sent request is answered again, never re-proposed
            answer = self._propose(ADMIN_ACTIONS[kind])
            if answer[0] != self._not_leader:
                self._remember(key, answer)
        code, payload = answer
        self.respond(client_ref, msg.correlation_id, kind, code, payload, request_tag)

    @property
    def _stop_ordered(self) -> bool:
        """A shutdown or abort is applied here, or this leader proposed one."""
        return bool(self.stop_action) or self.module._proposals_held in (E.ACTION_SHUTDOWN,
                                                                         E.ACTION_ABORT)

    def _remember(self, key: tuple, answer: tuple) -> None:
        if len(self._answers) >= _ANSWERS_KEPT:
            del self._answers[next(iter(self._answers))]
        self._answers[key] = answer

    def _check_transfer(self, args: bytes) -> Optional[tuple]:
        """(code, payload) refusing a leadership transfer request, None to go ahead."""
        module = self.module
        # the core too: it drops leader_state the moment it steps down (core.tick, a higher
        # term polled), the module's role follows only with that Ready, after do_work
        if not module.is_leader or self.core.leader_state is None:
            return _not_leader_answer(self.core, module)
        if len(args) != _I64.size:
            return self._error, b"bad transfer request: expected the target member id (i64)"
        target = _I64.unpack(args)[0]
        if self._stop_ordered:
            return self._error, b"the cluster is stopping"
        if target == self.node.member_id:
            return self._error, f"member {target} leads already".encode()
        if target != -1 and target not in self.core.config.voters:
            return self._error, (f"member {target} is not a voting member of this cluster "
                                 f"(members {sorted(self.core.config.voters)})").encode()
        return None

    def _start_transfer(self, now_ns: int) -> None:
        """The transfer asked for by the tool, now that the core takes steps: started (the
        answer names the successor the leader chose) or refused."""
        client_ref, correlation_id, kind, request_tag, target = self._transfer
        self._transfer = None
        refusal = self._check_transfer(_I64.pack(target))
        if refusal is not None:
            self.respond(client_ref, correlation_id, kind, *refusal, request_tag)
            return
        core = self.core
        chosen = core.leader_state.best_transfer_target() if target == -1 else target
        if chosen is None or not core.transfer_leadership(chosen, now_ns):
            self.respond(client_ref, correlation_id, kind, self._error,
                         b"no follower to hand leadership to", request_tag)
            return
        self.handing_over = True
        # until the successor is known: then our clients hear of it from us (_announce)
        self._announce_until_ns = now_ns + 4 * core.config.election_timeout_ns
        self.log.info("leadership transfer to member %d requested by the tool (term %d)",
                      chosen, core.term)
        self._remember((client_ref, correlation_id), (self._ok, _I64.pack(chosen)))
        self.respond(client_ref, correlation_id, kind, self._ok, _I64.pack(chosen), request_tag)

    def _announce(self, now_ns: int) -> bool:
        """After a transfer the tool asked for: once a successor leads, send our clients the
        NEW_LEADER event naming it (as close() does), since its own reaches only the clients
        its ingress heard from; give up when the transfer ended without one. True when done."""
        core = self.core
        still_leading = core.role == Role.LEADER and core.leader_state.transfer_target is None
        if core.role != Role.LEADER and core.leader_id not in (None, self.node.member_id):
            self.node._tell_clients_the_new_leader()
        elif now_ns < self._announce_until_ns and not still_leading:
            return False                        # still handing over
        if still_leading:
            self.handing_over = False           # it ended with us leading: a later loss is lost
        self._announce_until_ns = 0
        return True

    def _refuse_snapshot(self, client_ref: int, correlation_id: int) -> bool:
        """A snapshot asked for once a shutdown or abort was ordered: its entry would follow the
        stop entry, where no member applies it (and a restart would). A re-sent request that
        was answered before keeps its answer."""
        stopping = bool(self.stop_action) or (
            self.module.is_leader and self.module._proposals_held in (E.ACTION_SHUTDOWN,
                                                                       E.ACTION_ABORT))
        answered = getattr(self.node.snapshots, "_snapshot_answers", {})
        return stopping and (client_ref, correlation_id) not in answered

    def respond(self, client_ref: int, correlation_id: int, kind: int, code: int,
                payload: bytes, request_tag: bytes = b"") -> None:
        """Send an AdminResponse, tagged with the admin key when the cluster has a secret (a
        refusal has no admitted request to bind to, so its tag binds none)."""
        self.node.ingress.send(client_ref, self.node._encode(P.AdminResponse(
            correlation_id, kind, code, sign_response(self.gate.key, correlation_id, kind, code,
                                                      payload, request_tag))))

    def _propose(self, action: int) -> tuple:
        module = self.module
        if not module.is_leader:
            return _not_leader_answer(self.core, module)
        if self._stop_ordered:
            return self._error, b"the cluster is already stopping"
        index = module.propose_cluster_action(action, 0)
        if not index:
            return self._error, b"the leader refused the proposal (stepping down?)"
        self.log.info("cluster %s requested by the tool: proposed at index %d",
                      ACTION_NAMES[action], index)
        return self._ok, _I64.pack(index)

    # ------------------------------------------------------------------ applied actions
    def on_cluster_action(self, index: int, action: int, argument: int) -> None:
        name = ACTION_NAMES.get(action, str(action))
        if action in (E.ACTION_SUSPEND, E.ACTION_RESUME):
            self.log.info("cluster %s at index %d: client messages %s", name, index,
                          "held until resume" if action == E.ACTION_SUSPEND else "flow again")
        elif action == E.ACTION_SNAPSHOT:
            if self.snapshotter.in_progress and not self.phase:
                self.phase = _S.SNAPSHOT
                self.pending = True
        elif action in (E.ACTION_SHUTDOWN, E.ACTION_ABORT):
            self._on_stop_action(index, action, name)

    def _on_stop_action(self, index: int, action: int, name: str) -> None:
        core = self.core
        ordered_in = core.log.term_at(index)
        # live: this member learned the entry was committed in the term that ordered it (a
        # member applying a backlog may reach it only after that term ended)
        if not self.node.committed_in_term(index, ordered_in) or self.stop_action:
            self.log.warning("cluster %s at index %d ignored: ordered in term %d, this member is "
                             "in term %d (history from before a restart or a leader change)",
                             name, index, ordered_in, core.term)
            return
        self.module.halt_applying()
        self.stop_index, self.stop_action = index, action
        self._values[self._stopped_at_slot] = index
        self.pending = True
        if action == E.ACTION_SHUTDOWN:
            self.phase = _S.SNAPSHOT
            self.log.info("cluster shutdown at index %d: taking the final snapshot", index)
        else:
            self._start_quitting("cluster abort at index %d: stopping without a snapshot" % index)

    def _start_quitting(self, message: str) -> None:
        self.phase = _S.QUITTING
        self._quit_started_ns = self.node._clock()
        self.log.info("%s", message)

    # ------------------------------------------------------------------ each duty cycle
    def do_work(self, now_ns: int) -> int:
        """Finish what an applied action started, or start a leadership transfer; 0 when
        there is nothing to do yet."""
        if self._transfer is not None:
            self._start_transfer(now_ns)
            self.pending = bool(self.phase) or bool(self._announce_until_ns)
            return 1
        if self._announce_until_ns and self._announce(now_ns):
            self.pending = bool(self.phase)
            return 1
        phase = self.phase
        snapshotter = self.snapshotter
        if phase == _S.SNAPSHOT and not self.stop_action:
            if not snapshotter.in_progress:          # an admin snapshot finished
                self.phase = 0
                # a transfer still being announced keeps do_work running
                self.pending = bool(self._announce_until_ns)
                return 1
            return 0
        if phase == _S.SNAPSHOT:
            if snapshotter.in_progress:
                return 0                             # ours or an earlier one, still writing
            if snapshotter.last_snapshot_index >= self.stop_index:
                self._start_quitting("final snapshot at index %d recorded: stopping"
                                     % snapshotter.last_snapshot_index)
                return 1
            if not self._snapshot_started:
                self._snapshot_started = True
                snapshotter.take(self.stop_index, "cluster shutdown")
                return 1
            self.log.error("cluster shutdown: the final snapshot at index %d failed (see the "
                           "warning above); stopping without it", self.stop_index)
            self._start_quitting("stopping at index %d" % self.stop_index)
            return 1
        if phase == _S.QUITTING and not self.stop_requested and self._may_stop(now_ns):
            self.stop_requested = True
            self.pending = False
            self.node._stop_by_cluster_action()
            return 1
        return 0

    def _may_stop(self, now_ns: int) -> bool:
        """A follower stops at once; a leader once every follower went quiet (it stopped, or
        it is dead: waiting does not help it) or after ``quit_linger_ns``."""
        leader_state = self.core.leader_state
        if leader_state is None:
            return True
        if now_ns - self._quit_started_ns >= self.quit_linger_ns:
            waiting = [m for m, pr in leader_state.progress.items()
                       if now_ns - pr.last_heard_ns < _QUIET_HEARTBEATS * self._heartbeat_ns]
            self.log.warning("stopping while members %s still answer: they may not have "
                             "learned that index %d is committed, or not applied it yet",
                             waiting, self.stop_index)
            return True
        quiet_ns = _QUIET_HEARTBEATS * self._heartbeat_ns
        return all(now_ns - pr.last_heard_ns >= quiet_ns for pr in leader_state.progress.values())

    # ------------------------------------------------------------------ close
    @property
    def stopping(self) -> bool:
        """A shutdown/abort entry was acted on: the node closes without handing over."""
        return bool(self.stop_action)

    def closing(self) -> None:
        if self.phase == _S.FAILED:        # a failed node keeps saying so after it closes
            return
        self.phase = _S.TERMINATING
        self._values[int(SlotId.CONSENSUS_MODULE_STATE)] = self.phase
        if self.stop_action:
            self.log.info("closing after cluster %s at index %d",
                          ACTION_NAMES[self.stop_action], self.stop_index)

    def closed(self) -> None:
        self.gate.close()
        if self.phase == _S.FAILED:
            return
        self.phase = _S.CLOSED
        self._values[int(SlotId.CONSENSUS_MODULE_STATE)] = self.phase

    def failed(self) -> None:
        self.phase = _S.FAILED
        self._values[int(SlotId.CONSENSUS_MODULE_STATE)] = self.phase

