"""The leader's ack hold: SessionAcks held back so that a client never releases a message
whose reply it may still lack.

A SessionAck is cumulative and a released message is never re-sent, so acks stop below a
message whose reply a full egress queue dropped (ReplyPath.dropped_replies) until its re-send
is answered from the reply cache, and a new leader's acks wait behind its NEW_LEADER event and
stop below each message it answered before it was ready until it has queued an answer to a
re-send of it (_lead_base). What a full queue refused (acks, NEW_LEADER events) is retried
with a back-off; a client's SessionWindow (sent on every NEW_LEADER event, and on a stall
when an ack came below what it released) ends the holds below its window start. Why each
rule exists: the docstrings of tests/cluster/test_egress_drop_holds_acks.py,
test_review3_egress_hold.py, test_review4_egress_hold.py, test_review5_session_window.py and
test_review6_egress_hold.py.

Split out of module.py for size: a mixin of :class:`ConsensusModule` that uses that class's
state (sessions, egress, config, counters, _reply, _now_ns); it owns the state set in
:meth:`AckHold._init_acks`, all of it leader-local.
"""
from __future__ import annotations

from typing import Any, Callable

from aeronpy._applypath import keep_answerable
from aeronpy._codec import encode_egress_message as _encode_egress_message
from aeronpy.cluster import protocol as P
from aeronpy.cluster.sessions import SessionState

_ACK_RETRY_MIN_NS = 1_000_000       # an ack a full egress queue refused: tried again after
_ACK_RETRY_MAX_NS = 64_000_000      # 1 ms, doubling while every such client's queue stays full


def _add_answerable(table: dict, session_id: int, seq: int, replies) -> None:
    """Add ``seq`` to the session's set in ``table``, kept to the seqs the reply cache can
    still answer (so bounded by it)."""
    seqs = table.get(session_id)
    if seqs is None:
        seqs = table[session_id] = set()
    seqs.add(seq)
    if len(seqs) > len(replies):
        keep_answerable(seqs, replies)


class AckHold:
    """The ack hold, its retries and the egress drain (mixin of ConsensusModule)."""

    # ---- state ------------------------------------------------------------------------
    def _init_acks(self) -> None:
        """The hold's leader-local state (ConsensusModule.__init__)."""
        self._ack_pending: set[int] = set()
        self._ack_retry: set[int] = set()      # sessions a full egress queue refused (_flush_acks)
        self._ack_refused: set[int] = set()    # ... of them, those owed an ack
        self._ack_retry_ns = 0
        self._ack_retry_gap_ns = _ACK_RETRY_MIN_NS
        # Leader-local, as dropped_replies (_answer_applied): per session with
        # messages, its last_applied_seq when this leader turned ready (the base). The first
        # reply to a seq above it was queued here, to the client that sent it to this leader,
        # or dropped and noted. A seq at or below it was answered by an earlier leader, or
        # here while catching up (perhaps to no client stream): the client has a reply from
        # this leader only once a re-send of it was answered from the cache and queued
        # (_resent_queued). Acks stop below the first answered seq at or below the base that
        # has neither (_ack_below_unread), whatever the client sent since: its re-send may be
        # lost on the way, or its answer dropped. The client's window start (SessionWindow,
        # sent on our NEW_LEADER event) says which of them it released by replies and will
        # never re-send (_window_floor). An ack at or above the base ends that hold
        # (_base_passed).
        self._lead_base: dict[int, int] = {}
        self._window_floor: dict[int, int] = {}
        self._resent_queued: dict[int, set[int]] = {}
        # Sessions an ack at or past their base reached: every message up to the base
        # was answered here or released by the client (its window start), so the hold ends.
        self._base_passed: set[int] = set()
        # NEW_LEADER events a full queue refused: retried with the acks, and a session's acks
        # wait behind its event, which makes the client re-send what it still lacks replies for
        self._new_leader_owed: set[int] = set()

    def _reset_acks(self) -> None:
        """A change of role or term (_reset_leader_state): every hold and retry ends."""
        self._ack_pending.clear()
        self._ack_retry.clear()
        self._ack_refused.clear()
        self._reply.dropped_replies.clear()
        self._lead_base.clear()
        self._window_floor.clear()
        self._resent_queued.clear()
        self._base_passed.clear()
        self._new_leader_owed.clear()

    def _forget_acks(self, session_id: int) -> None:
        """A closed session (_close_session): nothing is held or owed for it."""
        self._ack_pending.discard(session_id)
        self._ack_retry.discard(session_id)
        self._ack_refused.discard(session_id)
        self._reply.dropped_replies.pop(session_id, None)
        self._lead_base.pop(session_id, None)
        self._window_floor.pop(session_id, None)
        self._resent_queued.pop(session_id, None)
        self._base_passed.discard(session_id)
        self._new_leader_owed.discard(session_id)

    def _new_leader_event(self, s: SessionState, put: Callable[[object, object], bool],
                          client_ref: Callable[[str], object], endpoints: str) -> None:
        """At turning ready (_check_ready), per session: its base and its NEW_LEADER event,
        owed and retried with the acks when a full queue refuses it."""
        session_id = s.session_id
        if s.last_applied_seq:
            self._lead_base[session_id] = s.last_applied_seq
        if not put(client_ref(s.response_endpoint),
                   P.NewLeaderEvent(session_id, self._leadership_term, self.member_id, endpoints)):
            self.counters["new_leader_refused"] += 1
            self._new_leader_owed.add(session_id)
            self._owe_retry(session_id, False)

    # ---- ingress: re-sent messages and window starts ----------------------------------
    def _answer_applied(self, s: SessionState, seq: int) -> None:
        """A re-sent message that was applied already: its original replies, or an ack."""
        replies = s.replies.get(seq)
        if replies:
            self.counters["replies_from_cache"] += len(replies)
            queued = [self._emit(s, P.EgressMessage(s.session_id, correlation_id, seq, payload))
                      for correlation_id, payload in replies]
            session_id = s.session_id
            dropped = self._reply.dropped_replies.get(session_id)
            pre_lead = seq <= self._lead_base.get(session_id, 0)   # applied before ready
            if not queued[0]:
                # still owed (acks held below it) only if this leader never queued a reply to
                # it: one queued reaches the client, which then releases the message and never
                # re-sends it, so a hold on it would stall the window for good
                # (_lead_base). Past the base, every such message was answered here or lies
                # below the client's window start: this is a late duplicate, owed nothing.
                if pre_lead and seq not in self._resent_queued.get(session_id, ()) \
                        and session_id not in self._base_passed:
                    self._reply.note_dropped(s, seq)
            else:
                if pre_lead and session_id not in self._base_passed:
                    _add_answerable(self._resent_queued, session_id, seq, s.replies)
                    if s.last_applied_seq > self._lead_base[session_id]:
                        # the ack held below it for messages above the base goes out now,
                        # not with the next message
                        self._ack_pending.add(session_id)
                if dropped is not None and seq in dropped:
                    dropped.discard(seq)              # answered at last: let the acks move on
                    if not dropped:
                        del self._reply.dropped_replies[session_id]
                    self._ack_pending.add(session_id)
        else:
            self.counters["duplicate_acked"] += 1
            self._ack_pending.add(s.session_id)

    def _on_session_window(self, client_ref: object, m: Any) -> None:
        """The lowest seq the session's client still holds (SessionWindow, sent ahead of a
        re-sent window when it released messages above the last ack it got): the ack holds
        below it end. A hold below the window can save nothing, as window_base only rises at
        the client and it never re-sends a seq below it; a stale, reordered or lost
        SessionWindow only lifts less. Followers ignore it (the re-sent messages behind it
        get the redirect), as does a leader not ready yet (it holds nothing then)."""
        if not self.leader_ready:
            self.counters["session_window_not_leader"] += 1
            return
        s = self._session_of(client_ref, m.session_id, 0)
        if s is None:
            return
        session_id = s.session_id
        base = m.window_base
        if not 0 < base <= s.last_applied_seq + 1:
            # no client of this session can hold its window there: bad input, lifts nothing
            self.counters["session_window_refused"] += 1
            return
        self._last_heard_ns[session_id] = self._now_ns
        lifted = False
        dropped = self._reply.dropped_replies.get(session_id)
        if dropped:
            below = {seq for seq in dropped if seq < base}
            if below:
                dropped -= below
                if not dropped:
                    del self._reply.dropped_replies[session_id]
                lifted = True
                self._resend_multi_replies(s, below)
        # a new leader's hold below the answers it gave before it was ready
        # (_ack_below_unread): messages below the window start are never re-sent.
        lead_base = self._lead_base.get(session_id)
        if lead_base is not None and session_id not in self._base_passed:
            floor = min(base - 1, lead_base)
            old_floor = self._window_floor.get(session_id, 0)
            if floor > old_floor:
                self._window_floor[session_id] = floor
                lifted = True
                queued = self._resent_queued.get(session_id, ())
                self._resend_multi_replies(s, [q for q in s.replies if old_floor < q <= floor
                                               and q not in queued])
        if lifted:
            self.counters["session_window_holds_lifted"] += 1
        # acked even when nothing was held: the ack (at or past base - 1 now) tells the client
        # its window start was heard, so it sends no more of them
        self._ack_pending.add(session_id)

    def _resend_multi_replies(self, s: SessionState, seqs) -> None:
        """The client released ``seqs`` on a reply (they are below its window start) and will
        never re-send them. A message answered more than once may still lack a later reply:
        one the old leader died before sending, or one a full queue dropped here. Every reply
        kept for such a message is queued again (best effort: a full queue drops them, with
        no hold); the client's duplicate filter drops those it has."""
        replies = s.replies
        session_id = s.session_id
        for seq in sorted(seqs):
            answers = replies.get(seq)
            if answers is not None and len(answers) > 1:
                self.counters["replies_from_cache"] += len(answers)
                for correlation_id, payload in answers:
                    self._emit(s, P.EgressMessage(session_id, correlation_id, seq, payload))

    # ---- egress -------------------------------------------------------------------------
    def _flush_acks(self) -> None:
        ready = ()
        if self._ack_retry and self._now_ns - self._ack_retry_ns >= self._ack_retry_gap_ns:
            ready = self._retry_acks()
        pending = self._ack_pending
        if not pending and not ready:
            return
        dropped = self._reply.dropped_replies
        put = self.egress.put
        client_ref = self.config.client_ref
        lead_base, base_passed = self._lead_base, self._base_passed
        owed = self._new_leader_owed
        for session_id in sorted(pending.union(ready) if ready else pending):
            s = self.sessions.get(session_id)
            if s is None:
                continue
            ref = client_ref(s.response_endpoint)
            if owed and not self._put_owed(s, ref):
                self._owe_retry(session_id, session_id in pending)
                continue
            if session_id not in pending:
                continue                    # retried for its event only
            ack_seq = s.last_applied_seq
            if lead_base and session_id in lead_base and session_id not in base_passed:
                # past the base too: a client that wrote above it before it read our
                # NEW_LEADER event re-sends on that event, and that re-send may be lost
                ack_seq = self._ack_below_unread(s, lead_base[session_id], ack_seq)
            if dropped and session_id in dropped:
                ack_seq = self._ack_below_dropped(s, dropped, ack_seq)
            if not put(ref, P.SessionAck(session_id, self._leadership_term, ack_seq)):
                # the client's queue is full: an ack is cumulative, so it is not dropped
                # but tried again (_retry_acks: after 1 ms, backing off to 64 ms while
                # every such queue stays full); dropped, the replies held back
                # behind it (and the client's window) waited for the next message
                self._owe_retry(session_id, True)
            elif lead_base and session_id in lead_base and ack_seq >= lead_base[session_id] \
                    and session_id not in base_passed:
                # the client releases every message this leader applied before it was
                # ready: acks are no longer held for their re-sends (_answer_applied)
                base_passed.add(session_id)
                self._window_floor.pop(session_id, None)
                self._resent_queued.pop(session_id, None)
        pending.clear()

    def _owe_retry(self, session_id: int, ack: bool) -> None:
        """A full queue refused what ``session_id`` is owed: try again (_retry_acks)."""
        if not self._ack_retry:
            self._ack_retry_ns = self._now_ns
            self._ack_retry_gap_ns = _ACK_RETRY_MIN_NS
        self._ack_retry.add(session_id)
        if ack:
            self._ack_refused.add(session_id)

    def _put_owed(self, s: SessionState, ref: object) -> bool:
        """Queue the NEW_LEADER event a full queue refused, ahead of any ack. False when the
        queue is still full; the event stays owed."""
        session_id = s.session_id
        if session_id in self._new_leader_owed:
            if not self.egress.put(ref, P.NewLeaderEvent(session_id, self._leadership_term,
                                                         self.member_id,
                                                         self.config.ingress_endpoints())):
                return False
            self._new_leader_owed.discard(session_id)
        return True

    def _ack_below_unread(self, s: SessionState, base: int, ack_seq: int) -> int:
        """A new leader's ack below the answers it gave before it was ready (_lead_base) that
        it has not queued to the client since (_resent_queued): the client may lack their
        replies. Its re-sends come in order, but the node reads ingress in batches and drains
        egress between them, so an ack can go out before the rest of a re-sent window is
        read; the client may have written new messages before it read our NEW_LEADER event;
        and a re-send can be lost on the way. Released, such a message would never be asked
        for again. Messages below the client's window start (_window_floor) and messages with
        no reply kept (unanswered, refused) hold nothing."""
        session_id = s.session_id
        floor = self._window_floor.get(session_id, 0)
        queued = self._resent_queued.get(session_id, ())
        replies = s.replies
        unread = [q for q in replies if floor < q <= base and replies[q] and q not in queued]
        return min(ack_seq, min(unread) - 1) if unread else ack_seq

    def _retry_acks(self) -> list:
        """Every 1 ms: the acks (and NEW_LEADER events: _put_owed) a full queue
        refused are sent again to the clients whose queue has room now; returns those
        sessions. Looked at first, before anything is computed: a client gone for good
        keeps its queue full until its session times out, and its held ack costs a scan of
        its dropped replies (_ack_below_dropped), which for a few hundred such sessions took
        the whole of every millisecond."""
        self._ack_retry_ns = self._now_ns
        get, client_ref = self.sessions.get, self.config.client_ref
        backlog, full = self.egress.backlog, self.egress.queue_max
        retry = self._ack_retry
        ready = [i for i in retry if (s := get(i)) is None
                 or backlog(client_ref(s.response_endpoint)) < full]
        refused = self._ack_refused
        for session_id in ready:
            retry.discard(session_id)
            if session_id in refused:
                refused.discard(session_id)
                self._ack_pending.add(session_id)
        # clients that read nothing for a while (gone, most likely, until their sessions time
        # out) are looked at less and less often: 1 ms doubling to 64 ms, back to 1 ms on room
        self._ack_retry_gap_ns = (_ACK_RETRY_MIN_NS if ready
                                  else min(2 * self._ack_retry_gap_ns, _ACK_RETRY_MAX_NS))
        return ready

    def _ack_below_dropped(self, s: SessionState, dropped: dict, ack_seq: int) -> int:
        """A SessionAck is cumulative: one past a message whose reply a full egress queue
        dropped would release that message from the client's window, and the client would
        never re-send it nor get its reply. Acks stop below it until the client re-sends it
        and its reply from the cache is queued (_answer_applied). A seq that left the reply
        cache can no longer be answered, so it stops holding the acks."""
        seqs = dropped[s.session_id]
        keep_answerable(seqs, s.replies)
        if not seqs:
            del dropped[s.session_id]
            return ack_seq
        return min(ack_seq, min(seqs) - 1)

    def drain_egress(self, send: Callable[[object, object], bool], limit: int = 1 << 30,
                     wire: bool = False) -> int:
        """Hand egress to ``send(client_ref, message) -> bool`` (False: that client is full).

        ``wire=True``: replies reach ``send`` already encoded (bytes in the EgressMessage
        wire format, built without a message object); other messages stay objects.
        """
        self._flush_acks()
        return self.egress.drain(send, limit, _encode_egress_message if wire else P.EgressMessage)

    def drain_egress_encoded(self, send_bytes: Callable[[object, bytes], int],
                             encode: Callable[[object], bytes], limit: int = 1 << 30) -> int:
        """``drain_egress`` for a driver whose transport sends bytes (the node):
        ``send_bytes(client_ref, data) -> int`` is called with every message encoded (replies
        straight from their queued fields, others with ``encode``); BACK_PRESSURED keeps that
        client's backlog, any other result takes the message off the queue."""
        self._flush_acks()
        return self.egress.drain_encoded(send_bytes, encode, limit)

    def take_egress(self) -> list[tuple[object, object]]:
        """All queued egress as (client_ref, message), oldest first per client."""
        self._flush_acks()
        return self.egress.take_all(P.EgressMessage)
