"""Exactly-once across leader failover: clients send N increments (windowed offers) to a
CounterService while the leader is SIGKILLed and restarted several times. Every increment is
applied once (the final total is N on every member, read from the files the services write
on a clean shutdown) and every client gets exactly one reply per increment."""
from __future__ import annotations

import json
import os
import signal
import struct
import threading
import time
from typing import Optional

import pytest

from aeronpy.client import ClientConfig
from aeronpy.cluster.codes import BACK_PRESSURED

from e2e.conftest import FAST_CLIENT, E2ECluster

pytestmark = pytest.mark.process

CLIENTS = 3
INCREMENTS_PER_CLIENT = 400
SEND_WINDOW = 8            # <= the cluster's reply cache per session (16), so no reply is lost
KILLS = 3
RUN_BOUND_S = 90.0
_ONE = struct.pack("<q", 1)
IMPATIENT_CLIENT = ClientConfig(resend_timeout_ns=2_000_000, keepalive_interval_ns=200_000_000)


class IncrementingClient(threading.Thread):
    """Offers INCREMENTS_PER_CLIENT increments, at most SEND_WINDOW awaiting a reply."""

    def __init__(self, cluster: E2ECluster, deadline: float, config: Optional[ClientConfig] = None):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.config = config or FAST_CLIENT
        self.counters: dict = {}
        self.deadline = deadline
        self.replies: dict = {}          # correlation id -> [totals received]
        self.offered: list = []
        self.error = None

    def on_reply(self, correlation_id: int, payload: memoryview) -> None:
        self.replies.setdefault(correlation_id, []).append(struct.unpack("<q", payload)[0])

    def run(self) -> None:
        try:
            client = self.cluster.connect(config=self.config)
        except Exception as exc:  # reported by the test
            self.error = exc
            return
        try:
            while time.monotonic() < self.deadline:
                awaiting = len(self.offered) - len(self.replies)
                while awaiting < SEND_WINDOW and len(self.offered) < INCREMENTS_PER_CLIENT:
                    correlation_id = client.offer(_ONE)
                    if correlation_id == BACK_PRESSURED:
                        break
                    assert correlation_id > 0, f"offer returned {correlation_id}"
                    self.offered.append(correlation_id)
                    awaiting += 1
                if client.poll_egress(self.on_reply) == 0:
                    time.sleep(0.0001)
                if len(self.offered) == INCREMENTS_PER_CLIENT and len(self.replies) == INCREMENTS_PER_CLIENT:
                    # linger briefly: a duplicate reply would show up here
                    linger = time.monotonic() + 0.3
                    while time.monotonic() < linger:
                        client.poll_egress(self.on_reply)
                        time.sleep(0.001)
                    return
        except Exception as exc:
            self.error = exc
        finally:
            self.counters = dict(client.counters)
            client.close()


@pytest.mark.parametrize("file_sync", ["none", "data"])
def test_increments_are_applied_and_answered_exactly_once_across_leader_kills(file_sync):
    # "data": a leader sends its appends before its own write and fsync (Ready.send_first),
    # so a SIGKILL can leave followers holding entries the dead leader's disk lacks
    cluster = E2ECluster(["aeronpy.testing.services:CounterService"], config={"file_sync": file_sync})
    try:
        cluster.start_and_wait()
        deadline = time.monotonic() + RUN_BOUND_S
        # one impatient client re-sends its whole window whenever an ack takes over 2 ms, so
        # the cluster keeps seeing messages it already sequenced or applied, failover or not
        clients = [IncrementingClient(cluster, deadline) for _ in range(CLIENTS - 1)]
        clients.append(IncrementingClient(cluster, deadline, IMPATIENT_CLIENT))
        for c in clients:
            c.start()
        kills = []
        for _ in range(KILLS):
            target = len(kills) * INCREMENTS_PER_CLIENT // (KILLS + 1)   # spread over the run
            cluster.wait_for(lambda: min(len(c.replies) for c in clients) > target + 40, 30.0)
            leader = cluster.leader(10.0)
            assert leader is not None, cluster.logs()
            cluster.kill(leader, signal.SIGKILL)
            kills.append(leader)
            assert cluster.leader(15.0, exclude=[leader]) is not None, cluster.logs()
            cluster.start_member(leader)
        for c in clients:
            c.join(max(1.0, deadline - time.monotonic() + 5.0))
        errors = [c.error for c in clients if c.error is not None]
        assert not errors, errors
        progress = [(len(c.offered), len(c.replies)) for c in clients]
        assert all(p == (INCREMENTS_PER_CLIENT, INCREMENTS_PER_CLIENT) for p in progress), \
            f"(offered, answered) per client: {progress}; killed {kills}\n{cluster.logs()}"

        total = CLIENTS * INCREMENTS_PER_CLIENT
        totals_seen = []
        for c in clients:
            assert set(c.replies) == set(c.offered)
            duplicated = {cid: r for cid, r in c.replies.items() if len(r) != 1}
            assert not duplicated, f"correlation ids answered more than once: {duplicated}"
            totals_seen += [r[0] for r in c.replies.values()]
        # each increment saw the total right after it was applied: one per value 1..N
        assert sorted(totals_seen) == list(range(1, total + 1))

        cluster.wait_commits_agree()
        for member in range(cluster.members):     # clean shutdown: on_terminate writes the file
            assert cluster.kill(member, signal.SIGTERM, wait_s=15.0) == 0, cluster.logs()
        for member in range(cluster.members):
            with open(os.path.join(cluster.hash_dir, f"member-{member}.json")) as f:
                record = json.load(f)
            assert (record["total"], record["applied"]) == (total, total), (member, record)
    finally:
        cluster.close()
