"""``follower_lag_max``: the leader's gauge of how far its furthest follower is behind. A
follower that stops answering (here: stopped with SIGSTOP) keeps looking healthy in its own
counters, so the leader's view is what shows the cluster one failure from unavailable."""
from __future__ import annotations

import os
import signal
import struct

import pytest

import aeronpy
from aeronpy.testing.process_cluster import ProcessCluster
from aeronpy.testing.waits import wait_until

pytestmark = pytest.mark.process

ADD = struct.Struct("<q")


def _state(pid: int) -> str:
    """The process state letter from /proc (T: stopped)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_the_leader_shows_a_stopped_follower_falling_behind_and_catching_up():
    with ProcessCluster(services=("aeronpy.testing.services:CounterService",)) as pc:
        pc.start()
        leader = pc.leader(20.0)
        assert leader is not None
        follower = next(m for m in range(3) if m != leader)

        def lag() -> int:
            return (pc.read_counters(leader) or {}).get("follower_lag_max", -1)

        with aeronpy.ClusterClient.connect(pc.ingress_endpoints, timeout_s=10.0) as client:
            for _ in range(20):
                client.request(ADD.pack(1), timeout_s=5.0)
            assert wait_until(lambda: lag() == 0, 10.0), lag()          # all caught up
            assert (pc.read_counters(follower) or {}).get("follower_lag_max") == 0
            os.kill(pc.procs[follower].pid, signal.SIGSTOP)
            # the stop is not instant: a follower still running took the first append once
            # (lag 199 of 200); wait until the kernel reports it stopped
            assert wait_until(lambda: _state(pc.procs[follower].pid) in ("T", "t"), 5.0)
            try:
                for _ in range(200):
                    client.request(ADD.pack(1), timeout_s=5.0)           # the other two commit
                assert wait_until(lambda: lag() >= 200, 10.0), lag()
            finally:
                os.kill(pc.procs[follower].pid, signal.SIGCONT)
            assert wait_until(lambda: lag() == 0, 20.0), lag()          # caught up again
