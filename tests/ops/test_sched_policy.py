"""``sched_policy``: the node's duty-cycle thread (and only it) runs with the configured policy.

Checked from outside the thread with ``os.sched_getscheduler(tid)``, for a threaded node in
this process, a node in invoker mode, a node whose policy change fails, and ``python -m aeronpy
node`` processes given the key in their file. Every batch case has a normal control next to it.
"""
import os
import threading

import pytest

from aeronpy.cluster.config import NodeConfig
from aeronpy.cluster.counters import SlotId
from aeronpy.errors import ConfigError
from aeronpy.service import Role
from aeronpy.testing.process_cluster import ProcessCluster
from aeronpy.testing.services import EchoService
from aeronpy.testing.waits import wait_until

from tests.ops.test_cpu_affinity import duty_cycle_tid, node_config

if not hasattr(os, "SCHED_BATCH"):
    pytest.skip("SCHED_BATCH is Linux-only", allow_module_level=True)


def raw(**changes) -> dict:
    base = {"cluster_id": 1, "data_dir": "/tmp/x",
            "members": [{"id": 0, "host": "127.0.0.1", "consensus_port": 1, "ingress_port": 2}]}
    base.update(changes)
    return base


def test_the_default_is_normal_and_batch_is_accepted_in_any_case():
    assert NodeConfig.from_dict(raw(), member_id=0).sched_policy == "normal"
    assert NodeConfig.from_dict(raw(sched_policy="Batch"), member_id=0).sched_policy == "batch"


@pytest.mark.parametrize("value, message", [
    ("bach", "must be one of 'normal', 'batch', got 'bach'; did you mean 'batch'?"),
    ("fifo", "must be one of 'normal', 'batch', got 'fifo'"),
    (1, "must be a string"),
])
def test_bad_values_name_the_key(value, message):
    with pytest.raises(ConfigError) as e:
        NodeConfig.from_dict(raw(sched_policy=value), member_id=0)
    assert e.value.key == "sched_policy" and message in str(e.value)


def test_a_threaded_node_gives_its_duty_cycle_thread_the_policy_and_nothing_else(tmp_path):
    from aeronpy.cluster.node import ClusterNode
    batch = ClusterNode(node_config(tmp_path, "batch", sched_policy="batch"), [EchoService()])
    control = ClusterNode(node_config(tmp_path, "control"), [EchoService()])
    try:
        batch.start()
        control.start()
        assert wait_until(lambda: batch.role == Role.LEADER and control.role == Role.LEADER, 10.0)
        assert os.sched_getscheduler(duty_cycle_tid(batch)) == os.SCHED_BATCH
        assert os.sched_getscheduler(duty_cycle_tid(control)) == os.SCHED_OTHER   # control
        assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER
        assert batch.failure is None and batch._thread.is_alive()
    finally:
        batch.close()
        control.close()


def test_invoker_mode_leaves_the_callers_thread_alone(tmp_path):
    from aeronpy.cluster.node import ClusterNode
    node = ClusterNode(node_config(tmp_path, sched_policy="batch"), [EchoService()])
    try:
        for _ in range(50):
            node.do_work()
        assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER
    finally:
        node.close()


def test_a_node_that_cannot_take_the_policy_fails_instead_of_running_without_it(tmp_path, monkeypatch):
    from aeronpy.cluster.node import ClusterNode

    def refused(*_args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refused)
    node = ClusterNode(node_config(tmp_path, sched_policy="batch"), [EchoService()]).start()
    try:
        assert wait_until(lambda: not node._thread.is_alive(), 5.0)
        assert isinstance(node.failure, ConfigError) and node.failure.key == "sched_policy"
        assert "cannot give the duty-cycle thread scheduling policy 'batch'" in str(node.failure)
        assert node.counters.values[int(SlotId.DUTY_CYCLES)] == 0   # no duty cycle ran
    finally:
        node.close()


def test_node_processes_take_the_policy_from_their_file():
    """Two ``python -m aeronpy node`` processes given ``sched_policy = "batch"``: in each,
    exactly one thread (the duty cycle) is SCHED_BATCH, the main thread is not."""
    cluster = ProcessCluster(members=2, services=("aeronpy.testing.services:EchoService",),
                             config={"sched_policy": "batch"})
    try:
        cluster.start()
        assert cluster.leader(timeout_s=30.0) is not None, cluster.tail_log(0)
        for member in range(2):
            pid = cluster.procs[member].pid
            policies = {int(t): os.sched_getscheduler(int(t)) for t in os.listdir(f"/proc/{pid}/task")}
            assert sorted(p for p in policies.values() if p != os.SCHED_OTHER) == [os.SCHED_BATCH], policies
            assert policies[pid] == os.SCHED_OTHER
    finally:
        cluster.close()
