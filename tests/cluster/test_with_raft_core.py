"""Three real RaftCores driving ConsensusModules, wired in memory, with a ClusterClient.

The driver below is what a node's duty cycle does for every Ready (persist is a no-op in
memory): send, apply through the module, advance. Messages between members go through a
queue that the test can cut for a crashed member.
"""
import random
from collections import deque

from aeronpy.client import ClusterClient
from aeronpy.cluster.client_core import ClientConfig
from aeronpy.cluster.module_config import ModuleConfig
from aeronpy.cluster.module import ConsensusModule
from aeronpy.core import CoreConfig, RaftCore
from aeronpy.service import Role
from aeronpy.testing.storage import default_log_factory

from .fakes import RecordingService

MS = 1_000_000
STEP_NS = 1 * MS


class RaftWorld:
    def __init__(self, n=3, seed=1):
        self.now_ns = 1_000 * MS
        self.rng = random.Random(seed)
        self.members = {i: f"m{i}:9000" for i in range(n)}
        self.cores, self.modules = [], []
        for i in range(n):
            core = RaftCore(CoreConfig(i, tuple(range(n)), election_timeout_ns=100 * MS,
                                       heartbeat_interval_ns=20 * MS, leader_heartbeat_timeout_ns=200 * MS),
                            random.Random(seed * 100 + i), log=default_log_factory()())
            module = ConsensusModule(i, core, [RecordingService()], ModuleConfig(members=self.members), self.now_ns)
            module.start()
            self.cores.append(core)
            self.modules.append(module)
        self.down: set[int] = set()
        self.wire: deque = deque()
        self.clients: dict[str, deque] = {}

    def step(self) -> None:
        self.now_ns += STEP_NS
        for i, (core, module) in enumerate(zip(self.cores, self.modules)):
            if i not in self.down:
                core.tick(self.now_ns)
                module.tick(self.now_ns)
                self.process(i)
        for _ in range(len(self.wire)):
            src, dst, msg = self.wire.popleft()
            if src not in self.down and dst not in self.down:
                self.cores[dst].step(src, msg, self.now_ns)
                self.process(dst)

    def process(self, i: int) -> None:
        core, module = self.cores[i], self.modules[i]
        for _ in range(16):
            if not core.has_ready():
                break
            rd = core.ready()
            for to, msg in rd.messages:
                self.wire.append((i, to, msg))
            module.apply_ready(rd, self.now_ns)
            core.advance(rd)
        for ref, message in module.take_egress():
            if i not in self.down and ref in self.clients:
                self.clients[ref].append(message)

    def ingress(self, endpoint: str, ref: str, message) -> None:
        member = int(endpoint[1:endpoint.index(":")])
        if member not in self.down:
            self.modules[member].on_ingress(ref, message, self.now_ns)
            self.process(member)

    def leader(self):
        live = [c for i, c in enumerate(self.cores) if i not in self.down and c.role is Role.LEADER]
        return max(live, key=lambda c: c.term).member_id if live else None

    def run_until(self, predicate, max_steps=5000) -> bool:
        for _ in range(max_steps):
            if predicate():
                return True
            self.step()
        return predicate()


class WorldTransport:
    def __init__(self, world: RaftWorld, name: str):
        self.world, self.local_endpoint = world, name
        self.inbox = world.clients[name] = deque()

    def send(self, endpoint, message):
        self.world.ingress(endpoint, self.local_endpoint, message)

    def poll(self, handler, limit=64):
        self.world.step()
        n = 0
        while self.inbox and n < limit:
            handler(self.inbox.popleft())
            n += 1
        return n

    def close(self):
        pass


def test_requests_are_applied_once_on_every_member_across_a_leader_crash():
    w = RaftWorld()
    assert w.run_until(lambda: w.leader() is not None and w.modules[w.leader()].leader_ready)
    client = ClusterClient.connect("m0:9000,m1:9000,m2:9000", transport=WorldTransport(w, "c:1"),
                                   config=ClientConfig(resend_timeout_ns=50 * MS), clock=lambda: w.now_ns)
    replies = [client.request(b"a%d" % i, timeout_s=2.0) for i in range(5)]
    assert replies == [b"re:a%d" % i for i in range(5)]

    old = w.leader()
    for i in range(3):                              # offers in flight when the leader dies
        assert client.offer(b"b%d" % i) > 0
    w.down.add(old)
    assert w.run_until(lambda: w.leader() not in (None, old) and w.modules[w.leader()].leader_ready)
    assert client.request(b"c", timeout_s=5.0) == b"re:c"
    assert client.leader_endpoint == w.members[w.leader()]

    w.down.discard(old)                             # the old leader rejoins as a follower
    expected = [b"a%d" % i for i in range(5)] + [b"b0", b"b1", b"b2", b"c"]
    assert w.run_until(lambda: all(m.container.services[0].messages == expected for m in w.modules),
                       max_steps=3000), [m.container.services[0].messages for m in w.modules]
    assert len({m.snapshot_state() for m in w.modules}) == 1
