"""An in-memory network between ClusterClients and a FakeWorld, on simulated time.

Every client poll is one step of the world: time advances by ``step_ns``, the leader's duties
run, the log settles (unless ``auto_settle`` is off), and egress is delivered. Members in
``down`` neither receive ingress nor send egress.
"""
from __future__ import annotations

from collections import deque

from aeronpy.client import ClusterClient
from aeronpy.cluster.client_core import ClientConfig
from aeronpy.service import Role


class MemTransport:
    def __init__(self, net: "MemNet", local_endpoint: str):
        self.net = net
        self.local_endpoint = local_endpoint
        self.inbox: deque = deque()
        self.closed = False
        self.sent = []

    def send(self, endpoint: str, message) -> None:
        self.sent.append((endpoint, message))
        self.net.route(self, endpoint, message)

    def poll(self, handler, limit: int = 64) -> int:
        self.net.pump()
        n = 0
        while self.inbox and n < limit:
            handler(self.inbox.popleft())
            n += 1
        return n

    def close(self) -> None:
        self.closed = True


class MemNet:
    def __init__(self, world, step_ns: int = 100_000):
        self.world = world
        self.step_ns = step_ns
        self.transports: dict[str, MemTransport] = {}
        self.down: set[int] = set()
        self.auto_settle = True
        self.pumps = 0
        self.script: dict[int, object] = {}      # pump number -> callable run before that pump
        self.before_delivery = None              # callable run after the log settles, before egress

    def endpoints(self, order=None) -> str:
        order = range(len(self.world.modules)) if order is None else order
        return ",".join(f"m{i}:9000" for i in order)

    def client(self, name: str = "c1:7000", endpoints=None, **options) -> ClusterClient:
        transport = self.transports[name] = MemTransport(self, name)
        config = options.pop("config", ClientConfig(connect_attempt_timeout_ns=5_000_000,
                                                    resend_timeout_ns=20_000_000))
        return ClusterClient.connect(endpoints or self.endpoints(), timeout_s=options.pop("timeout_s", 1.0),
                                     transport=transport, config=config, clock=self.clock, **options)

    def clock(self) -> int:
        return self.world.now_ns

    def route(self, transport: MemTransport, endpoint: str, message) -> None:
        member = int(endpoint[1:endpoint.index(":")])
        if member not in self.down:
            self.world.ingress(member, transport.local_endpoint, message)

    def pump(self) -> None:
        self.pumps += 1
        action = self.script.pop(self.pumps, None)
        if action is not None:
            action()
        w = self.world
        w.now_ns += self.step_ns
        for member, module in enumerate(w.modules):
            if member not in self.down:
                module.tick(w.now_ns)
        w.collect()
        if self.auto_settle:
            leader = [c.member_id for c in w.cores if c.role is Role.LEADER and c.member_id not in self.down]
            if leader:
                alive = [m for m in range(len(w.cores)) if m not in self.down]
                w.replicate(to=alive)
                w.commit(members=alive)
        if self.before_delivery is not None:
            self.before_delivery()
        for member in range(len(w.modules)):
            out, w.egress[member] = w.egress[member], []
            if member in self.down:
                continue
            for ref, message in out:
                transport = self.transports.get(ref)
                if transport is not None and not transport.closed:
                    transport.inbox.append(message)

    def fail_over(self, old: int, new: int) -> None:
        """``old`` crashes (its queued egress is lost) and ``new`` wins the next term."""
        self.down.add(old)
        self.world.egress[old].clear()
        self.world.elect(new, alive=[m for m in range(len(self.world.cores)) if m not in self.down])
