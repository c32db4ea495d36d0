"""`NodeConfig`: one node's configuration, loaded from TOML and validated before anything starts.

Why validate so eagerly: a trading cluster that starts with a typo in a timeout, or two members
on one port, fails later in ways that look like network trouble. Every check here raises one
`aeronpy.ConfigError(key, message)` whose key is the exact TOML key (``members[1].ingress_port``
for a member field) so the operator knows which line to fix.

Two phases:
- construction (`from_toml`, `from_dict`, or the constructor) checks the file itself: unknown
  keys (with the closest known key suggested), types, ranges, duplicate member ids and ports,
  the timing relations, and that ``member_id`` names a member;
- `check_startable()`, called by the node just before it binds, checks the machine: every
  member's host resolves (to its IPv4 address, or IPv6 for a name with none), all members to
  one address family, no two members' ports are one address and port under two host names,
  this member's ports
  are free, the data dir can be created and written, and this process may run
  on the CPUs of ``cpu_affinity``.
"""
from __future__ import annotations

import dataclasses
import difflib
import errno
import ipaddress
import os
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from aeronpy.endpoints import format_endpoint, ip_literal, resolve
from aeronpy.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib as _toml
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as _toml

FILE_SYNC_LEVELS = ("none", "data", "full")
IDLE_STRATEGIES = ("busy-spin", "yield", "backoff", "sleep")
SCHED_POLICIES = ("normal", "batch")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_INT32_MAX = 2**31 - 1
SECRET_MAX_BYTES = 64                   # the frame MAC is keyed BLAKE2b: a key of 1..64 bytes
CONFIG_FILE_MAX_BYTES = 1 << 20         # a configuration file is a few KiB; never read more
_KIB, _MIB, _GIB = 1 << 10, 1 << 20, 1 << 30

# (key, default, documentation). The order is the order of the docs table.
KEY_DOCS: tuple = (
    ("cluster_id", "required", "Integer (int32) shared by every member; frames carrying another "
     "cluster id are dropped and counted, so two clusters on one network cannot mix."),
    ("members", "required", "One `[[members]]` table per member: `id` (non-negative int), `host` "
     "(an IPv4 or IPv6 address, or a name: its IPv4 address if it has one, else its IPv6; every "
     "member of one family, checked at start), `consensus_port` (member-to-member UDP), `ingress_port` (client UDP), optional "
     "`admin_port` (reserved: unused by this version, see below). Ids and host:port pairs must "
     "be unique, also once the hosts are resolved (checked at start: `127.0.0.1` and `localhost` "
     "with one port are one socket). Every member must be given the same list: a member with "
     "other ids or ports starts, and reports the difference at each term's first entry "
     "(`members_digest`, \"Settings every member must share\" below; host names are not "
     "compared)."),
    ("member_id", "required", "Which member this node is; usually given as "
     "`from_toml(path, member_id=N)` or `aeronpy node --member-id N` so one file serves all."),
    ("data_dir", '"aeronpy-data/member-{member_id}"', "Directory for the log, snapshots, "
     "counters and error log; `{member_id}` is replaced, so one file can serve every member. "
     "Relative paths are relative to the working directory when the configuration is read (and "
     "made absolute then). Must be creatable and writable."),
    ("file_sync", '"none"', 'When appended log data is fsynced: "none" (left to the OS, as '
     'Aeron level 0: survives kill -9 but not power loss of a majority), "data" (fdatasync of the '
     'log before acknowledging, level 1), "full" (data and metadata, level 2). The vote record is '
     "always synced whatever this says."),
    ("election_timeout_ms", "200", "A follower that hears nothing from a leader for a random time "
     "between this and twice this starts an election (canvass first); candidates retry on the "
     "same randomised timer; a member that heard from a live leader within this long ignores "
     "a disruptive candidate's ballot. Raise it to ride out pauses (GC, a busy core). A member "
     "raises its own to twice its last snapshot's pause, and its leader_heartbeat_timeout_ms "
     "by as much, while that is longer, but never so far that the two together reach "
     "session_timeout_ms (docs/snapshots.md)."),
    ("heartbeat_interval_ms", "50", "How often a leader heartbeats idle followers. Must be less "
     "than `election_timeout_ms` and `leader_heartbeat_timeout_ms`."),
    ("leader_heartbeat_timeout_ms", "400", "A leader that hears from no quorum for this long "
     "steps down (check-quorum), so a leader cut off from the others stops taking requests. It "
     "does not delay a follower's election: that is `election_timeout_ms`."),
    ("session_timeout_ms", "10000", "A client session with no traffic or keepalive for this long "
     "is closed. Must exceed `leader_heartbeat_timeout_ms + election_timeout_ms` so sessions "
     "survive a failover. Clients are told it at connect: they keep their keepalives within a "
     "third of it, and one silent for longer refuses to offer into the gone session."),
    ("reply_cache_messages", "256", "Per session, the replies to its latest this-many messages "
     "are kept in the replicated session state, so a message a client re-sends after a failover "
     "is answered with its original reply. Keep it at least the clients' send window "
     "(`ClientConfig.window_messages`, 256 by default; a client lowers its window to it at "
     "connect, with a warning, when it is smaller); raise both for more messages in flight "
     "(throughput). Costs memory and snapshot bytes per session: up to this many replies each. "
     "Keep it the same on every member: each keeps its own, so a new leader with a smaller one "
     "may answer an older re-sent message with an acknowledgement instead of its reply."),
    ("max_sessions", "1000", "Client sessions the cluster holds open at once; the leader refuses "
     "a connect beyond it with an error the client raises (`NotConnectedError`), so a flood of "
     "connects cannot grow every member's memory and snapshots without bound. Sessions free "
     "their place when closed or timed out. Each member's ingress also admits at most "
     "max(1024, 2 x max_sessions + 64) client transports (a client past that is dropped "
     "unanswered and counted, `transport_drop_too_many_clients`); a client gives its transport "
     "place back 0.5 s after its session closed or its connect was refused, a silent one "
     "after session_timeout_ms. The leader counts its connects in flight too; "
     "those a failed leader left in flight can take a new leader past it once. One client "
     "can take every place (there is no per-client share): use an `authenticator` where "
     "clients are not trusted."),
    ("max_timers", "1000000", "Live timers the cluster holds at once, over all services: "
     "`schedule_timer` of a new id beyond it returns False (nothing scheduled, counted in "
     "`timer_schedule_refused`); moving an already scheduled id always works. Every member "
     "decides alike (the count is replicated state), so it must be the same on every member; "
     "only raise it: a member replaying its log under a lower value refuses what clients were "
     "told had been scheduled."),
    ("idle_strategy", '"backoff"', 'What the duty cycle does when it found no work: "busy-spin", '
     '"yield", "backoff" (park in `select` on the node\'s sockets, waking on a datagram: 1 ms '
     'at a time just after work, else until the node\'s next timer is due, at most 50 ms; '
     'without sockets to wait on it spins and yields first), "sleep" (1 ms).'),
    ("snapshot_log_bytes", "268435456 (256 MiB)", "Take a snapshot automatically once this many "
     "log bytes were appended since the last one; 0 turns automatic snapshots off. The leader "
     "asks every member to take it at one log index (so their checksums are compared); a "
     "follower takes one of its own only past twice this. A member "
     "that restarts replays the log since its last snapshot through its services before it "
     "joins, at their speed (in a user's trial 18,558 small entries of a slow book took 5.7 "
     "s): with small messages or slow callbacks, a smaller value bounds that."),
    ("secret", "none", "Shared key (string, UTF-8, 1 to 64 bytes: it keys the BLAKE2b frame MAC, "
     "whose key is at most 64 bytes; `secrets.token_hex(32)` gives 64 characters) that "
     "authenticates member-to-member frames; frames with a bad MAC are dropped and counted. "
     "Off when absent. Admin "
     "requests (tool, backup) must then be signed with a key derived from it, which each "
     "member writes to `admin.key` in its data dir; without it, only the member's own "
     "machine may send them (docs/operations.md)."),
    ("segment_bytes", "67108864 (64 MiB)", "Size of one log segment file (64 KiB .. 1 GiB)."),
    ("mtu_bytes", "1408", "Largest UDP datagram sent (512 .. 65504); bigger messages are "
     "fragmented. 1408 fits common Ethernet paths without IP fragmentation."),
    ("max_message_bytes", "1048576 (1 MiB)", "Largest client or service message accepted; "
     "larger offers raise MessageTooLargeError. Keep it the same on every member: a service's "
     "reply or `cluster.offer` above a member's own limit raises in the service there, which "
     "stops that member."),
    ("socket_rcvbuf_bytes", "2097152 (2 MiB)", "SO_RCVBUF asked for on every socket; 0 keeps the "
     "OS default. Linux caps it at net.core.rmem_max."),
    ("socket_sndbuf_bytes", "2097152 (2 MiB)", "SO_SNDBUF asked for on every socket; 0 keeps the "
     "OS default. Linux caps it at net.core.wmem_max."),
    ("stream_heartbeat_interval_ms", "5", "How soon a stream whose last data is not yet "
     "acknowledged says where it is (a HEARTBEAT), so a receiver that lost that datagram asks "
     "for it again: a lone request, reply or append lost on the network costs about this "
     "long (at 1 % loss, p99 6.2 ms with 5, 21 ms with 20). A message that arrived is "
     "normally acknowledged before then, in the datagram of its reply or append response; "
     "unanswered HEARTBEATs back off to one per 100 ms: docs/operations.md, 'Packet loss'. "
     "1 to 1000."),
    ("max_append_bytes", "65536 (64 KiB)", "Upper bound on the entries batched into one "
     "AppendEntries (at least one entry is always sent)."),
    ("snapshots_to_keep", "2", "How many snapshots (and the log they cover) are kept; older ones "
     "are deleted. At least 1."),
    ("metrics_http_port", "off", "When set, the node (`aeronpy node` or an embedded "
     "`ClusterNode`, from its construction to its `close()`) serves Prometheus metrics at "
     "http://127.0.0.1:PORT/metrics (loopback only), on a thread of its own that reads the "
     "counters file. A port that cannot be bound stops the start with `metrics_http_port: ...`. "
     "There is no command-line override: members sharing one machine need a file each for it "
     "(or `aeronpy tool metrics --serve-metrics PORT` per data dir instead)."),
    ("log_level", '"INFO"', "Level of the node's logger `aeronpy.node.<member_id>`: DEBUG, INFO, "
     "WARNING, ERROR or CRITICAL."),
    ("authenticator", "none (accept every client)", 'Client authentication: "module:ClassName" '
     "of an `aeronpy.Authenticator` subclass, constructed with no arguments on every member; its "
     "`authenticate(credentials, response_endpoint)` runs on the leader for each connect, and a "
     "rejected client gets `aeronpy.AuthenticationError`. The module is imported as "
     "`--service` modules are."),
    ("cpu_affinity", "none (no pinning)", "CPU ids, e.g. `[2, 3]`, that the node's duty-cycle "
     "thread is pinned to (`sched_setaffinity`, Linux only) when the node runs on its own thread "
     "(`start()`, `aeronpy node`); each must be one this process may use. Keeps co-located "
     "members and clients off each other's cores (p50/p90 latency). In invoker mode "
     "(`do_work()` on your thread) it is not applied: the application pins its own thread. "
     "`aeronpy node --cpu-affinity 0,2` overrides it per process."),
    ("sched_policy", '"normal"', 'Linux scheduling policy of the duty-cycle thread when the node '
     'runs on its own thread: "normal" (SCHED_OTHER) or "batch" (SCHED_BATCH, no privileges '
     "needed). A batch thread that wakes does not preempt the thread running on its CPU: for "
     "members and clients sharing a machine with nothing else busy, each duty cycle then runs "
     "to its end instead of being cut by the next wake-up (open-loop p99 at 10k/s 489-584 vs "
     "524-716 us on a 2-core VM, docs/operations.md). Beside other CPU-bound work it waits for "
     "their time slice instead: leave it normal there. Not applied in invoker mode."),
)
_MEMBER_KEYS = ("id", "host", "consensus_port", "ingress_port", "admin_port")


def _suggest(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _int(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be an integer, got {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(key, f"must be between {lo} and {hi}, got {value}")
    return value


def _choice(key: str, value: Any, choices, fold=str.lower) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, one of {', '.join(map(repr, choices))}")
    if fold(value) not in choices:
        raise ConfigError(key, f"must be one of {', '.join(map(repr, choices))}, got {value!r}"
                          + _suggest(fold(value), choices))
    return fold(value)


@dataclass(frozen=True)
class MemberConfig:
    """One `[[members]]` table: where a member listens."""

    id: int
    host: str
    consensus_port: int
    ingress_port: int
    admin_port: Optional[int] = None

    @property
    def consensus_endpoint(self) -> tuple:
        return (self.host, self.consensus_port)

    @property
    def ingress_endpoint(self) -> tuple:
        return (self.host, self.ingress_port)

    @classmethod
    def from_dict(cls, raw: Any, position: int) -> "MemberConfig":
        where = f"members[{position}]"
        if isinstance(raw, MemberConfig):
            raw = dataclasses.asdict(raw)
        if not isinstance(raw, Mapping):
            raise ConfigError(where, "must be a table with id, host, consensus_port, ingress_port")
        for key in raw:
            if key in _MEMBER_KEYS:
                continue
            if key in _NODE_KEYS:
                # in TOML a key after a [[members]] header belongs to that table
                raise ConfigError(f"{where}.{key}", "a node key, not a member key: in a TOML file "
                                  "write it above the first [[members]] table")
            raise ConfigError(f"{where}.{key}", "unknown member key" + _suggest(key, _MEMBER_KEYS))
        for key in ("id", "host", "consensus_port", "ingress_port"):
            if key not in raw:
                raise ConfigError(f"{where}.{key}", "required member key is missing")
        host = raw["host"]
        if not isinstance(host, str) or not host.strip() or "\0" in host:
            raise ConfigError(f"{where}.host", f"must be a non-empty host name or address, got {host!r}")
        if _is_wildcard(host.strip()):
            # the others send to this address: a wildcard names no machine (0.0.0.0 would
            # reach each sender itself)
            raise ConfigError(f"{where}.host", f"{host.strip()!r} is a wildcard; give the "
                                               "address the other members reach this one at")
        try:
            literal = ip_literal(host)
        except ValueError as exc:
            raise ConfigError(f"{where}.host", str(exc)) from None
        admin = raw.get("admin_port")
        return cls(
            id=_int(f"{where}.id", raw["id"], 0, _INT32_MAX),
            # an address in its canonical spelling, without brackets: "[::1]" is "::1"
            host=host.strip() if literal is None else str(literal),
            consensus_port=_int(f"{where}.consensus_port", raw["consensus_port"], 1, 65535),
            ingress_port=_int(f"{where}.ingress_port", raw["ingress_port"], 1, 65535),
            admin_port=None if admin is None else _int(f"{where}.admin_port", admin, 1, 65535),
        )


CONFIG_MAX_NESTING = 64     # arrays and inline tables inside each other; aeronpy's use 2


def _nesting_depth(text: str) -> int:
    """How deep ``[`` and ``{`` nest in TOML text, outside strings and comments. Checked before
    the parser, which recurses per level: its refusal then depended on the process's recursion
    limit (an application or a tool that raised it got another error, after a long parse)."""
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c == '"' or c == "'":
            if text.startswith(c * 3, i):
                j = text.find(c * 3, i + 3)
                while c == '"' and j > 0 and text[j - 1] == "\\":       # an escaped quote
                    j = text.find(c * 3, j + 1)
                i = n if j < 0 else j + 3
            else:
                j = i + 1
                while j < n and text[j] != c and text[j] != "\n":
                    j += 2 if c == '"' and text[j] == "\\" else 1
                i = j + 1
        else:
            if c == "[" or c == "{":
                depth += 1
                if depth > deepest:
                    deepest = depth
            elif (c == "]" or c == "}") and depth:
                depth -= 1
            i += 1
    return deepest


@dataclass(frozen=True)
class NodeConfig:
    """Configuration of one cluster node; keys are the TOML keys (table in docs/configuration.md).

    Constructed only through a validating path: the constructor, `from_dict` and `from_toml`
    all raise `aeronpy.ConfigError(key, message)` for the first problem found.
    """

    cluster_id: int
    members: tuple
    member_id: int
    data_dir: str = "aeronpy-data/member-{member_id}"
    file_sync: str = "none"
    election_timeout_ms: int = 200
    heartbeat_interval_ms: int = 50
    leader_heartbeat_timeout_ms: int = 400
    session_timeout_ms: int = 10_000
    reply_cache_messages: int = 256
    max_sessions: int = 1000
    max_timers: int = 1_000_000
    idle_strategy: str = "backoff"
    snapshot_log_bytes: int = 256 * _MIB
    secret: Optional[bytes] = field(default=None, repr=False)
    segment_bytes: int = 64 * _MIB
    mtu_bytes: int = 1408
    max_message_bytes: int = 1 * _MIB
    socket_rcvbuf_bytes: int = 2 * _MIB
    socket_sndbuf_bytes: int = 2 * _MIB
    stream_heartbeat_interval_ms: int = 5
    max_append_bytes: int = 64 * _KIB
    snapshots_to_keep: int = 2
    metrics_http_port: Optional[int] = None
    log_level: str = "INFO"
    authenticator: Optional[str] = None
    cpu_affinity: Optional[tuple] = None
    sched_policy: str = "normal"

    def __post_init__(self) -> None:
        put = object.__setattr__.__get__(self)  # frozen: normalise through the back door once
        put("cluster_id", _int("cluster_id", self.cluster_id, -(2**31), _INT32_MAX))
        members = self.members
        if isinstance(members, Mapping) or not isinstance(members, (list, tuple)) or not members:
            raise ConfigError("members", "must be a non-empty list of [[members]] tables")
        members = tuple(MemberConfig.from_dict(m, i) for i, m in enumerate(members))
        put("members", members)
        put("member_id", _int("member_id", self.member_id, 0, _INT32_MAX))
        self._check_members()
        if not isinstance(self.data_dir, (str, os.PathLike)) or not str(self.data_dir) \
                or "\0" in str(self.data_dir):
            raise ConfigError("data_dir", f"must be a non-empty path, got {self.data_dir!r}")
        # absolute from here on: an application embedding a node that later changes its
        # working directory would otherwise have its files looked for (and new segments made)
        # elsewhere
        put("data_dir", os.path.abspath(
            os.fspath(self.data_dir).replace("{member_id}", str(self.member_id))))
        put("file_sync", _choice("file_sync", self.file_sync, FILE_SYNC_LEVELS))
        put("idle_strategy", _choice("idle_strategy", self.idle_strategy, IDLE_STRATEGIES))
        put("log_level", _choice("log_level", self.log_level, LOG_LEVELS, fold=str.upper))
        put("sched_policy", _choice("sched_policy", self.sched_policy, SCHED_POLICIES))
        for key, lo, hi in (
            ("election_timeout_ms", 1, 3_600_000), ("heartbeat_interval_ms", 1, 3_600_000),
            ("leader_heartbeat_timeout_ms", 1, 3_600_000), ("session_timeout_ms", 1, 86_400_000),
            ("reply_cache_messages", 0, 1 << 20), ("max_sessions", 1, 1 << 20),
            ("max_timers", 1, 1 << 40),
            ("snapshot_log_bytes", 0, 2**62), ("segment_bytes", 64 * _KIB, _GIB),
            ("mtu_bytes", 512, 65504), ("max_message_bytes", 1, _GIB),
            ("socket_rcvbuf_bytes", 0, _GIB), ("socket_sndbuf_bytes", 0, _GIB),
            ("stream_heartbeat_interval_ms", 1, 1000),
            ("max_append_bytes", 1 * _KIB, _GIB), ("snapshots_to_keep", 1, 1000),
        ):
            _int(key, getattr(self, key), lo, hi)
        if self.metrics_http_port is not None:
            _int("metrics_http_port", self.metrics_http_port, 1, 65535)
        if self.secret is not None:
            secret = self.secret.encode() if isinstance(self.secret, str) else self.secret
            if not isinstance(secret, (bytes, bytearray)) or not secret:
                raise ConfigError("secret", "must be a non-empty string")
            if len(secret) > SECRET_MAX_BYTES:
                raise ConfigError("secret", f"is {len(secret)} bytes (UTF-8), more than the "
                                            f"{SECRET_MAX_BYTES} the frame MAC (a BLAKE2b key) "
                                            f"takes: use a key of at most {SECRET_MAX_BYTES} "
                                            "bytes, e.g. secrets.token_hex(32)")
            put("secret", bytes(secret))
        if self.authenticator is not None:
            spec = self.authenticator
            module, sep, attr = spec.partition(":") if isinstance(spec, str) else ("", "", "")
            if not sep or not module.strip() or not attr.strip():
                raise ConfigError("authenticator", f'must be "module:ClassName", got {spec!r}')
        if self.cpu_affinity is not None:
            put("cpu_affinity", _cpu_ids("cpu_affinity", self.cpu_affinity))
        self._check_timing()

    def _check_members(self) -> None:
        seen_ids: dict = {}
        seen_ports: dict = {}
        for i, m in enumerate(self.members):
            if m.id in seen_ids:
                raise ConfigError(f"members[{i}].id",
                                  f"duplicate member id {m.id} (also members[{seen_ids[m.id]}])")
            seen_ids[m.id] = i
            for key in ("consensus_port", "ingress_port", "admin_port"):
                port = getattr(m, key)
                if port is None:
                    continue
                here = f"members[{i}].{key}"
                other = seen_ports.setdefault((m.host, port), here)
                if other != here:
                    raise ConfigError(here, f"{format_endpoint(m.host, port)} is already used by "
                                            f"{other}")
        _check_one_family([ip_literal(m.host) for m in self.members])
        if self.member_id not in seen_ids:
            raise ConfigError("member_id", f"{self.member_id} is not one of the member ids "
                                           f"{sorted(seen_ids)}")

    def _check_timing(self) -> None:
        hb, lht = self.heartbeat_interval_ms, self.leader_heartbeat_timeout_ms
        if hb >= lht:
            raise ConfigError("heartbeat_interval_ms", f"({hb}) must be less than "
                              f"leader_heartbeat_timeout_ms ({lht}), or followers time out "
                              "between heartbeats")
        if hb >= self.election_timeout_ms:
            raise ConfigError("heartbeat_interval_ms", f"({hb}) must be less than "
                              f"election_timeout_ms ({self.election_timeout_ms})")
        failover_ms = lht + self.election_timeout_ms
        if self.session_timeout_ms <= failover_ms:
            raise ConfigError("session_timeout_ms", f"({self.session_timeout_ms}) must exceed "
                              f"leader_heartbeat_timeout_ms + election_timeout_ms ({failover_ms}), "
                              "or client sessions are closed by every failover")
        if self.metrics_http_port is not None:
            me = self.member
            for key in ("consensus_port", "ingress_port", "admin_port"):
                if getattr(me, key) == self.metrics_http_port:
                    raise ConfigError("metrics_http_port", f"{self.metrics_http_port} is also this "
                                                           f"member's {key}")

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, raw: Mapping, **overrides: Any) -> "NodeConfig":
        """Build from a parsed TOML table; ``overrides`` (e.g. ``member_id=0``) win over it."""
        if not isinstance(raw, Mapping):
            raise ConfigError("<config>", f"must be a table, got {type(raw).__name__}")
        merged = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
        known = {f.name for f in dataclasses.fields(cls)}
        for key in merged:
            if key not in known:
                raise ConfigError(key, "unknown configuration key" + _suggest(key, known))
        for key in ("cluster_id", "members", "member_id"):
            if key not in merged:
                hint = " (pass member_id=N, or --member-id N)" if key == "member_id" else ""
                raise ConfigError(key, "required key is missing" + hint)
        return cls(**merged)

    @classmethod
    def from_toml(cls, path: "str | os.PathLike", member_id: Optional[int] = None,
                  **overrides: Any) -> "NodeConfig":
        """Load and validate a TOML file; ``member_id`` and ``overrides`` win over the file.

        Only a regular file of at most 1 MiB is read: a FIFO (which would block), a device or
        a directory is refused, as are text that is not UTF-8 and nesting too deep to parse."""
        from aeronpy.archive.fs import NotARegularFileError, read_regular

        name = os.fspath(path)
        try:
            data = read_regular(name, CONFIG_FILE_MAX_BYTES, what="configuration file")
        except FileNotFoundError:
            raise ConfigError("<config>", f"no such configuration file: {name}") from None
        except NotARegularFileError as exc:
            raise ConfigError("<config>", f"{name} is {exc.kind}, not a regular file: give the "
                                          "path of a TOML file") from None
        except OSError as exc:
            raise ConfigError("<config>", f"cannot read {name}: {exc.strerror or exc}") from None
        except ValueError as exc:        # larger than CONFIG_FILE_MAX_BYTES
            raise ConfigError("<config>", f"{exc}: is it the configuration file?") from None
        try:
            text = data.decode("utf-8")
            if _nesting_depth(text) > CONFIG_MAX_NESTING:
                raise RecursionError
            raw = _toml.loads(text)
        except UnicodeDecodeError as exc:
            raise ConfigError("<config>", f"{name} is not valid TOML: not UTF-8 text (byte "
                                          f"{exc.start})") from None
        except _toml.TOMLDecodeError as exc:
            raise ConfigError("<config>", f"{name} is not valid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError("<config>", f"{name} is not valid TOML for aeronpy: arrays or "
                                          "tables nested too deeply to parse") from None
        return cls.from_dict(raw, member_id=member_id, **overrides)

    def replace(self, **changes: Any) -> "NodeConfig":
        """A copy with some keys changed, validated again."""
        return dataclasses.replace(self, **changes)

    # -- views --------------------------------------------------------------------------------

    @property
    def member(self) -> MemberConfig:
        """This node's own `[[members]]` entry."""
        return next(m for m in self.members if m.id == self.member_id)

    @property
    def peers(self) -> tuple:
        """Every other member."""
        return tuple(m for m in self.members if m.id != self.member_id)

    @property
    def ingress_endpoints(self) -> str:
        """``"host:port,host:port,..."``: what `aeronpy.ClusterClient.connect` takes."""
        return ",".join(format_endpoint(m.host, m.ingress_port) for m in self.members)

    def to_dict(self) -> dict:
        """Plain data (secret hidden), for logs, the counters file and `aeronpy tool describe`."""
        out = dataclasses.asdict(self)
        out["members"] = [dataclasses.asdict(m) for m in self.members]
        out["secret"] = None if self.secret is None else "<set>"
        return out

    # -- start-time checks --------------------------------------------------------------------

    def check_startable(self) -> None:
        """Check, just before starting, that every member's host resolves, all to one address
        family, no two members' ports are one address and port, this member's ports are free, data_dir
        writable, the ``cpu_affinity`` CPUs (if any) usable by this process and
        ``sched_policy`` available.

        The ports are bound and released again, so a node that starts right after this finds
        them free unless another process took them in between.
        """
        addresses = [_probe_host(f"members[{i}].host", m.host) for i, m in enumerate(self.members)]
        _check_one_family([ipaddress.ip_address(a) for a in addresses], resolved=True)
        _check_distinct_endpoints(self.members, addresses)
        index = next(i for i, m in enumerate(self.members) if m.id == self.member_id)
        me = self.member
        for key in ("consensus_port", "ingress_port", "admin_port"):
            port = getattr(me, key)
            if port is not None:
                _probe_port(f"members[{index}].{key}", me.host, port, socket.SOCK_DGRAM)
        if self.metrics_http_port is not None:
            _probe_port("metrics_http_port", "127.0.0.1", self.metrics_http_port, socket.SOCK_STREAM)
        if self.cpu_affinity is not None:
            _probe_cpu_affinity("cpu_affinity", self.cpu_affinity)
        if self.sched_policy == "batch" and not hasattr(os, "SCHED_BATCH"):
            raise ConfigError("sched_policy", f'"batch" needs Linux (os.SCHED_BATCH); not '
                                              f"available on {sys.platform}")
        _probe_data_dir(self.data_dir)


def _cpu_ids(key: str, value: Any) -> tuple:
    """A non-empty list of distinct CPU ids, as a tuple (whether they exist is checked at start)."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(key, f"must be a list of CPU ids such as [2, 3], got "
                               f"{type(value).__name__} {value!r}")
    if not value:
        raise ConfigError(key, "must name at least one CPU (leave the key out for no pinning)")
    seen: set = set()
    for cpu in value:
        if isinstance(cpu, bool) or not isinstance(cpu, int):
            raise ConfigError(key, f"CPU ids must be integers, got {type(cpu).__name__} {cpu!r}")
        if cpu < 0:
            raise ConfigError(key, f"CPU ids must be non-negative, got {cpu}")
        if cpu in seen:
            raise ConfigError(key, f"CPU {cpu} is listed twice")
        seen.add(cpu)
    return tuple(value)


def _probe_cpu_affinity(key: str, cpus: tuple) -> None:
    """The node pins its thread with sched_setaffinity; refuse now what would fail then."""
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError(key, f"pinning threads to CPUs needs Linux (os.sched_setaffinity); "
                               f"not available on {sys.platform}")
    allowed = os.sched_getaffinity(0)
    missing = sorted(set(cpus) - allowed)
    if missing:
        raise ConfigError(key, f"CPU(s) {', '.join(map(str, missing))} not available to this "
                               f"process (it may use {_cpu_list(allowed)})")


def _cpu_list(cpus) -> str:
    """``{0, 1, 2, 5}`` as ``"0-2,5"``, the form of /proc's Cpus_allowed_list."""
    ranges: list = []
    for cpu in sorted(cpus):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def _check_one_family(addresses: list, resolved: bool = False) -> None:
    """A socket has one address family: members given both IPv4 and IPv6 addresses could not
    reach each other. ``addresses``: each member's address (None for a name not yet looked
    up)."""
    families = {a.version: i for i, a in enumerate(addresses) if a is not None}
    if len(families) > 1:
        how = "resolves to" if resolved else "is"
        raise ConfigError(f"members[{families[6]}].host",
                          f"{how} an IPv6 address while members[{families[4]}].host {how} an "
                          "IPv4 address: a cluster's members use one address family")


# A start-time host lookup that takes longer is refused: the system resolver may wait for
# many seconds per DNS server (resolv.conf's timeout x attempts) before it gives up.
HOST_LOOKUP_TIMEOUT_S = 10.0


def lookup_within(timeout_s: float, lookup, host: str, *args):
    """``lookup(host, *args)`` (``socket.gethostbyname``, ``getaddrinfo``) on a daemon thread:
    its result or exception, or `TimeoutError` naming ``host`` when it has not returned within
    ``timeout_s``. The system resolver cannot be interrupted: a late lookup's thread ends on
    its own and its answer is dropped."""
    result: list = []
    done = threading.Event()

    def run() -> None:
        try:
            result.append((True, lookup(host, *args)))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result.append((False, exc))
        done.set()
    threading.Thread(target=run, name=f"aeronpy-lookup-{host}"[:60], daemon=True).start()
    if not done.wait(timeout_s):
        raise TimeoutError(f"looking up host {host!r} did not finish within {timeout_s:g} s "
                           "(the system resolver: check /etc/resolv.conf and its DNS servers, "
                           "or give an IP address)")
    ok, value = result[0]
    if ok:
        return value
    raise value


def _probe_host(key: str, host: str) -> str:
    """The transport resolves every member's host as `aeronpy.endpoints.resolve` does (a
    name's IPv4 address, else its IPv6): refuse now, naming the member, a host that does not
    resolve (within HOST_LOOKUP_TIMEOUT_S); else the address."""
    try:
        return resolve(host, lambda fn, *args: lookup_within(HOST_LOOKUP_TIMEOUT_S, fn, *args))[1]
    except TimeoutError as exc:
        raise ConfigError(key, str(exc)) from None
    except ValueError as exc:       # an IPv6 address the transport cannot use
        raise ConfigError(key, str(exc)) from None
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(key, f"cannot resolve {host!r} ({reason}): give an IP address or a "
                               "host name that resolves to one") from None


def _check_distinct_endpoints(members: tuple, addresses: list) -> None:
    """Two members' ports under two spellings of one address (``127.0.0.1`` and
    ``localhost``) are one socket: the file's check compares host strings, this one the
    resolved addresses."""
    seen: dict = {}
    for i, (m, address) in enumerate(zip(members, addresses)):
        for key in ("consensus_port", "ingress_port", "admin_port"):
            port = getattr(m, key)
            if port is None:
                continue
            here = f"members[{i}].{key}"
            other = seen.setdefault((address, port), here)
            if other != here:
                raise ConfigError(here, f"{format_endpoint(m.host, port)} is "
                                        f"{format_endpoint(address, port)}, already used by "
                                        f"{other}: give every member its own address and port")


def _is_wildcard(host: str) -> bool:
    """0.0.0.0, ::, and their other spellings (0, 0.0, ::0, [::])."""
    if host == "*":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        pass
    try:                     # inet_aton's forms: "0", "0.0"
        return socket.inet_aton(host) == b"\0\0\0\0"
    except (OSError, ValueError):    # not an address (ValueError: a NUL in it)
        return False


def _probe_port(key: str, host: str, port: int, kind: int) -> None:
    proto = "UDP" if kind == socket.SOCK_DGRAM else "TCP"
    try:
        family, address = resolve(host, lambda fn, *args: lookup_within(HOST_LOOKUP_TIMEOUT_S, fn,
                                                                         *args))
    except TimeoutError as exc:
        raise ConfigError(key, str(exc)) from None
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(key, f"cannot resolve host {host!r}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
    addr = (address, port)
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM and os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server does
        sock.bind(addr)
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
            raise ConfigError(key, f"{proto} port {port} on {host} is already in use") from None
        where = format_endpoint(host, port)
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(key, f"cannot bind {proto} {where}: {host} is not an address "
                                   "of this machine") from None
        raise ConfigError(key, f"cannot bind {proto} {where}: {exc.strerror or exc}") from None
    finally:
        sock.close()


def _probe_data_dir(path: str) -> None:
    if os.path.exists(path) and not os.path.isdir(path):    # makedirs would say "File exists"
        raise ConfigError("data_dir", f"{path!r} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        if isinstance(exc, FileExistsError) or (os.path.exists(path) and not os.path.isdir(path)):
            raise ConfigError("data_dir", f"{path!r} exists and is not a directory") from None
        raise ConfigError("data_dir", f"cannot create {path!r}: {exc.strerror or exc}") from None
    if not os.path.isdir(path):
        raise ConfigError("data_dir", f"{path!r} exists and is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return    # a full disk (no inode left), not a bad setting: the start says so (status 4)
        raise ConfigError("data_dir", f"{path!r} is not writable: {exc.strerror or exc}") from None


def _key_table() -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    rows += [f"| `{k}` | {d} | {text} |" for k, d, text in KEY_DOCS]
    return "\n".join(rows)


NodeConfig.__doc__ = (NodeConfig.__doc__ or "") + "\n\n" + _key_table() + "\n"
# the keys of a node's own table (MemberConfig.from_dict names one found in a member's)
_NODE_KEYS = frozenset(field.name for field in dataclasses.fields(NodeConfig))
