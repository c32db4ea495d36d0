"""ClusterNode with a background group commit (file_sync data/full on real files).

Regression: while a Ready waited for its fsync, the next duty cycle stepped and ticked the
core, which refuses input before ``advance(rd)``; the node stopped with a RuntimeError on its
first persisted entry. A single-member cluster elects itself and commits through that path.
"""
import socket
import time

import pytest

from aeronpy.cluster.config import NodeConfig
from aeronpy.cluster.node import ClusterNode
from aeronpy.service import ClusteredService, Role


def _free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("file_sync", ["data", "full"])
def test_single_member_node_commits_through_background_sync(tmp_path, file_sync):
    raw = {"cluster_id": 1, "file_sync": file_sync, "data_dir": str(tmp_path / "m0"),
           "members": [{"id": 0, "host": "127.0.0.1", "consensus_port": _free_udp_port(),
                        "ingress_port": _free_udp_port()}]}
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
