"""``max_sessions`` on real nodes: the config key reaches the leader, which refuses a connect
beyond it with an error the client raises; a closed session frees its place."""
import pytest

import aeronpy

from .cluster_helpers import LocalCluster, add


def test_a_node_refuses_sessions_beyond_max_sessions(tmp_path):
    cluster = LocalCluster(str(tmp_path), max_sessions=1).start()
    try:
        assert cluster.leader() is not None
        first = cluster.client()
        try:
            assert add(first) == 1
            with pytest.raises(aeronpy.NotConnectedError, match="too many sessions.*at most 1"):
                cluster.client(timeout_s=5)
        finally:
            first.close()
        assert cluster.wait_for(lambda: all(len(n.module.sessions) == 0
                                            for n in cluster.nodes.values()), 10)
        with cluster.client() as second:
            assert add(second) == 2
    finally:
        cluster.close()
