"""Service timers across leader changes: scheduled, cancelled and rescheduled before and after
the leader is killed, each live timer fires once, no cancelled one fires, and every member
records the fire at the same position of the log with the same cluster time."""
from __future__ import annotations

import json
import signal

import pytest

from e2e.conftest import E2ECluster

pytestmark = pytest.mark.process

_MS = 1_000_000


def _fires(records: list) -> list:
    return [r for r in records if r[1] == "timer"]


def test_timers_fire_once_at_the_same_log_position_on_every_member():
    cluster = E2ECluster(["e2e.e2e_services:ProbeService"])
    try:
        cluster.start_and_wait()
        deadlines = {}
        with cluster.connect() as client:
            def call(**request) -> dict:
                return json.loads(client.request(json.dumps(request).encode(), timeout_s=5.0))

            for timer_id in range(1, 13):                    # 0.8 .. 3 s out
                deadlines[timer_id] = call(op="schedule", id=timer_id, delay_ms=600 + 200 * timer_id)["deadline_ns"]
            deadlines[13] = call(op="schedule", id=13, delay_ms=50)["deadline_ns"]   # fires before the kill
            assert call(op="cancel", id=3) == {"cancelled": True}
            del deadlines[3]
            deadlines[4] = call(op="schedule", id=4, delay_ms=3500)["deadline_ns"]   # moved later
            assert cluster.wait_for(lambda: 13 in call(op="fired")["fired"], 5.0)

            leader = cluster.leader()
            cluster.kill(leader, signal.SIGKILL)
            assert cluster.leader(15.0, exclude=[leader]) is not None, cluster.logs()
            cluster.start_member(leader)

            # after the change of leader: cancel one, move one earlier, add one
            assert call(op="cancel", id=9) == {"cancelled": True}
            del deadlines[9]
            deadlines[10] = call(op="schedule", id=10, delay_ms=100)["deadline_ns"]
            deadlines[14] = call(op="schedule", id=14, delay_ms=300)["deadline_ns"]
            assert call(op="cancel", id=99) == {"cancelled": False}           # never scheduled
            expected = set(deadlines)
            assert cluster.wait_for(lambda: set(call(op="fired")["fired"]) >= expected, 15.0), \
                call(op="fired")
            fired = call(op="fired")["fired"]
        assert sorted(fired) == sorted(expected), fired      # once each, none cancelled

        assert cluster.wait_probe(lambda r: len(_fires(r)) == len(expected), timeout_s=15.0), \
            [len(_fires(cluster.probe(0, m))) for m in range(3)]
        records = [_fires(cluster.probe(0, m)) for m in range(cluster.members)]
        assert records[0] == records[1] == records[2], records   # same position, same cluster time
        for position, _kind, _session, time_ns, timer_id in records[0]:
            assert time_ns >= deadlines[timer_id], (timer_id, time_ns - deadlines[timer_id])
    finally:
        cluster.close()
