"""Shared helpers of the end-to-end tests: real 3-process clusters on 127.0.0.1.

Every wait here is bounded; a failing test prints the tail of each node's log.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Callable, Iterable, Optional

import pytest

from aeronpy.client import ClientConfig, ClusterClient
from aeronpy.testing.process_cluster import ProcessCluster

from e2e.e2e_services import PASSWORD, read_probe

# node processes import the e2e services as ``e2e.e2e_services``
_TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MS = 1_000_000

# Failover in about a second, with room for a loaded 2-core machine.
BASE_CONFIG = {"election_timeout_ms": 300, "heartbeat_interval_ms": 50,
               "leader_heartbeat_timeout_ms": 600}
# Clients notice a dead leader within ~0.5 s and keep their sessions alive well inside 1.5 s.
FAST_CLIENT = ClientConfig(resend_timeout_ns=250 * _MS, keepalive_interval_ns=200 * _MS,
                           connect_attempt_timeout_ns=200 * _MS)


class E2ECluster(ProcessCluster):
    """A ProcessCluster whose nodes can import tests/e2e services and write probe files."""

    def __init__(self, services: Iterable[str], config: Optional[dict] = None, members: int = 3):
        self.hash_dir = tempfile.mkdtemp(prefix="aeronpy-e2e-")
        # ProcessCluster puts the imported aeronpy's directory first; tests/ goes after it
        super().__init__(members=members, services=list(services),
                         base_dir=os.path.join(self.hash_dir, "cluster"),
                         config={**BASE_CONFIG, **(config or {})},
                         env={"PYTHONPATH": _TESTS_DIR, "AERONPY_HASH_DIR": self.hash_dir})

    def start_and_wait(self, timeout_s: float = 20.0) -> int:
        self.start()
        leader = self.leader(timeout_s)
        assert leader is not None, "no leader elected\n" + self.logs()
        return leader

    def endpoint(self, member: int) -> str:
        return f"{self.host}:{self.member_ports[member]['ingress_port']}"

    def connect(self, endpoints: Optional[str] = None, timeout_s: float = 15.0, **options) -> ClusterClient:
        options.setdefault("config", FAST_CLIENT)
        options.setdefault("credentials", PASSWORD)
        return ClusterClient.connect(endpoints or self.ingress_endpoints, timeout_s=timeout_s, **options)

    def counter(self, member: int, name: str) -> Optional[int]:
        counters = self.read_counters(member)
        return None if counters is None else counters.get(name)

    def commit_indexes(self) -> list:
        return [self.counter(i, "commit_index") if self.alive(i) else None for i in range(self.members)]

    def wait_commits_agree(self, timeout_s: float = 15.0) -> int:
        """Wait until every member is alive and reports the same commit index twice in a row."""
        last = [None]

        def agree() -> bool:
            now = self.commit_indexes()
            stable = now == last[0] and None not in now and len(set(now)) == 1
            last[0] = now
            return stable
        assert self.wait_for(agree, timeout_s, 0.1), f"commit indexes differ: {self.commit_indexes()}"
        return last[0][0]

    def probe(self, service_id: int, member: int) -> list:
        return read_probe(self.hash_dir, service_id, member)

    def wait_probe(self, predicate: Callable[[list], bool], service_id: int = 0,
                   timeout_s: float = 10.0) -> bool:
        """Wait until ``predicate(records)`` holds for every member's probe file."""
        return self.wait_for(lambda: all(predicate(self.probe(service_id, m)) for m in range(self.members)),
                             timeout_s, 0.05)

    def logs(self, lines: int = 25) -> str:
        return "\n".join(f"--- node{i}.log\n{self.tail_log(i, lines)}" for i in range(self.members))

    def close(self, remove: bool = True) -> None:
        super().close(remove)
        if remove:
            shutil.rmtree(self.hash_dir, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for cluster in item.funcargs.values() if hasattr(item, "funcargs") else ():
            if isinstance(cluster, E2ECluster):
                report.sections.append(("node logs", cluster.logs()))


def deadline_after(seconds: float) -> float:
    return time.monotonic() + seconds


@pytest.fixture(scope="session")
def shared_cluster():
    """Two ProbeServices on every node, password authentication, 1.5 s session timeout: for
    the tests that do not kill members (routing, sessions, bad input, asyncio)."""
    cluster = E2ECluster(["e2e.e2e_services:ProbeService", "e2e.e2e_services:ProbeService"],
                         config={"session_timeout_ms": 1500,
                                 "authenticator": "e2e.e2e_services:PasswordAuthenticator"})
    try:
        cluster.start_and_wait()
        yield cluster
    finally:
        cluster.close()
