"""Leader side of the consensus module: client ingress and the leader's timed duties.

Split out of module.py for size; it is a mixin of :class:`ConsensusModule` and uses that
class's state. Everything here runs on the leader only (followers answer with redirects)
and changes only leader-local state: the replicated state changes when the entries proposed
here are applied (module.py). Answering re-sent messages that were applied already, and
SessionWindow, belong to the ack hold (acks.py).
"""
from __future__ import annotations

from typing import Any, Optional

from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P
from aeronpy.cluster.sessions import SessionState
from aeronpy.cluster.entries import SESSION_MESSAGE, encode_session_message
from aeronpy.service import CloseReason, Role

MAX_ENDPOINT_BYTES = 256


class LeaderDuties:
    """Ingress handling and leader ticks (mixin of ConsensusModule)."""

    # no session can time out before this (see _propose_session_timeouts); 0: check now
    _session_check_due_ns = 0
    # ---- ingress ------------------------------------------------------------------------
    def on_ingress(self, client_ref: object, message: object, now_ns: int) -> None:
        """A decoded client message from the client known to the driver as ``client_ref``."""
        self._now_ns = now_ns
        self._sync_role()
        handler = self._ingress_handlers.get(type(message))
        if handler is None:
            self.counters["ingress_unexpected_type"] += 1
            return
        try:
            handler(client_ref, message)
        except (TypeError, ValueError, AttributeError, OverflowError, UnicodeError):
            self.counters["ingress_malformed"] += 1

    def _event(self, client_ref: object, correlation_id: int, session_id: int, code: int,
               detail: str = "") -> None:
        leader_id = self.core.leader_id
        event = P.SessionEvent(correlation_id, session_id, code,
                               -1 if leader_id is None else leader_id, self.core.term, detail)
        if not self.egress.put(client_ref, event):
            self.counters["egress_dropped"] += 1

    def _redirect(self, client_ref: object, correlation_id: int, session_id: int) -> None:
        self.counters["redirects"] += 1
        leader_id = self.core.leader_id
        detail = "" if leader_id is None else self.config.members.get(leader_id, "")
        self._event(client_ref, correlation_id, session_id, P.EVENT_REDIRECT, detail)

    def _answer_open_session(self, client_ref: object, m: Any, existing: SessionState) -> None:
        self._event(client_ref, m.correlation_id, existing.session_id, P.EVENT_OK,
                    self.config.connect_ok_detail(self.config.members.get(self.member_id, ""),
                                                  m.protocol_version))

    def _refuse_connect(self, client_ref: object, correlation_id: int, code: int,
                        detail: str) -> None:
        """Answer a connect with its refusal; the client's transport place goes soon after
        (ModuleConfig.on_connect_refused), not only after session_timeout_ms of silence."""
        self._event(client_ref, correlation_id, 0, code, detail)
        if self.config.on_connect_refused is not None:
            self.config.on_connect_refused(client_ref)

    def _on_connect(self, client_ref: object, m: Any) -> None:
        if not self.config.accepts_protocol(m.protocol_version):
            self.counters["connect_bad_version"] += 1
            # (its place is kept: the client asks again, in an older version, from it)
            self._event(client_ref, m.correlation_id, 0, P.EVENT_ERROR,
                        f"protocol version {m.protocol_version} not supported (cluster speaks "
                        f"{P.OLDEST_CLIENT_PROTOCOL_VERSION} to {self.config.protocol_version})")
            return
        if not self.is_leader:
            self._redirect(client_ref, m.correlation_id, 0)
            return
        endpoint = m.response_endpoint
        if not isinstance(endpoint, str) or not endpoint or len(endpoint.encode()) > MAX_ENDPOINT_BYTES:
            self.counters["connect_bad_endpoint"] += 1
            self._refuse_connect(client_ref, m.correlation_id, P.EVENT_ERROR, "bad response_endpoint")
            return
        existing = self.sessions.find_client(endpoint, m.client_nonce)
        if (existing is not None and existing.connect_correlation_id == m.correlation_id
                and self.config.client_ref(endpoint) == client_ref):
            # the very connect that opened the session, re-sent by its own client (lost OK, or
            # a protocol-2 client asking for its session terms): answered, not authenticated
            # again (a one-time token would be refused the second time)
            self._answer_open_session(client_ref, m, existing)
            return
        try:
            accepted = self.config.authenticator.authenticate(bytes(m.credentials), endpoint)
        except Exception as exc:   # the application's code: its bug refuses, never stops a leader
            self.counters["authenticator_errors"] += 1
            report = self.config.on_authenticator_error
            if report is not None:
                report(exc)
            accepted = False
        if not accepted:
            self.counters["authentication_rejected"] += 1
            self._refuse_connect(client_ref, m.correlation_id, P.EVENT_AUTHENTICATION_REJECTED,
                                 "credentials rejected")
            return
        if existing is not None:        # a re-sent connect whose session is already open
            self._answer_open_session(client_ref, m, existing)
            return
        key = (endpoint, m.client_nonce)
        if key in self._pending_connects:
            return
        limit = self.config.max_sessions
        if len(self.sessions) + len(self._pending_connects) >= limit:
            # refused before anything is logged: every member holds every session, so the
            # bound is on all of them (the count is replicated state; any leader applies it)
            self.counters["connect_session_limit"] += 1
            self._refuse_connect(client_ref, m.correlation_id, P.EVENT_ERROR,
                                 f"too many sessions: the cluster holds at most {limit} (max_sessions)")
            return
        if self._propose(E.SESSION_OPEN, E.encode_session_open(
                self._stamp(), m.correlation_id, m.client_nonce, endpoint)):
            self._pending_connects[key] = (client_ref, m.correlation_id, m.protocol_version)

    def _session_of(self, client_ref: object, session_id: int, correlation_id: int) -> Optional[SessionState]:
        """The session a message names, or None (answered and counted) when it is not this
        client's open session: unknown ids and ids of other clients' sessions are refused."""
        s = self.sessions.get(session_id)
        if s is None:
            self.counters["ingress_unknown_session"] += 1
            self._event(client_ref, correlation_id, session_id, P.EVENT_CLOSED, "unknown session")
            return None
        if self.config.bind_session_to_endpoint and self.config.client_ref(s.response_endpoint) != client_ref:
            self.counters["ingress_session_client_mismatch"] += 1
            self._event(client_ref, correlation_id, session_id, P.EVENT_ERROR, "session belongs to another client")
            return None
        return s

    def on_session_message(self, client_ref: object, fields: tuple, now_ns: int) -> None:
        """``on_ingress`` for a SessionMessage the driver decoded to its fields
        ``(session_id, seq, correlation_id, service_id, payload)``: the same checks and
        counters without building a message object (the node's ingress hot path, so the
        checks are written out here rather than spread over helper calls)."""
        self._now_ns = now_ns
        self._sync_role()
        try:
            session_id, seq, correlation_id, service_id, payload = fields
            if self._role is not Role.LEADER:
                self._redirect(client_ref, correlation_id, session_id)
                return
            if not self._leader_ready:
                # it may not even have applied the session's open yet; the client re-sends
                # after our NEW_LEADER event
                self.counters["ingress_leader_not_ready"] += 1
                return
            s = self.sessions.get(session_id)
            config = self.config
            if s is None or (config.bind_session_to_endpoint
                             and config.client_ref(s.response_endpoint) != client_ref):
                self._session_of(client_ref, session_id, correlation_id)   # answers the refusal
                return
            session_id = s.session_id
            self._last_heard_ns[session_id] = now_ns
            if len(payload) > config.max_message_bytes:
                self._reject_message(client_ref, s, seq, correlation_id,
                                     P.DETAIL_MESSAGE_TOO_LARGE, "ingress_too_large")
                return
            if not 0 <= service_id < self._service_count:
                self._reject_message(client_ref, s, seq, correlation_id,
                                     P.DETAIL_UNKNOWN_SERVICE, "ingress_unknown_service")
                return
            applied = s.last_applied_seq
            if seq <= applied:
                self._answer_applied(s, seq)
                return
            sequenced = self._leader_seq.get(session_id, 0)
            if sequenced < applied:
                sequenced = applied
            if seq <= sequenced:
                self.counters["ingress_already_sequenced"] += 1
                return
            if seq != sequenced + 1:
                self.counters["ingress_seq_gap"] += 1   # the client re-sends from its window
                return
            if self._propose(SESSION_MESSAGE, encode_session_message(
                    self._stamp(), session_id, seq, correlation_id, service_id, payload)):
                self._leader_seq[session_id] = seq
        except (TypeError, ValueError, AttributeError, OverflowError, UnicodeError):
            self.counters["ingress_malformed"] += 1

    def _on_session_message(self, client_ref: object, m: Any) -> None:
        self.on_session_message(client_ref, (m.session_id, m.seq, m.correlation_id, m.service_id,
                                             m.payload), self._now_ns)

    def _reject_message(self, client_ref: object, s: SessionState, seq: int,
                        correlation_id: int, detail: str, counter: str) -> None:
        """Refuse a message above max_message_bytes or for a service this cluster lacks,
        every time it arrives (so a lost error is re-sent with the message), and consume its
        seq with a placeholder entry: otherwise it would sit at the head of the client's window
        and every later message would be a seq gap for good. The placeholder's SessionAck
        releases it from the window; the client fails a request() waiting for it at once."""
        self.counters[counter] += 1
        self._event(client_ref, correlation_id, s.session_id, P.EVENT_ERROR, detail)
        if seq <= s.last_applied_seq:
            self._ack_pending.add(s.session_id)
            return
        sequenced = max(self._leader_seq.get(s.session_id, 0), s.last_applied_seq)
        if seq == sequenced + 1 and self._propose(E.SESSION_MESSAGE, E.encode_session_message(
                self._stamp(), s.session_id, seq, correlation_id, E.REJECTED_MESSAGE_SERVICE_ID, b"")):
            self._leader_seq[s.session_id] = seq

    def _on_keepalive(self, client_ref: object, m: Any) -> None:
        if not self.is_leader:
            self._redirect(client_ref, 0, m.session_id)
            return
        if not self._leader_ready:
            self.counters["ingress_leader_not_ready"] += 1
            return
        if m.leadership_term > self._leadership_term:
            # the client has heard of a newer term: this leader is stale (stopped and resumed,
            # say) and may not know the session; unanswered, never "unknown session" (a
            # client's word cannot depose a leader: a forged term would)
            self.counters["keepalive_newer_term"] += 1
            return
        if self._session_of(client_ref, m.session_id, 0) is not None:
            self._last_heard_ns[m.session_id] = self._now_ns

    def _on_close(self, client_ref: object, m: Any) -> None:
        if not self.is_leader:
            self._redirect(client_ref, 0, m.session_id)
            return
        if not self._leader_ready:
            self.counters["ingress_leader_not_ready"] += 1
            return
        if self._session_of(client_ref, m.session_id, 0) is None or m.session_id in self._proposed_closes:
            return
        if self._propose(E.SESSION_CLOSE, E.encode_session_close(
                self._stamp(), m.session_id, CloseReason.CLIENT_ACTION)):
            self._proposed_closes.add(m.session_id)

    # ---- leader duties ------------------------------------------------------------------
    def tick(self, now_ns: int) -> int:
        """Leader duties due at ``now_ns`` (session timeouts, timers, service messages);
        returns how many entries it proposed."""
        self._now_ns = now_ns
        self._sync_role()
        if not (self._leader_ready and self._role is Role.LEADER) or self.container.failure is not None:
            return 0
        proposed = 0
        if now_ns >= self._session_check_due_ns:
            proposed = self._propose_session_timeouts(now_ns)
            if proposed < 0:
                return -proposed - 1
        leader_time_ns = now_ns if now_ns > self._last_stamp_ns else self._last_stamp_ns
        if self.timers.has_due(leader_time_ns):
            budget = self.config.proposals_per_tick_max
            for service_id, correlation_id, timer_seq in self.timers.due(leader_time_ns):
                if timer_seq not in self._proposed_timer_fires:
                    if not self._propose(E.TIMER_FIRE, E.encode_timer_fire(
                            self._stamp(), service_id, correlation_id, timer_seq)):
                        # refused (e.g. a leadership transfer is under way): due() popped it, so
                        # put it back or it would never fire while this member stays leader
                        self.timers.requeue(service_id, correlation_id, timer_seq)
                        return proposed
                    self._proposed_timer_fires.add(timer_seq)
                    proposed += 1
                if proposed >= budget:
                    return proposed
        if self.pending_service_messages:
            proposed = self._propose_service_messages(proposed)
        return proposed

    def next_due_ns(self) -> int:
        """When ``tick`` next proposes something (see ConsensusModule.next_due_ns)."""
        if not (self._leader_ready and self._role is Role.LEADER) or self.container.failure is not None:
            return 1 << 62
        if self.pending_service_messages:
            return 0
        due = self._session_check_due_ns
        timer_due = self.timers.next_deadline()
        if timer_due is None:
            return due
        # a timer fires once max(now, the last stamp) reaches it (tick's leader_time_ns): on a
        # leader whose clock is behind the last stamp, one the stamp has reached is due now
        if timer_due <= self._last_stamp_ns:
            return 0
        return due if timer_due >= due else timer_due

    def _propose_session_timeouts(self, now_ns: int) -> int:
        """Propose the close of every session silent for ``session_timeout_ns``. Returns how
        many it proposed, or ``-(that + 1)`` when the tick must stop there (budget used up
        or a proposal refused). A full pass sets ``_session_check_due_ns``: the earliest time
        a session can time out (heard times only grow, and a session heard of later times out
        later), so the ticks before it skip the pass."""
        budget = self.config.proposals_per_tick_max
        proposed = 0
        timeout_ns = self.config.session_timeout_ns
        earliest_heard_ns = now_ns
        for session_id, heard_ns in list(self._last_heard_ns.items()):
            if proposed >= budget:
                self._session_check_due_ns = 0
                return -proposed - 1
            if heard_ns < earliest_heard_ns:
                earliest_heard_ns = heard_ns
            if now_ns - heard_ns >= timeout_ns and session_id not in self._proposed_closes \
                    and session_id in self.sessions:
                if not self._propose(E.SESSION_CLOSE, E.encode_session_close(
                        self._stamp(), session_id, CloseReason.TIMEOUT)):
                    self._session_check_due_ns = 0
                    return -proposed - 1
                self._proposed_closes.add(session_id)
                self.counters["session_timeouts_proposed"] += 1
                proposed += 1
        self._session_check_due_ns = earliest_heard_ns + timeout_ns
        return proposed

    def _propose_service_messages(self, proposed: int) -> int:
        budget = self.config.proposals_per_tick_max
        for pending_id, (service_id, payload) in self.pending_service_messages.items():
            if pending_id <= self._service_messages_proposed_upto:
                continue
            if proposed >= budget or not self._propose(E.SERVICE_MESSAGE, E.encode_service_message(
                    self._stamp(), service_id, pending_id, payload)):
                return proposed
            self._service_messages_proposed_upto = pending_id
            proposed += 1
        return proposed
