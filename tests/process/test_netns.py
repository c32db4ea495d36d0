"""Multi-host (issue 5): three nodes in three network namespaces joined by veth pairs and a bridge.

Topology, all inside namespaces this test creates (the root namespace is not touched):
a bridge namespace holding ``br0`` (10.213.0.254, where the client runs) and one namespace
per node (10.213.0.1-3 on ``eth0``, a veth whose other end is enslaved to ``br0``). The test
runs twice: on those IPv4 addresses, and on IPv6 ones (fd00:213::1-3, the bridge fd00:213::fe;
unique-local, added without duplicate address detection so they are usable at once). The
leader is cut off by taking its ``eth0`` down: the majority must elect and keep committing,
and the isolated old leader must step down by check-quorum (read from its counters file).
Then the link comes back and the old leader must converge: same term, commit index caught up,
and at the end every member's service holds the same total.

Needs root and iproute2; skipped with the reason printed where namespaces cannot be made.
Namespaces are deleted in a finalizer whatever happens; every command and wait is bounded.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys

import pytest

from aeronpy.endpoints import format_endpoint

from .helpers import LEADER, counters, describe, read_hash_files, settled, wait_until

pytestmark = pytest.mark.netns

# (address of member i, the bridge's address, prefix length) per address family
FAMILIES = {
    "ipv4": (lambda i: f"10.213.0.{i + 1}", "10.213.0.254", 24),
    "ipv6": (lambda i: f"fd00:213::{i + 1}", "fd00:213::fe", 64),
}
CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netns_client.py")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15, check=check)


def _netns_unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    probe = f"aeronpy-probe-{os.getpid()}"
    result = _ip("netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"'ip netns add' failed: {result.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class Namespaces:
    """The bridge namespace and one namespace per node; ``close()`` deletes them all."""

    def __init__(self, members: int, family: str = "ipv4"):
        self.member_address, self.bridge_address, self.prefix = FAMILIES[family]
        self.family = family
        tag = f"ap{os.getpid() % 100000}"
        self.bridge = f"{tag}-br"
        self.nodes = [f"{tag}-n{i}" for i in range(members)]
        self.created: list = []

    def exec(self, ns: str, *args: str) -> subprocess.CompletedProcess:
        return _ip("netns", "exec", ns, *args)

    def build(self) -> None:
        for ns in [self.bridge, *self.nodes]:
            _ip("netns", "add", ns)
            self.created.append(ns)
            self.exec(ns, "ip", "link", "set", "lo", "up")
        self.exec(self.bridge, "ip", "link", "add", "br0", "type", "bridge")
        self.exec(self.bridge, "ip", "addr", "add", f"{self.bridge_address}/{self.prefix}",
                  "dev", "br0", *self._nodad)
        self.exec(self.bridge, "ip", "link", "set", "br0", "up")
        for i, ns in enumerate(self.nodes):
            self.exec(self.bridge, "ip", "link", "add", f"vb{i}", "type", "veth",
                      "peer", "name", "eth0", "netns", ns)
            self.exec(self.bridge, "ip", "link", "set", f"vb{i}", "master", "br0", "up")
            if self.family == "ipv6":
                # Linux drops an interface's IPv6 addresses when it goes down unless told to
                # keep them; the cut below takes eth0 down, as a pulled cable would not
                self.exec(ns, "sysctl", "-q", "-w", "net.ipv6.conf.eth0.keep_addr_on_down=1")
            self.exec(ns, "ip", "addr", "add", f"{self.address(i)}/{self.prefix}", "dev", "eth0",
                      *self._nodad)
            self.exec(ns, "ip", "link", "set", "eth0", "up")

    @property
    def _nodad(self) -> tuple:
        return ("nodad",) if self.family == "ipv6" else ()

    def address(self, member: int) -> str:
        return self.member_address(member)

    def set_link(self, member: int, up: bool) -> None:
        self.exec(self.nodes[member], "ip", "link", "set", "eth0", "up" if up else "down")

    def close(self) -> None:
        for ns in reversed(self.created):
            _ip("netns", "del", ns, check=False)
        self.created.clear()


class NetnsClient:
    """The line-driven client (netns_client.py) running in the bridge namespace."""

    def __init__(self, ns: str, endpoints: str, env: dict):
        # "auto": a plain ClusterClient.connect, which must find the bridge's address itself
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, CLIENT, endpoints, "auto"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def read(self, timeout_s: float) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        assert ready, f"client gave no answer within {timeout_s}s"
        line = self.proc.stdout.readline()
        assert line, f"client exited (code {self.proc.poll()})"
        return json.loads(line)

    def add(self, amount: int = 1, timeout_s: float = 10.0) -> int:
        self.proc.stdin.write(f"add {amount} {timeout_s}\n")
        self.proc.stdin.flush()
        answer = self.read(timeout_s + 5)
        assert answer["ok"], answer
        return answer["total"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture(params=sorted(FAMILIES))
def namespaces(request):
    reason = _netns_unavailable()
    if reason is not None:
        print(f"netns test skipped: {reason}")
        pytest.skip(reason)
    ns = Namespaces(3, request.param)
    request.addfinalizer(ns.close)      # registered before build: a half-built set is removed too
    ns.build()
    return ns


def test_isolated_leader_steps_down_majority_commits_and_it_converges_after_heal(
        make_cluster, namespaces):
    ns = namespaces
    pc = make_cluster(hosts=[ns.address(i) for i in range(3)],
                      wrap_command=lambda member, argv: ["ip", "netns", "exec", ns.nodes[member], *argv])
    pc.start()
    client = None
    try:
        leader = pc.leader(timeout_s=30)
        assert leader is not None, "no leader elected across namespaces\n" + describe(pc)
        client = NetnsClient(ns.bridge, pc.ingress_endpoints, pc.env)
        connected = client.read(20)
        assert connected["ok"] and connected["connected"], connected
        bridge = format_endpoint(ns.bridge_address, 0)[:-1]        # "10.213.0.254:", "[fd00:213::fe]:"
        assert connected["local"].startswith(bridge), connected      # not loopback
        assert [client.add() for _ in range(5)] == [1, 2, 3, 4, 5]
        term = counters(pc, leader)["leadership_term"]

        ns.set_link(leader, up=False)                     # cut the leader off
        assert client.add(timeout_s=15) == 6              # the majority elects and commits
        successor = pc.leader(timeout_s=10, exclude={leader}, min_term=term + 1)
        assert successor is not None, describe(pc)
        assert wait_until(lambda: counters(pc, leader).get("role") != LEADER, 10), \
            "the isolated leader did not step down (check-quorum)\n" + describe(pc)
        assert pc.alive(leader)
        assert [client.add() for _ in range(10)] == list(range(7, 17))
        majority_commit = counters(pc, successor)["commit_index"]
        assert counters(pc, leader)["commit_index"] < majority_commit   # it really was cut off
        print("while member", leader, "was cut off:\n" + describe(pc))

        ns.set_link(leader, up=True)                      # heal
        new_term = counters(pc, successor)["leadership_term"]
        assert wait_until(lambda: counters(pc, leader).get("commit_index", 0) >= majority_commit
                          and counters(pc, leader).get("leadership_term") >= new_term, 20), \
            "the old leader did not converge after the heal\n" + describe(pc)
        assert client.add() == 17
        print("after the heal:\n" + describe(pc))
    finally:
        if client is not None:
            client.close()

    live = list(range(pc.members))
    assert wait_until(lambda: settled(pc, live), 10), describe(pc)
    live.sort(key=lambda m: counters(pc, m).get("role") == LEADER)
    assert all(pc.kill(m, signal.SIGTERM) == 0 for m in live)
    finals = read_hash_files(pc.hash_dir)
    assert len(finals) == 3 and {r["total"] for r in finals.values()} == {17}, finals
