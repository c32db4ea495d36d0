"""In-process clusters of real ClusterNodes (real UDP on loopback, real files) for the
snapshot tests: every node runs its duty cycle on its own thread (``node.start()``)."""
from __future__ import annotations

import os
import struct
import time
from typing import Callable, Optional

from aeronpy import ClusterClient
from aeronpy.cluster.config import NodeConfig
from aeronpy.cluster.node import ClusterNode
from aeronpy.testing.process_cluster import free_udp_ports
from aeronpy.testing.services import CounterService
from aeronpy.testing.waits import wait_until

FAST = dict(election_timeout_ms=150, heartbeat_interval_ms=30, leader_heartbeat_timeout_ms=300,
            session_timeout_ms=5000, idle_strategy="sleep", log_level="WARNING")


def member_tables(count: int) -> list:
    ports = free_udp_ports(2 * count)
    return [{"id": i, "host": "127.0.0.1", "consensus_port": ports[2 * i],
             "ingress_port": ports[2 * i + 1]} for i in range(count)]


class LocalCluster:
    """``count`` ClusterNodes in this process; ``service_factory()`` builds each member's service."""

    def __init__(self, base_dir: str, count: int = 3, service_factory: Callable = CounterService,
                 members: Optional[list] = None, **config):
        self.base_dir = base_dir
        self.members = members or member_tables(count)
        self.settings = {**FAST, **config}
        self.service_factory = service_factory
        self.nodes: dict = {}
        self.services: dict = {}

    def config(self, member_id: int) -> NodeConfig:
        return NodeConfig(cluster_id=7, members=self.members, member_id=member_id,
                          data_dir=self.data_dir(member_id), **self.settings)

    def data_dir(self, member_id: int) -> str:
        return os.path.join(self.base_dir, f"node{member_id}")

    @property
    def endpoints(self) -> str:
        return ",".join(f"127.0.0.1:{m['ingress_port']}" for m in self.members)

    def start(self, member_id: Optional[int] = None) -> "LocalCluster":
        for i in ([member_id] if member_id is not None else [m["id"] for m in self.members]):
            service = self.service_factory()
            node = ClusterNode(self.config(i), [service])
            self.nodes[i], self.services[i] = node, service
            node.start()
        return self

    def stop(self, member_id: int) -> None:
        node = self.nodes.pop(member_id)
        node.close(transfer_timeout_ms=1)

    def leader(self, timeout_s: float = 10.0) -> Optional[int]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for i, node in self.nodes.items():
                if node.role.name == "LEADER":
                    return i
            time.sleep(0.01)
        return None

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        return wait_until(predicate, timeout_s)

    def client(self, timeout_s: float = 10.0) -> ClusterClient:
        return ClusterClient.connect(self.endpoints, timeout_s=timeout_s)

    def close(self) -> None:
        for i in list(self.nodes):
            try:
                self.nodes.pop(i).close(transfer_timeout_ms=1)
            except Exception:
                pass


def add(client: ClusterClient, n: int = 1, timeout_s: float = 5.0) -> int:
    """Send +n to a CounterService; returns the new total."""
    return struct.unpack("<q", client.request(struct.pack("<q", n), timeout_s=timeout_s))[0]


def applied_everywhere(cluster: LocalCluster, index: int) -> bool:
    return all(n.module.applied_index >= index for n in cluster.nodes.values())
