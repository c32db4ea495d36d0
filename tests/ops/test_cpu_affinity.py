"""``cpu_affinity``: the node's duty-cycle thread (and only it) ends up on the configured CPUs.

Checked from outside the thread, the way an operator would (``/proc/<pid>/task/<tid>/status``
``Cpus_allowed_list``, and ``os.sched_getaffinity(tid)``), for a threaded node in this process,
a node in invoker mode, a node whose pinning fails, and ``python -m aeronpy node
--cpu-affinity`` processes. Every pinned case has an unpinned control next to it.
"""
import os
import signal
import threading

import pytest

import aeronpy.cli as cli
from aeronpy.cluster.config import NodeConfig
from aeronpy.cluster.counters import ConsensusModuleState, SlotId
from aeronpy.errors import ConfigError
from aeronpy.service import Role
from aeronpy.testing.process_cluster import ProcessCluster, free_udp_ports
from aeronpy.testing.services import EchoService
from aeronpy.testing.waits import wait_until as _wait_until

if not hasattr(os, "sched_setaffinity"):
    pytest.skip("os.sched_setaffinity is Linux-only", allow_module_level=True)
ALLOWED = frozenset(os.sched_getaffinity(0))
if len(ALLOWED) < 2:
    pytest.skip("one CPU: a pinned thread cannot be told from an unpinned one",
                allow_module_level=True)
PIN = min(ALLOWED)          # CPU 0 on an ordinary machine


def cpus_of_task(pid: int, tid: int) -> frozenset:
    """A thread's allowed CPUs as /proc shows them (``0-2,5`` ranges expanded)."""
    with open(f"/proc/{pid}/task/{tid}/status") as f:
        line = next(l for l in f if l.startswith("Cpus_allowed_list:"))
    cpus = set()
    for part in line.split(":", 1)[1].strip().split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(cpus)


def node_config(tmp_path, name="n0", **changes) -> NodeConfig:
    ports = free_udp_ports(2)
    return NodeConfig(cluster_id=1, member_id=0, data_dir=str(tmp_path / name), log_level="WARNING",
                      members=[{"id": 0, "host": "127.0.0.1", "consensus_port": ports[0],
                                "ingress_port": ports[1]}], **changes)


def wait_until(predicate, timeout_s: float = 10.0) -> bool:
    return _wait_until(predicate, timeout_s)


def duty_cycle_tid(node) -> int:
    thread = node._thread
    assert thread is not None and thread.name == f"aeronpy-node-{node.member_id}"
    return thread.native_id


def test_threaded_node_pins_its_duty_cycle_thread_and_nothing_else(tmp_path):
    from aeronpy.cluster.node import ClusterNode
    pinned = ClusterNode(node_config(tmp_path, "pinned", cpu_affinity=[PIN]), [EchoService()])
    control = ClusterNode(node_config(tmp_path, "control"), [EchoService()])
    try:
        pinned.start()
        control.start()
        # a single-member cluster elects itself: both duty cycles are past their first lines
        assert wait_until(lambda: pinned.role == Role.LEADER and control.role == Role.LEADER)
        tid, control_tid = duty_cycle_tid(pinned), duty_cycle_tid(control)
        assert cpus_of_task(os.getpid(), tid) == {PIN}
        assert os.sched_getaffinity(tid) == {PIN}
        assert cpus_of_task(os.getpid(), control_tid) == ALLOWED        # control: unpinned
        assert os.sched_getaffinity(0) == ALLOWED                       # not the whole process
        assert cpus_of_task(os.getpid(), threading.get_native_id()) == ALLOWED
        assert pinned.failure is None and pinned._thread.is_alive()
    finally:
        pinned.close()
        control.close()


def test_invoker_mode_leaves_the_callers_thread_alone(tmp_path):
    """do_work() on the application's thread: pinning that thread is the application's job."""
    from aeronpy.cluster.node import ClusterNode
    node = ClusterNode(node_config(tmp_path, cpu_affinity=[PIN]), [EchoService()])
    try:
        for _ in range(50):
            node.do_work()
        assert os.sched_getaffinity(0) == ALLOWED
        assert cpus_of_task(os.getpid(), threading.get_native_id()) == ALLOWED
    finally:
        node.close()


def test_a_node_that_cannot_pin_fails_instead_of_running_unpinned(tmp_path):
    from aeronpy.cluster.node import ClusterNode
    cfg = node_config(tmp_path, cpu_affinity=[4096])       # passes validation, no such CPU here
    with pytest.raises(ConfigError, match="4096 not available"):
        ClusterNode(cfg, [EchoService()])                   # refused before taking anything
    node = ClusterNode(cfg, [EchoService()], check_startable=False).start()
    try:
        assert wait_until(lambda: not node._thread.is_alive(), 5.0)
        assert isinstance(node.failure, ConfigError) and node.failure.key == "cpu_affinity"
        assert "cannot pin the duty-cycle thread to CPUs [4096]" in str(node.failure)
        assert node.counters.values[int(SlotId.ERRORS)] == 1
        assert node.counters.values[int(SlotId.DUTY_CYCLES)] == 0   # no duty cycle ran
        state = node.counters.values[int(SlotId.CONSENSUS_MODULE_STATE)]
        assert state == ConsensusModuleState.FAILED
    finally:
        node.close()
    with open(os.path.join(cfg.data_dir, "errors.log"), "rb") as f:
        assert b"cannot pin the duty-cycle thread" in f.read()


# -- the command line ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, cpus", [("0", [0]), ("0,2", [0, 2]), (" 3 , 1 ", [3, 1])])
def test_parse_cpu_list(text, cpus):
    assert cli.parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["", "0,", "a", "0;1", "-1", "1.5", "0-3", "\u0661"])
def test_parse_cpu_list_refuses_malformed_values(text):
    with pytest.raises(ConfigError) as e:
        cli.parse_cpu_list(text)
    assert e.value.key == "cpu_affinity" and "comma-separated" in str(e.value)


@pytest.fixture
def config_path(tmp_path):
    ports = free_udp_ports(2)
    path = tmp_path / "cluster.toml"
    path.write_text(f'cluster_id = 7\ndata_dir = "{tmp_path}/data-{{member_id}}"\n'
                    f'cpu_affinity = [{PIN}]\n'
                    f'[[members]]\nid = 0\nhost = "127.0.0.1"\n'
                    f"consensus_port = {ports[0]}\ningress_port = {ports[1]}\n")
    return str(path)


def node_argv(config_path, *extra):
    return ["node", "--config", config_path, "--member-id", "0",
            "--service", "aeronpy.testing.services:EchoService", *extra]


@pytest.mark.parametrize("value, words", [
    ("0,x", ["--cpu-affinity '0,x'", "comma-separated"]),
    ("0,0", ["CPU 0 is listed twice"]),
    ("4096", ["4096 not available to this process"]),
])
def test_bad_cpu_affinity_flag_is_a_usage_error(config_path, capsys, value, words):
    code = cli.main(node_argv(config_path, "--cpu-affinity", value))
    out, err = capsys.readouterr()
    assert code == cli.EXIT_USAGE and out == "" and err.count("\n") == 1
    assert err.startswith("aeronpy node: configuration error: cpu_affinity: ")
    for word in words:
        assert word in err, (word, err)


@pytest.mark.parametrize("flag, expected", [(None, (PIN,)), (str(max(ALLOWED)), (max(ALLOWED),))])
def test_flag_overrides_the_file(config_path, capsys, monkeypatch, flag, expected):
    built = []

    class FakeNode:
        closed = True      # the command returns at once

        def __init__(self, config, services):
            built.append(config)

        def start(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(cli, "_cluster_node_class", lambda: FakeNode)
    monkeypatch.setattr(cli, "freeze_start_up_objects", lambda: None)
    monkeypatch.setattr(signal, "signal", lambda *_: None)     # keep pytest's own handlers
    argv = node_argv(config_path) + ([] if flag is None else ["--cpu-affinity", flag])
    assert cli.main(argv) == cli.EXIT_OK
    assert built[-1].cpu_affinity == expected


def test_node_processes_pin_only_their_duty_cycle_thread():
    """Two real ``python -m aeronpy node`` members sharing one file: member 0 gets
    ``--cpu-affinity``, member 1 (the control) does not. Exactly one thread of member 0 (the
    duty cycle) is on that CPU; every other thread, and every thread of member 1, keeps the
    full set."""
    pin = str(max(ALLOWED))     # a CPU other than the one the in-process tests use

    def with_flag(member, argv):
        return argv + ["--cpu-affinity", pin] if member == 0 else argv

    cluster = ProcessCluster(members=2, services=("aeronpy.testing.services:EchoService",),
                             wrap_command=with_flag)
    try:
        cluster.start()
        leader = cluster.leader(timeout_s=30.0)
        assert leader is not None, cluster.tail_log(0) + "\n" + cluster.tail_log(1)

        def task_cpus(member):
            pid = cluster.procs[member].pid
            return {int(tid): cpus_of_task(pid, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}

        pinned, control = task_cpus(0), task_cpus(1)
        main_thread = cluster.procs[0].pid
        assert sorted(cpus for cpus in pinned.values() if cpus != ALLOWED) == [{int(pin)}], pinned
        assert pinned[main_thread] == ALLOWED
        assert all(cpus == ALLOWED for cpus in control.values()), control
        assert len(pinned) >= 2 and len(control) >= 2
        with open(cluster.log_path(0)) as f:
            assert f"duty-cycle thread pinned to CPUs [{pin}]" in f.read()
    finally:
        cluster.close()
