"""A minimal stand-in for the cluster layer, so SimCluster can host real services now.

It sequences client messages as log entries, applies committed ones to the hosted
``ClusteredService`` instances with cluster time taken from the entry, and answers on the
leader. It is replaced by ``aeronpy.cluster.ConsensusModule`` when the sessions layer lands;
keep it small. Replicated state (what each client last had applied, its latest replies) is
derived from the log only, so every member holds the same.
"""
from __future__ import annotations

from struct import Struct

from aeronpy.service import Role

CLIENT_MESSAGE = 16     # payload: i64 timestamp | i64 client id | i64 correlation id | i32 service id | body
SERVICE_MESSAGE = 17    # payload: i64 timestamp | i32 service id | body
_CLIENT_HEADER = Struct("<qqqi")
_SERVICE_HEADER = Struct("<qi")
REPLIES_KEPT_PER_CLIENT = 16


def encode_client_entry(timestamp_ns: int, client_id: int, correlation_id: int, service_id: int, body) -> bytes:
    return _CLIENT_HEADER.pack(timestamp_ns, client_id, correlation_id, service_id) + bytes(body)


def encode_service_entry(timestamp_ns: int, service_id: int, body) -> bytes:
    return _SERVICE_HEADER.pack(timestamp_ns, service_id) + bytes(body)


class SimClientSession:
    """What a service sees as ``session``: ``id`` and ``offer`` (a reply on the leader only)."""

    __slots__ = ("id", "_applier", "_correlation_id")

    def __init__(self, applier, client_id: int, correlation_id: int):
        self.id = client_id
        self._applier = applier
        self._correlation_id = correlation_id

    def offer(self, payload) -> int:
        self._applier.record_reply(self.id, self._correlation_id, bytes(payload))
        return len(payload) + 1


class SimClusterView:
    """The ``cluster`` handed to ``on_start``: the subset the minimal layer can honour."""

    def __init__(self, applier):
        self._applier = applier
        self.client_sessions: dict = {}

    @property
    def member_id(self) -> int:
        return self._applier.member_id

    @property
    def role(self) -> Role:
        return self._applier.role

    @property
    def commit_index(self) -> int:
        return self._applier.commit_index

    @property
    def time_ns(self) -> int:
        return self._applier.cluster_time_ns

    def offer(self, message) -> int:
        return self._applier.propose_service_message(0, message)

    def get_client_session(self, session_id: int):
        return self.client_sessions.get(session_id)

    def schedule_timer(self, correlation_id: int, deadline_ns: int) -> bool:
        raise NotImplementedError("timers arrive with the sessions layer (aeronpy.cluster)")

    def cancel_timer(self, correlation_id: int) -> bool:
        raise NotImplementedError("timers arrive with the sessions layer (aeronpy.cluster)")

    def close_client_session(self, session_id: int) -> bool:
        raise NotImplementedError("sessions arrive with the sessions layer (aeronpy.cluster)")


class MinimalApplier:
    def __init__(self, member_id: int, services: list, core, send_reply):
        self.member_id = member_id
        self.services = services
        self.core = core
        self._send_reply = send_reply           # send_reply(client_id, correlation_id, payload)
        self.role = Role.FOLLOWER
        self.commit_index = 0
        self.cluster_time_ns = 0
        self.last_applied_correlation: dict = {}  # client id -> highest correlation id applied
        self.replies: dict = {}                   # client id -> {correlation id: reply}
        self.applied: list = []                   # (index, term, type) of everything applied
        self.view = SimClusterView(self)
        for service in services:
            service.on_start(self.view, None)

    # ------------------------------------------------------------------ ingress (leader)
    def on_client_message(self, now_ns: int, client_id: int, correlation_id: int, service_id: int, body) -> str:
        """Returns 'proposed', 'duplicate' (answered from the reply cache) or 'not_leader'."""
        if correlation_id <= self.last_applied_correlation.get(client_id, 0):
            if self.role == Role.LEADER:
                # the cached reply, or None: "applied long ago, its reply is no longer kept"
                self._send_reply(client_id, correlation_id, self.replies.get(client_id, {}).get(correlation_id))
            return "duplicate"
        index = self.core.propose(CLIENT_MESSAGE, encode_client_entry(now_ns, client_id, correlation_id,
                                                                      service_id, body))
        return "proposed" if index else "not_leader"

    def propose_service_message(self, service_id: int, body) -> int:
        if self.role != Role.LEADER:
            return 1   # as on followers of the real cluster: accepted, the leader's copy counts
        return self.core.propose(SERVICE_MESSAGE, encode_service_entry(self.cluster_time_ns, service_id, body))

    # ------------------------------------------------------------------ egress (leader only)
    def record_reply(self, client_id: int, correlation_id: int, payload: bytes) -> None:
        kept = self.replies.setdefault(client_id, {})
        kept[correlation_id] = payload
        if len(kept) > REPLIES_KEPT_PER_CLIENT:
            del kept[min(kept)]
        if self.role == Role.LEADER:
            self._send_reply(client_id, correlation_id, payload)

    # ------------------------------------------------------------------ apply (every member)
    def on_role_change(self, role: Role) -> None:
        self.role = role
        for service in self.services:
            service.on_role_change(role)

    def apply(self, log, index: int) -> None:
        entry_type = log.type_at(index)
        self.applied.append((index, log.term_at(index), entry_type))
        payload = log.payload_at(index)
        if entry_type == CLIENT_MESSAGE:
            timestamp_ns, client_id, correlation_id, service_id = _CLIENT_HEADER.unpack_from(payload, 0)
            self.cluster_time_ns = max(self.cluster_time_ns, timestamp_ns)
            expected = self.last_applied_correlation.get(client_id, 0) + 1
            if correlation_id != expected:
                return    # sequenced twice (re-sent), or after a gap the client will fill: skip
            self.last_applied_correlation[client_id] = correlation_id
            if 0 <= service_id < len(self.services):
                session = SimClientSession(self, client_id, correlation_id)
                body = payload[_CLIENT_HEADER.size:]
                self.services[service_id].on_session_message(session, timestamp_ns, body)
        elif entry_type == SERVICE_MESSAGE:
            timestamp_ns, service_id = _SERVICE_HEADER.unpack_from(payload, 0)
            self.cluster_time_ns = max(self.cluster_time_ns, timestamp_ns)
            if 0 <= service_id < len(self.services):
                self.services[service_id].on_session_message(None, timestamp_ns, payload[_SERVICE_HEADER.size:])
        elif len(payload) == 8:   # NEW_LEADERSHIP_TERM carries the leader's clock
            self.cluster_time_ns = max(self.cluster_time_ns, int.from_bytes(payload, "little", signed=True))
