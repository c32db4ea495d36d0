"""ClusterNode with a background group commit (file_sync data/full on real files).

Regression: while a Ready waited for its fsync, the next duty cycle stepped and ticked the
core, which refuses input before ``advance(rd)``; the node stopped with a RuntimeError on its
first persisted entry. A single-member cluster elects itself and commits through that path.
"""
import time

import pytest

from aeronpy.cluster.config import NodeConfig
from aeronpy.cluster.node import ClusterNode
from aeronpy.service import ClusteredService, Role
from aeronpy.testing.process_cluster import free_udp_ports


@pytest.mark.parametrize("file_sync", ["data", "full"])
def test_single_member_node_commits_through_background_sync(tmp_path, file_sync):
    ports = free_udp_ports(2)       # distinct: two port-0 binds in a row may return one port
    raw = {"cluster_id": 1, "file_sync": file_sync, "data_dir": str(tmp_path / "m0"),
           "members": [{"id": 0, "host": "127.0.0.1", "consensus_port": ports[0],
                        "ingress_port": ports[1]}]}
    node = ClusterNode(NodeConfig.from_dict(raw, member_id=0), [ClusteredService()])
    try:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and node.commit_index < 1:
            node.do_work()
        assert node.failure is None, node.failure
        assert node.role == Role.LEADER and node.commit_index >= 1
        assert node.archive.durable_index >= 1
    finally:
        node.close()


def _slow_sync_node(tmp_path, heartbeat_ms: int):
    ports = free_udp_ports(2)
    raw = {"cluster_id": 1, "file_sync": "data", "data_dir": str(tmp_path / "m0"),
           "heartbeat_interval_ms": heartbeat_ms,
           "members": [{"id": 0, "host": "127.0.0.1", "consensus_port": ports[0],
                        "ingress_port": ports[1]}]}
    return ClusterNode(NodeConfig.from_dict(raw, member_id=0), [ClusteredService()])


@pytest.mark.parametrize("sync_delay_s, slow", [(0.06, True), (0.0, False)])
def test_a_log_sync_slower_than_the_heartbeat_is_counted_and_said(tmp_path, monkeypatch, caplog,
                                                                  sync_delay_s, slow):
    """A slow disk held a leader's consensus module for each sync (no heartbeats, no commits)
    with nothing said (the slow-disk trial); now each such sync is counted (slow_log_syncs) and
    logged as a WARNING naming the disk. The control: fast syncs, nothing."""
    import os
    real = os.fdatasync

    def slow_fdatasync(fd):
        time.sleep(sync_delay_s)
        real(fd)
    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    node = _slow_sync_node(tmp_path, heartbeat_ms=20)
    try:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and node.commit_index < 1:
            node.do_work()
            time.sleep(0.001)
        assert node.failure is None and node.commit_index >= 1
        counted = node.core.counters.get("slow_log_syncs", 0)
        said = [r for r in caplog.records if "log sync" in r.getMessage()
                and "A slow disk" in r.getMessage()]
        if slow:
            assert counted >= 1 and said, (counted, [r.getMessage() for r in caplog.records])
        else:
            assert counted == 0 and not said
    finally:
        node.close()
