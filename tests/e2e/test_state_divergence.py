"""Members compare their snapshots' checksums through the log (aeronpy/cluster/state_digests.py)
on a real 3-process cluster: a service that draws random numbers is reported by the members
whose snapshot differs from the leader's (the check can fail), and a deterministic one is
checked on every member with nothing reported (no false alarm)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from e2e.conftest import E2ECluster

pytestmark = pytest.mark.process


def _snapshot_and_count(service: str) -> tuple:
    cluster = E2ECluster([service], config={"authenticator": "e2e.e2e_services:PasswordAuthenticator"})
    try:
        leader = cluster.start_and_wait()
        with cluster.connect() as client:
            for _ in range(20):
                assert client.request(b"+", timeout_s=10.0) == b"ok"
        done = subprocess.run([sys.executable, "-m", "aeronpy", "tool", "snapshot", "--data-dir",
                               cluster.data_dir(leader), "--json"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr

        def compared() -> bool:
            return all((cluster.counter(m, "state_digests_checked") or 0) >= 1 for m in range(3))
        assert cluster.wait_for(compared, 20.0, 0.1), [cluster.read_counters(m) for m in range(3)]
        divergences = [cluster.counter(m, "state_divergences") for m in range(3)]
        errors = [subprocess.run([sys.executable, "-m", "aeronpy", "tool", "errors", "--data-dir",
                                  cluster.data_dir(m), "--json"], capture_output=True, text=True,
                                 timeout=60).stdout for m in range(3)]
        return leader, divergences, errors
    finally:
        cluster.close()


def test_a_service_that_draws_random_numbers_is_reported_by_the_members_that_differ():
    leader, divergences, errors = _snapshot_and_count("e2e.tally_services:NoisyTally")
    followers = [m for m in range(3) if m != leader]
    assert divergences[leader] == 0                   # its own checksum, compared with itself
    assert all(divergences[m] == 1 for m in followers), divergences
    for m in followers:
        assert "StateDivergenceError" in errors[m] and "snapshot at log index" in errors[m], errors[m]


def test_a_deterministic_service_is_checked_everywhere_and_nothing_is_reported():
    _leader, divergences, errors = _snapshot_and_count("e2e.tally_services:Tally")
    assert divergences == [0, 0, 0]
    assert not any("StateDivergenceError" in text for text in errors)
    assert all(json.loads(text) is not None for text in errors)


def test_automatic_snapshots_are_compared_too():
    """With only automatic snapshots (snapshot_log_bytes), the leader asks for each through the
    log, so all members take it at one index and compare checksums: the random-number service is
    reported without an operator's snapshot. (Before, each member snapshotted where its own
    applied batches crossed the limit, and most digests found nothing to compare with.)"""
    cluster = E2ECluster(["e2e.tally_services:NoisyTally"],
                         config={"authenticator": "e2e.e2e_services:PasswordAuthenticator",
                                 "snapshot_log_bytes": 2048})
    try:
        leader = cluster.start_and_wait()
        with cluster.connect() as client:
            for _ in range(150):
                assert client.request(b"+", timeout_s=10.0) == b"ok"
        followers = [m for m in range(3) if m != leader]

        def reported() -> bool:
            return all((cluster.counter(m, "state_divergences") or 0) >= 1 for m in followers)
        assert cluster.wait_for(reported, 20.0, 0.1), [cluster.read_counters(m) for m in range(3)]
        assert cluster.counter(leader, "state_divergences") == 0
        assert all((cluster.counter(m, "state_digests_unchecked") or 0) == 0 for m in range(3)), \
            [cluster.read_counters(m) for m in range(3)]
    finally:
        cluster.close()
