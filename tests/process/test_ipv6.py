"""A cluster of real ``aeronpy node`` processes on IPv6 loopback (``::1``).

Members, clients and the redirect between them name IPv6 endpoints as ``[::1]:port``. The same
behaviour as on IPv4 is checked: exactly-once adds across a leader's SIGKILL (the client follows
the new leader by itself), a redirect from a follower, and garbage on the ingress port dropped
and counted while commits go on.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

import aeronpy
from aeronpy.endpoints import split_endpoint
from aeronpy.testing.process_cluster import ipv6_loopback_available

from .helpers import add, counters, describe, wait_until

pytestmark = pytest.mark.process


# skipped, visibly, only on a machine without IPv6 loopback; CI's has it
requires_ipv6 = pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback (::1)")


@requires_ipv6
def test_an_ipv6_cluster_serves_fails_over_and_counts_exactly_once(make_cluster):
    pc = make_cluster(host="::1").start()
    endpoints = pc.ingress_endpoints.split(",")
    assert all(e.startswith("[::1]:") for e in endpoints), endpoints
    leader = pc.leader(timeout_s=20)
    assert leader is not None, "no leader elected\n" + describe(pc)
    # connect through a follower first: its redirect names the leader as "[::1]:port"
    follower = next(m for m in range(pc.members) if m != leader)
    ordered = [endpoints[follower]] + [e for i, e in enumerate(endpoints) if i != follower]
    client = aeronpy.ClusterClient.connect(",".join(ordered), timeout_s=10)
    try:
        assert client.leader_endpoint == endpoints[leader]
        assert client.counters.get("redirects", 0) >= 1, client.counters
        assert client._transport.local_endpoint.startswith("[::1]:")    # where replies come
        assert [add(client) for _ in range(20)] == list(range(1, 21))

        assert pc.kill(leader, signal.SIGKILL) == -signal.SIGKILL
        assert add(client, timeout_s=10) == 21            # applied once across the failover
        new_leader = pc.leader(timeout_s=10, exclude={leader})
        assert new_leader is not None and new_leader != leader, describe(pc)
        assert client.leader_endpoint == endpoints[new_leader]
        assert [add(client) for _ in range(10)] == list(range(22, 32))

        # a stranger's garbage on the new leader's ingress port: dropped and counted
        _host, port = split_endpoint(endpoints[new_leader])
        before = counters(pc, new_leader)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as stranger:
            for _ in range(50):
                stranger.sendto(os.urandom(40), ("::1", port))
        assert wait_until(lambda: counters(pc, new_leader).get("drops_malformed", 0)
                          >= before.get("drops_malformed", 0) + 25, 5), counters(pc, new_leader)
        assert add(client) == 32

        # the admin tool reaches the cluster through a follower's bracketed endpoint
        follower = next(m for m in range(pc.members) if m not in (leader, new_leader))
        snap = subprocess.run([sys.executable, "-m", "aeronpy", "tool", "snapshot", "--data-dir",
                               pc.data_dir(follower)], capture_output=True, text=True,
                              timeout=60, env=pc.env, cwd=pc.base_dir)
        assert snap.returncode == 0, snap.stdout + snap.stderr
        assert f"leader_endpoint: {endpoints[new_leader]}" in snap.stdout, snap.stdout
        assert "recorded: yes" in snap.stdout, snap.stdout

        pc.start_member(leader)                           # the old leader rejoins and catches up
        assert wait_until(lambda: counters(pc, leader).get("commit_index", -1)
                          >= counters(pc, new_leader).get("commit_index", 0), 20), describe(pc)
    finally:
        client.close()
