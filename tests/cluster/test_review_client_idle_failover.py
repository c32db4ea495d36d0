"""Review: an idle client (one that keeps calling poll_egress, so it sends its keepalives)
must keep its session across a leader crash.

With the UDP transport a member can send egress only to clients it has heard from, so the new
leader's NEW_LEADER event does not reach a client that has only ever talked to the old leader.
An idle client has an empty send window, so its stall timer never moves it to another member
either: its keepalives went to the dead leader for ever and the new leader closed the session
after session_timeout_ms, although the application did everything the docs ask of it."""
from __future__ import annotations

import signal
import struct
import time

import pytest

pytestmark = pytest.mark.process

import aeronpy
from aeronpy.testing.process_cluster import ProcessCluster

ADD = struct.Struct("<q")
SESSION_TIMEOUT_MS = 2000


@pytest.fixture
def cluster():
    pc = ProcessCluster(members=3, services=("aeronpy.testing.services:CounterService",),
                        config={"session_timeout_ms": SESSION_TIMEOUT_MS})
    try:
        yield pc.start()
    finally:
        pc.close()


def test_an_idle_polling_client_keeps_its_session_across_a_leader_crash(cluster):
    pc = cluster
    leader = pc.leader(timeout_s=20)
    assert leader is not None
    with aeronpy.ClusterClient.connect(pc.ingress_endpoints, timeout_s=10) as client:
        assert ADD.unpack(client.request(ADD.pack(1), timeout_s=5))[0] == 1
        assert pc.kill(leader, signal.SIGKILL) == -signal.SIGKILL
        assert pc.leader(timeout_s=10, exclude={leader}) is not None
        # idle, but polling as the docs ask: keepalives go out all along
        deadline = time.monotonic() + 2.0 * SESSION_TIMEOUT_MS / 1000
        for _ in range(100_000):
            if time.monotonic() >= deadline:
                break
            client.poll_egress(lambda c, p: None)
            client.wait_for_egress(0.01)
        assert client.is_connected, client._core.error
        assert ADD.unpack(client.request(ADD.pack(1), timeout_s=5))[0] == 2
