"""An application's authenticator that raises refuses that client on a real node: the
client gets AuthenticationError, the node logs and counts it, and it goes on leading."""
import logging

import pytest

from aeronpy import ClusterClient
from aeronpy.cluster.module_config import Authenticator
from aeronpy.cluster.node import ClusterNode
from aeronpy.errors import AuthenticationError
from aeronpy.testing.services import CounterService

from .cluster_helpers import LocalCluster, add


class _TableAuthenticator(Authenticator):
    def authenticate(self, credentials, response_endpoint):
        return {b"good": True}[bytes(credentials)]         # KeyError for anything else


def test_a_raising_authenticator_refuses_the_client_and_the_node_goes_on(tmp_path, caplog):
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0, log_level="INFO")
    try:
        for i in (0, 1, 2):
            node = ClusterNode(cluster.config(i), [CounterService()],
                               authenticator=_TableAuthenticator())
            cluster.nodes[i] = node
            node.start()
        leader = cluster.leader()
        assert leader is not None
        with caplog.at_level(logging.ERROR):
            for _ in range(2):
                with pytest.raises(AuthenticationError):
                    ClusterClient.connect(cluster.endpoints, timeout_s=10, credentials=b"who?")
        node = cluster.nodes[leader]
        assert node.failure is None and not node.closed
        assert node.module.counters["authenticator_errors"] == 2
        said = [r for r in caplog.records if "authenticator raised KeyError" in r.getMessage()]
        assert len(said) == 1
        # "the first of each kind in full" (docs/programming.md): with its traceback, which
        # names the line of the application's authenticator that raised
        assert said[0].exc_info is not None and said[0].exc_info[0] is KeyError
        assert "return {b\"good\": True}[bytes(credentials)]" in logging.Formatter().formatException(said[0].exc_info)
        with ClusterClient.connect(cluster.endpoints, timeout_s=10, credentials=b"good") as client:
            assert add(client) == 1
    finally:
        cluster.close()
