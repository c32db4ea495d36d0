"""Cluster time on real nodes is ns since the Unix epoch (the leader's wall clock read once at
its start, advanced by its monotonic clock), so members on different hosts stamp comparable
times. It was the leader's monotonic clock, whose origin is each host's boot: after a failover
to a host booted later, cluster time stood still (and no timer fired) until that host's
monotonic clock caught up, possibly for days."""
import struct
import time

import aeronpy
from aeronpy.cluster.node import epoch_anchored_clock

from .cluster_helpers import LocalCluster

DAY_NS = 86_400 * 10**9


class _Clock:
    def __init__(self, now: int):
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_hosts_booted_at_different_times_read_the_same_cluster_time():
    wall = _Clock(1_790_000_000 * 10**9)
    up_long, up_short = _Clock(100 * DAY_NS), _Clock(60 * 10**9)     # monotonic: since boot
    a = epoch_anchored_clock(wall, up_long)
    b = epoch_anchored_clock(wall, up_short)
    assert a() == b() == wall.now
    up_long.now += 5_000
    up_short.now += 5_000
    assert a() == b() == wall.now + 5_000          # both advance with their monotonic clocks
    wall.now -= 3 * 10**9                          # an NTP step back after the start ...
    assert a() == wall.now + 3 * 10**9 + 5_000     # ... moves neither
    # the old clock, each host's monotonic time, differed by the hosts' uptimes
    assert up_long.now - up_short.now > 99 * DAY_NS


class _TimeService(aeronpy.ClusteredService):
    def on_session_message(self, session, timestamp_ns, message):
        session.offer(struct.pack("<q", timestamp_ns))


def _stamp(client) -> int:
    return struct.unpack("<q", client.request(b"t", timeout_s=10.0))[0]


def test_a_service_sees_epoch_time_and_it_goes_on_after_a_failover(tmp_path):
    cluster = LocalCluster(str(tmp_path), service_factory=_TimeService,
                           snapshot_log_bytes=0).start()
    try:
        leader = cluster.leader()
        assert leader is not None
        with cluster.client() as client:
            first = _stamp(client)
            assert abs(first - time.time_ns()) < 5 * 10**9, (first, time.time_ns())
            cluster.stop(leader)                   # hand over to another member
            assert cluster.wait_for(lambda: cluster.leader(0.1) not in (None, leader), 10)
            second = _stamp(client)
        assert first < second and abs(second - time.time_ns()) < 5 * 10**9
    finally:
        cluster.close()


def test_a_log_stamped_by_the_old_monotonic_clock_is_warned_about(tmp_path, monkeypatch, caplog):
    import logging
    import aeronpy.cluster.node as node_module

    def old_clock(wall_ns=None, mono_ns=time.monotonic_ns):      # before 2026-11-27
        now = lambda: mono_ns()                                  # noqa: E731
        now.offset_ns = 0
        return now
    monkeypatch.setattr(node_module, "epoch_anchored_clock", old_clock)
    cluster = LocalCluster(str(tmp_path), service_factory=_TimeService, snapshot_log_bytes=0)
    cluster.start()
    try:
        assert cluster.leader() is not None
        with cluster.client() as client:
            assert _stamp(client) < 10**18                        # boot-relative
    finally:
        cluster.close()
    monkeypatch.setattr(node_module, "epoch_anchored_clock", epoch_anchored_clock)
    with caplog.at_level(logging.WARNING):
        cluster.start()
    try:
        assert any("is not epoch time" in r.getMessage() for r in caplog.records)
        assert cluster.leader() is not None
        with cluster.client() as client:
            assert abs(_stamp(client) - time.time_ns()) < 5 * 10**9
    finally:
        cluster.close()
