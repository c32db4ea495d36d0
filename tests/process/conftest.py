"""Fixtures of the process tests: real ``aeronpy node`` processes on loopback.

``make_cluster(**kw)`` builds an `aeronpy.testing.process_cluster.ProcessCluster` running the
CounterService; every cluster is killed and removed after the test, and when the test failed
the tail of each node's log is printed so the failure explains itself.
"""
from __future__ import annotations

import os

import pytest

from aeronpy.testing.process_cluster import ProcessCluster

from .helpers import COUNTER_SERVICE


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _failed(request) -> bool:
    return any(getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
               for when in ("setup", "call"))


@pytest.fixture
def make_cluster(request, tmp_path):
    clusters = []

    def make(**kwargs) -> ProcessCluster:
        kwargs.setdefault("services", (COUNTER_SERVICE,))
        hash_dir = tmp_path / f"hashes{len(clusters)}"
        hash_dir.mkdir()
        env = dict(kwargs.pop("env", None) or {})
        env.setdefault("AERONPY_HASH_DIR", str(hash_dir))
        pc = ProcessCluster(env=env, **kwargs)
        pc.hash_dir = str(hash_dir)
        clusters.append(pc)
        return pc

    yield make
    failed = _failed(request)
    for pc in clusters:
        if failed:
            for member in range(pc.members):
                print(f"--- node {member} log ({pc.log_path(member)}) ---")
                print(pc.tail_log(member, 30))
        pc.close(remove=not (failed and os.environ.get("AERONPY_KEEP_FAILED")))
