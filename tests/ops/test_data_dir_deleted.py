"""A data dir emptied under a running member (``rm -rf data/*``, a clean-up script gone
wrong): the member went on acknowledging entries written into files with no name, all lost
at its next start, and only the restart told. It now stops within about a second, saying
why; restarted, it catches up. Every wait is bounded."""
from __future__ import annotations

import os
import shutil

from aeronpy import ClusterClient, Role
from aeronpy.testing.waits import wait_until
from tests.ops.opsfiles import one_member_node



def test_a_member_whose_data_dir_is_emptied_stops_saying_why(tmp_path):
    node = one_member_node(tmp_path).start()
    try:
        assert wait_until(lambda: node.role == Role.LEADER, 10)
        with ClusterClient.connect(node.config.ingress_endpoints, timeout_s=5) as client:
            assert client.request(b"before", timeout_s=5) == b"before"
            assert not wait_until(lambda: node.failure is not None, 1.5)     # the control
            data_dir = node.config.data_dir
            for name in os.listdir(data_dir):
                path = os.path.join(data_dir, name)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
            assert wait_until(lambda: node.failure is not None, 5), "the member did not notice"
        message = str(node.failure)
        assert "deleted while the node ran" in message and ".seg" in message
    finally:
        node.close()
