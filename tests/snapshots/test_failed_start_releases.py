"""A node whose start fails (here a service's on_start raises) gives back what it opened: the
data dir's lock, its sockets and files. Before, an embedding application kept them until
garbage collection, so a second attempt in the same process was refused ("in use")."""
import gc

import pytest

import aeronpy
from aeronpy.cluster.container import ServiceError
from aeronpy.cluster.node import ClusterNode

from .cluster_helpers import LocalCluster


class _FailsToStart(aeronpy.ClusteredService):
    def on_start(self, cluster, snapshot):
        raise RuntimeError("cannot load reference data")


def test_a_failed_start_releases_the_lock_and_the_ports(tmp_path):
    cluster = LocalCluster(str(tmp_path), count=1, snapshot_log_bytes=0)
    config = cluster.config(0)
    held = []
    gc.disable()                      # nothing may be given back by the collector instead
    try:
        with pytest.raises(ServiceError, match="cannot load reference data"):
            held.append(ClusterNode(config, [_FailsToStart()]))
        node = ClusterNode(config, [aeronpy.ClusteredService()])   # same dir, same ports
        node.close()
    finally:
        gc.enable()
