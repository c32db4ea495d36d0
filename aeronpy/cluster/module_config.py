"""Settings of the cluster layer (sessions, timers, egress) and the authentication hook.

Every queue and cache the layer keeps is bounded by one of the named settings here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

from aeronpy.cluster import protocol as P

DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
# Room the client streams (ingress and egress) need beyond max_message_bytes: a message's
# protocol header, and admin answers, whose largest (a backup's log pull) is 256 KiB of entries.
ADMIN_ANSWER_MAX_BYTES = 256 * 1024
STREAM_HEADER_ROOM_BYTES = 4096


# The idle keep-alive (HEARTBEAT / STATUS) of a stream between a client and a member, both
# ways: 1 s, not the streams' 100 ms. Each member keeps a stream to every client, so with 1,000
# idle sessions the 100 ms default cost each member ~20,000 frames/s and ~20 % of a CPU, and
# the clients more, for nothing: a session's liveness is its keepalives (at most a third of
# session_timeout_ms apart), never these frames.
CLIENT_STREAM_IDLE_NS = 1_000_000_000


def client_stream_message_bytes(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> int:
    """The largest message a client stream carries: the reassembly bound at both ends."""
    return max(max_message_bytes, ADMIN_ANSWER_MAX_BYTES) + STREAM_HEADER_ROOM_BYTES


# Settings every member must share: each member decides with its own value while it applies
# the log (what schedule_timer, ClientSession.offer and Cluster.offer return or raise, what the
# replicated reply cache and queues hold, hence its snapshots and the replies a new leader
# gives to re-sent messages), so members with different values diverge. A leader writes its
# values into its term's first entry and every member compares them with its own
# (term_checks.TermEntryChecks._check_term_entry). The other settings are leader-local (their effect
# reaches the others through the log, if at all) or this member's own business.
REPLICATED_SETTINGS = ("max_timers", "reply_cache_messages", "max_message_bytes",
                       "reply_cache_replies_per_message", "service_message_queue_max")


class Authenticator:
    """Decides whether a client may open a session, from the credentials in its connect
    request. Runs on the leader only, before anything reaches the log, on its duty cycle (so
    it must return quickly). Subclass it; the default accepts everyone. An exception from
    ``authenticate`` refuses the client (it gets an AuthenticationError), is counted in
    ``authenticator_errors`` and logged by the node; it never stops the member."""

    def authenticate(self, credentials: bytes, response_endpoint: str) -> bool:
        return True


class SecretAuthenticator(Authenticator):
    """Accepts clients whose credentials equal a shared secret (a simple, useful default)."""

    def __init__(self, secret: bytes):
        self._secret = bytes(secret)

    def authenticate(self, credentials: bytes, response_endpoint: str) -> bool:
        import hmac
        return hmac.compare_digest(bytes(credentials), self._secret)


@dataclass
class ModuleConfig:
    """Settings of a ConsensusModule.

    ``members`` maps each member id to its client ingress endpoint ("host:port"); followers
    name the leader's endpoint in redirects and a new leader sends all of them in its
    NEW_LEADER events. ``client_ref_of_endpoint`` turns a session's response endpoint (as
    the client sent it) into the opaque reference the driver sends egress to; the default
    uses the endpoint string itself.
    """
    members: Mapping[int, str] = field(default_factory=dict)
    session_timeout_ns: int = 10_000_000_000
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Per session: replies to its latest N messages. Keep it >= the clients' send window
    # (ClientConfig.window_messages, 256 by default): then every reply to a message a client may
    # still re-send after a failover is still cached, and no reply is ever lost.
    reply_cache_messages: int = 256
    reply_cache_replies_per_message: int = 8    # the same on every member (REPLICATED_SETTINGS)
    egress_queue_max: int = 4096                # per client, then drop and count
    max_sessions: int = 1000                    # open at once, pending connects included
    max_timers: int = 1_000_000                 # live timers (all services); new ids refused beyond
    service_message_queue_max: int = 65536      # pending cluster.offer() messages; same on every member
    proposals_per_tick_max: int = 1024          # timer fires + service messages + timeouts
    # the node's digest of its [[members]] ids and ports (members_digest()), written into term
    # entries and compared like the settings above: a member started with another list (a
    # wrong peer port, an extra member) was silent. 0: not compared (tests, the simulator)
    members_digest: int = 0
    # a log restored from a backup ends here (restored.py): its term entries carry the old
    # cluster's member list, so members_digest is not compared in them. 0: no restore
    restored_log_end: int = 0
    # the newest client protocol spoken; clients of any version from
    # protocol.OLDEST_CLIENT_PROTOCOL_VERSION up to it are accepted
    protocol_version: int = P.CLIENT_PROTOCOL_VERSION
    bind_session_to_endpoint: bool = True       # a session only takes ingress from its own client
    authenticator: Authenticator = field(default_factory=Authenticator)
    client_ref_of_endpoint: Optional[Callable[[str], object]] = None
    # told of each exception the authenticator raised (the node logs it, rate-limited)
    on_authenticator_error: Optional[Callable[[BaseException], None]] = None
    # told the response endpoint of each session closed (every member, as it applies the
    # close) unless another open session answers there: the node lets that client's
    # transport place go soon after
    on_session_closed: Optional[Callable[[str], None]] = None
    # told the response endpoint of each session opened (every member, as it applies the
    # open): a client that closed and reconnected at once from the same address keeps the
    # transport place its old session's close was letting go
    on_session_opened: Optional[Callable[[str], None]] = None
    # told the client reference of each connect the leader refused (authentication, max_sessions,
    # version, endpoint): the node lets that client's transport place go soon after, too
    on_connect_refused: Optional[Callable[[object], None]] = None

    def __post_init__(self) -> None:
        for name in ("session_timeout_ns", "max_message_bytes", "egress_queue_max",
                     "service_message_queue_max", "proposals_per_tick_max", "max_sessions",
                     "max_timers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.reply_cache_messages < 0 or self.reply_cache_replies_per_message < 0:
            raise ValueError("reply cache bounds must be >= 0")
        if self.protocol_version < P.OLDEST_CLIENT_PROTOCOL_VERSION:
            raise ValueError(f"protocol_version must be >= {P.OLDEST_CLIENT_PROTOCOL_VERSION}, "
                             f"got {self.protocol_version}")

    def replicated_settings(self) -> dict:
        """This member's values of `REPLICATED_SETTINGS`, by name, in that order, and its
        `members_digest` when it has one."""
        settings = {name: int(getattr(self, name)) for name in REPLICATED_SETTINGS}
        if self.members_digest:
            settings["members_digest"] = int(self.members_digest)
        return settings

    def accepts_protocol(self, version: int) -> bool:
        """A client speaking ``version`` may connect."""
        return P.OLDEST_CLIENT_PROTOCOL_VERSION <= version <= self.protocol_version

    def connect_ok_detail(self, endpoint: str, client_version: int) -> str:
        """The detail of the OK answering a connect: the leader's endpoint, and for a client of
        protocol 2 or later the session terms it must keep to (protocol.format_session_terms)."""
        if client_version < 2:
            return endpoint
        return P.format_session_terms(endpoint, {
            "session_timeout_ms": self.session_timeout_ns // 1_000_000,
            "reply_cache_messages": self.reply_cache_messages,
            "max_message_bytes": self.max_message_bytes})

    def client_ref(self, response_endpoint: str) -> object:
        if self.client_ref_of_endpoint is None:
            return response_endpoint
        return self.client_ref_of_endpoint(response_endpoint)

    def ingress_endpoints(self) -> str:
        """Aeron's format: "0=host:port,1=host:port,..." in member id order."""
        return ",".join(f"{mid}={ep}" for mid, ep in sorted(self.members.items()))


def parse_ingress_endpoints(text: str) -> dict[int, str]:
    """Inverse of ModuleConfig.ingress_endpoints; malformed parts are skipped."""
    members: dict[int, str] = {}
    for part in text.split(","):
        mid, sep, endpoint = part.strip().partition("=")
        if not sep or not endpoint:
            continue
        try:
            members[int(mid)] = endpoint
        except ValueError:
            continue
    return members


def members_digest(members) -> int:
    """A 63-bit digest of the members' ids and ports (``MemberConfig``s), never 0. Host names
    are left out: one host may be spelt differently in each member's file (its own address,
    a name) without anything being wrong."""
    import hashlib
    text = ";".join(f"{m.id}:{m.consensus_port}:{m.ingress_port}:{m.admin_port or 0}"
                    for m in sorted(members, key=lambda m: m.id))
    value = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1
    return value or 1
