"""Tiny fake Raft cores for driving ConsensusModule without the real core.

``FakeWorld`` holds N members; the test decides who leads, what replicates and what commits,
so failover races can be staged exactly. Entries are (term, type, payload) in a list.
"""
from __future__ import annotations

from aeronpy.cluster import protocol as P
from aeronpy.cluster.module_config import ModuleConfig
from aeronpy.cluster.module import ConsensusModule
from aeronpy.service import ClusteredService, Role

NEW_LEADERSHIP_TERM = 1


class FakeLog:
    def __init__(self):
        self.entries: list[tuple[int, int, bytes]] = []

    @property
    def last_index(self) -> int:
        return len(self.entries)

    def append(self, term, entry_type, payload) -> int:
        self.entries.append((term, entry_type, bytes(payload)))
        return len(self.entries)

    def term_at(self, index):
        return self.entries[index - 1][0]

    def type_at(self, index):
        return self.entries[index - 1][1]

    def payload_at(self, index):
        return memoryview(self.entries[index - 1][2])


class FakeCore:
    def __init__(self, member_id: int):
        self.member_id = member_id
        self.role = Role.FOLLOWER
        self.term = 0
        self.leader_id = None
        self.commit_index = 0
        self.log = FakeLog()
        self.refuse_proposals = False

    def propose(self, entry_type, payload) -> int:
        if self.role is not Role.LEADER or self.refuse_proposals:
            return 0
        return self.log.append(self.term, entry_type, payload)


class RecordingService(ClusteredService):
    """Echoes every session message back (b"re:" + message) and records what it saw."""

    def __init__(self):
        self.cluster = None
        self.events: list[tuple] = []
        self.messages: list[bytes] = []
        self.roles: list[Role] = []

    def on_start(self, cluster, snapshot):
        self.cluster = cluster

    def on_session_open(self, session, timestamp_ns):
        self.events.append(("open", session.id, timestamp_ns))

    def on_session_close(self, session, timestamp_ns, reason):
        self.events.append(("close", session.id, reason))

    def on_session_message(self, session, timestamp_ns, message):
        data = bytes(message)
        self.messages.append(data)
        self.events.append(("message", None if session is None else session.id, data,
                            self.cluster.commit_index, timestamp_ns))
        if session is not None:
            session.offer(b"re:" + data)

    def on_timer_event(self, correlation_id, timestamp_ns):
        self.events.append(("timer", correlation_id, timestamp_ns))

    def on_role_change(self, role):
        self.roles.append(role)


class FakeWorld:
    """N members wired to fake cores; member i's ingress endpoint is "m{i}:9000"."""

    def __init__(self, members: int = 1, services=None, **config):
        self.services_factory = services or (lambda: [RecordingService()])
        endpoints = {i: f"m{i}:9000" for i in range(members)}
        self.cores = [FakeCore(i) for i in range(members)]
        self.modules = []
        self.now_ns = 1_000_000_000
        for i in range(members):
            cfg = ModuleConfig(members=endpoints, **config)
            module = ConsensusModule(i, self.cores[i], self.services_factory(), cfg, self.now_ns)
            module.start()
            self.modules.append(module)
        self.term = 0
        self.egress: list[list[tuple[object, object]]] = [[] for _ in range(members)]
        if members == 1:
            self.elect(0)

    def services(self, member: int):
        return self.modules[member].container.services

    # ---- leadership / replication -----------------------------------------------------
    def elect(self, leader: int, alive=None) -> None:
        """Make ``leader`` leader of a new term (its log wins; it appends a term entry)."""
        self.term += 1
        alive = range(len(self.cores)) if alive is None else alive
        for core in self.cores:
            core.role = Role.LEADER if core.member_id == leader else Role.FOLLOWER
            core.term = self.term
            core.leader_id = leader if core.member_id in alive else core.leader_id
        self.cores[leader].log.append(self.term, NEW_LEADERSHIP_TERM, b"")
        self.sync()

    def step_down(self, member: int) -> None:
        self.cores[member].role = Role.FOLLOWER
        self.sync()

    def leader(self) -> int:
        return next(c.member_id for c in self.cores if c.role is Role.LEADER)

    def replicate(self, to=None, upto=None) -> None:
        """Copy the leader's log (up to ``upto``) onto followers, replacing conflicts."""
        src = self.cores[self.leader()].log.entries
        upto = len(src) if upto is None else upto
        for core in self.cores:
            if core.role is Role.LEADER or (to is not None and core.member_id not in to):
                continue
            keep = core.log.entries[:upto]
            if keep != src[:len(keep)] or len(keep) < upto:
                core.log.entries = list(src[:upto])

    def commit(self, index=None, members=None) -> None:
        """Set commit_index (default: the leader's last index) and apply on members."""
        leader = self.cores[self.leader()]
        index = leader.log.last_index if index is None else index
        for core in self.cores:
            if members is not None and core.member_id not in members:
                continue
            core.commit_index = max(core.commit_index, min(index, core.log.last_index))
        self.apply(members)

    def apply(self, members=None) -> None:
        for module, core in zip(self.modules, self.cores):
            if members is not None and core.member_id not in members:
                continue
            for i in range(module.applied_index + 1, core.commit_index + 1):
                module.apply(i, *core.log.entries[i - 1])
        self.collect()

    def settle(self) -> None:
        """Replicate to everyone and commit everything the leader has."""
        self.replicate()
        self.commit()

    def sync(self) -> None:
        for module in self.modules:
            module.tick(self.now_ns)
        self.collect()

    # ---- clients ----------------------------------------------------------------------
    def ingress(self, member: int, client_ref, message) -> None:
        self.modules[member].on_ingress(client_ref, message, self.now_ns)
        self.collect()

    def tick(self, advance_ns: int = 0) -> int:
        self.now_ns += advance_ns
        n = sum(m.tick(self.now_ns) for m in self.modules)
        self.collect()
        return n

    def collect(self) -> None:
        for i, module in enumerate(self.modules):
            self.egress[i].extend(module.take_egress())

    def take(self, member: int, kind=None, client_ref=None) -> list:
        out, keep = [], []
        for ref, msg in self.egress[member]:
            if (kind is None or isinstance(msg, kind)) and (client_ref is None or ref == client_ref):
                out.append(msg)
            else:
                keep.append((ref, msg))
        self.egress[member] = keep
        return out

    def connect(self, member: int = 0, endpoint: str = "c1:7000", nonce: int = 11,
                correlation_id: int = 1, credentials: bytes = b"") -> int:
        """Open a session through ``member`` (settling the log); returns its session id."""
        self.ingress(member, endpoint, P.SessionConnect(correlation_id, nonce, endpoint, credentials))
        self.settle()
        events = [e for e in self.take(member, P.SessionEvent, endpoint) if e.correlation_id == correlation_id]
        assert events and events[-1].code == P.EVENT_OK, events
        return events[-1].session_id

    def log_types(self, member: int = 0) -> list[int]:
        return [t for _, t, _ in self.cores[member].log.entries]


def hold_fdatasync(archive, hold_s: float = 10.0):
    """Make ``archive``'s fdatasync wait (at most ``hold_s``) until the returned Event is set:
    a Ready stays waiting for its sync as long as a test needs. Set the Event to release."""
    import threading
    gate = threading.Event()
    real = archive.fs.fdatasync

    def held(handle):
        gate.wait(hold_s)
        real(handle)
    archive.fs.fdatasync = held
    return gate
