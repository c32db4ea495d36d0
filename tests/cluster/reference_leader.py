"""The leader's SessionMessage handling as it was before the fast entry (text as on main),
kept as the reference model test_ingress_fast_path.py compares ``on_session_message`` against.
Installed on a module with ``use_reference(module)``; not used by the package. Since
2026-11-27 it also refuses a message for a service id the cluster lacks, as it refuses an
oversized one (same placeholder, detail "unknown service")."""
from functools import partial
from typing import Any

from aeronpy.cluster import entries as E
from aeronpy.cluster import protocol as P
from aeronpy.cluster.sessions import SessionState


def use_reference(module) -> None:
    """Route the module's SessionMessage ingress through the reference functions below."""
    module._ingress_handlers[P.SessionMessage] = partial(_on_session_message, module)


def _on_session_message(self, client_ref: object, m: Any) -> None:
    if not self.is_leader:
        self._redirect(client_ref, m.correlation_id, m.session_id)
        return
    if not self._leader_ready:
        # it may not even have applied the session's open yet; the client re-sends after
        # our NEW_LEADER event
        self.counters["ingress_leader_not_ready"] += 1
        return
    s = self._session_of(client_ref, m.session_id, m.correlation_id)
    if s is None:
        return
    self._last_heard_ns[s.session_id] = self._now_ns
    seq = m.seq
    if len(m.payload) > self.config.max_message_bytes:
        _reject(self, client_ref, s, m, P.DETAIL_MESSAGE_TOO_LARGE, "ingress_too_large")
        return
    if not 0 <= m.service_id < len(self.container):
        _reject(self, client_ref, s, m, P.DETAIL_UNKNOWN_SERVICE, "ingress_unknown_service")
        return
    if seq <= s.last_applied_seq:
        self._answer_applied(s, seq)
        return
    sequenced = max(self._leader_seq.get(s.session_id, 0), s.last_applied_seq)
    if seq <= sequenced:
        self.counters["ingress_already_sequenced"] += 1
        return
    if seq != sequenced + 1:
        self.counters["ingress_seq_gap"] += 1   # the client re-sends from its window
        return
    if self._propose(E.SESSION_MESSAGE, E.encode_session_message(
            self._stamp(), s.session_id, seq, m.correlation_id, m.service_id, m.payload)):
        self._leader_seq[s.session_id] = seq

def _reject(self, client_ref: object, s: SessionState, m: Any, detail: str, counter: str) -> None:
    """Refuse a message above max_message_bytes (or for a missing service), every time it
    arrives (so a lost error is re-sent with the message), and consume its seq with a
    placeholder entry: otherwise it would sit at the head of the client's window and every
    later message would be a seq gap for good. The placeholder's SessionAck releases it."""
    self.counters[counter] += 1
    self._event(client_ref, m.correlation_id, s.session_id, P.EVENT_ERROR, detail)
    seq = m.seq
    if seq <= s.last_applied_seq:
        self._ack_pending.add(s.session_id)
        return
    sequenced = max(self._leader_seq.get(s.session_id, 0), s.last_applied_seq)
    if seq == sequenced + 1 and self._propose(E.SESSION_MESSAGE, E.encode_session_message(
            self._stamp(), s.session_id, seq, m.correlation_id, E.REJECTED_MESSAGE_SERVICE_ID, b"")):
        self._leader_seq[s.session_id] = seq
