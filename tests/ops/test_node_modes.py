"""An embedded node runs in one of two modes: its own duty-cycle thread (start()) or the
application's (do_work() in invoker mode). Mixing them drove the core from two threads, and
the node failed after ~1,700 requests with an internal RuntimeError (an operator review); a
closed node's start() returned as if it ran."""
from __future__ import annotations

import pytest

from aeronpy.cluster.node import ClusterNode
from tests.ops.opsfiles import one_member_node


def _node(tmp_path) -> ClusterNode:
    return one_member_node(tmp_path)


def test_do_work_beside_the_nodes_own_thread_is_refused(tmp_path):
    node = _node(tmp_path).start()
    try:
        with pytest.raises(RuntimeError, match="runs its own duty-cycle thread"):
            node.do_work()
        assert node.failure is None and node._thread.is_alive()
    finally:
        node.close()


def test_control_invoker_mode_runs_do_work(tmp_path):
    import time

    from aeronpy import Role
    node = _node(tmp_path)
    try:
        deadline = time.monotonic() + 10
        while node.role is not Role.LEADER and time.monotonic() < deadline:
            node.do_work()
            time.sleep(0.001)
        assert node.role is Role.LEADER          # the application's thread drove it there
    finally:
        node.close()


def test_a_closed_node_cannot_be_started(tmp_path):
    node = _node(tmp_path)
    node.close()
    with pytest.raises(RuntimeError, match="closed"):
        node.start()
