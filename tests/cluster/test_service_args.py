"""What a node is given to host is checked where services enter, with a TypeError naming what
was passed and what is expected. Before (a fresh user's report), ``ClusterNode(cfg,
services=[Positions])`` (the class: ``SimCluster(service=Positions)`` takes one) or
``[object()]`` built a node that failed at start with a ServiceError from ``on_start`` and a
logged traceback, and ``services=Positions()`` failed deep in the service container with
"'Positions' object is not iterable". DESIGN.md 1.1 says to subclass ClusteredService, so an
object that is not an instance of a subclass is refused too."""
from __future__ import annotations

import logging
import os

import pytest

import aeronpy
from aeronpy.testing import SimCluster
from aeronpy.testing.inproc import _services_for_node
from aeronpy.testing.process_cluster import ProcessCluster, free_udp_ports
from aeronpy.testing.services import CounterService, EchoService


def _config(tmp_path) -> aeronpy.NodeConfig:
    consensus, ingress = free_udp_ports(2)
    return aeronpy.NodeConfig.from_dict({
        "cluster_id": 3, "data_dir": str(tmp_path / "node"), "log_level": "WARNING",
        "members": [{"id": 0, "host": "127.0.0.1", "consensus_port": consensus,
                     "ingress_port": ingress}]}, member_id=0)


class _Duck:
    """Every callback, but not a ClusteredService subclass."""

    def on_start(self, cluster, snapshot): ...
    def on_session_open(self, session, timestamp_ns): ...
    def on_session_close(self, session, timestamp_ns, reason): ...
    def on_session_message(self, session, timestamp_ns, message): ...
    def on_timer_event(self, correlation_id, timestamp_ns): ...
    def on_take_snapshot(self, writer): ...
    def on_role_change(self, role): ...
    def on_terminate(self, cluster): ...


@pytest.mark.parametrize("services, error, words", [
    ([EchoService], TypeError,
     ["services[0] is the class aeronpy.testing.services.EchoService, not an instance",
      "EchoService()"]),
    ([EchoService(), CounterService], TypeError, ["services[1] is the class", "CounterService()"]),
    ([object()], TypeError, ["services[0] is object", "subclass of aeronpy.ClusteredService"]),
    ([_Duck()], TypeError, ["services[0] is _Duck", "subclass of aeronpy.ClusteredService"]),
    ([None], TypeError, ["services[0] is NoneType"]),
    (EchoService(), TypeError, ["got one EchoService instance, expected a list",
                                "services=[EchoService()]"]),
    (EchoService, TypeError, ["got the class aeronpy.testing.services.EchoService",
                              "services=[EchoService()]"]),
    ("mypkg.svc:MyService", TypeError, ["got str 'mypkg.svc:MyService'", "list of instances"]),
    (7, TypeError, ["got int 7"]),
    ([], ValueError, ["at least one ClusteredService"]),
])
def test_a_node_refuses_what_is_not_a_list_of_services_at_construction(
        tmp_path, caplog, services, error, words):
    with caplog.at_level(logging.INFO):
        with pytest.raises(error) as raised:
            aeronpy.ClusterNode(_config(tmp_path), services=services)
    for word in words:
        assert word in str(raised.value)
    assert not os.path.exists(tmp_path / "node")               # nothing taken, nothing started
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_tuple_or_any_iterable_of_instances_is_hosted(tmp_path):
    services = iter((EchoService(), CounterService()))
    with aeronpy.ClusterNode(_config(tmp_path), services=services) as node:
        assert [type(s) for s in node.module.container.services] == [EchoService, CounterService]


def test_the_simulator_refuses_a_factory_that_makes_classes():
    with pytest.raises(TypeError, match=r"services\[0\] is the class .*EchoService, not an inst"):
        SimCluster(members=1, seed=1, service=lambda: [EchoService])


def test_inproc_cluster_wants_factories_not_instances(tmp_path):
    with pytest.raises(TypeError, match="services is a EchoService instance, but each node needs "
                                        "its own: pass the class EchoService"):
        _services_for_node(EchoService())
    with pytest.raises(TypeError, match=r"services\[1\] is a CounterService instance"):
        _services_for_node([EchoService, CounterService()])
    with pytest.raises(TypeError, match=r"services\[0\] is int 3: expected a factory"):
        _services_for_node([3])
    with pytest.raises(TypeError, match=r"services\[0\] is the class"):   # the factory's output
        aeronpy.ClusterNode(_config(tmp_path), _services_for_node(lambda: [EchoService]))


@pytest.mark.parametrize("services, error, words", [
    ("upper:Upper", TypeError, ["got str 'upper:Upper'", "services=['mypkg.svc:MyService']"]),
    ([EchoService], TypeError, ["services[0] is the class EchoService",
                                "'aeronpy.testing.services:EchoService'"]),
    ([EchoService()], TypeError, ["services[0] is EchoService", "'module:ClassName' string"]),
    (["upper"], ValueError, ["services[0] is 'upper': expected 'module:ClassName'"]),
    ([], ValueError, ["at least one service"]),
])
def test_a_process_cluster_refuses_what_is_not_a_list_of_service_names(tmp_path, services, error,
                                                                         words):
    base = tmp_path / "cluster"
    with pytest.raises(error) as raised:
        ProcessCluster(members=1, services=services, base_dir=str(base))
    for word in words:
        assert word in str(raised.value)
    assert not base.exists()                                    # refused before writing anything


def test_sim_cluster_refuses_a_service_instance():
    """SimCluster takes a factory (each member builds its own state); an instance failed
    later with "'X' object is not callable"."""
    from aeronpy.testing import SimCluster
    from aeronpy.testing.services import EchoService
    with pytest.raises(TypeError, match="pass service=EchoService"):
        SimCluster(members=3, seed=1, service=EchoService())
    SimCluster(members=3, seed=1, service=EchoService)     # the factory is fine


def test_the_simulated_client_checks_service_id_as_the_real_one_does():
    """The simulator's client sent service_id=-1 or 1.5 on (the real client refuses both)."""
    sim = SimCluster(members=3, seed=2, service=EchoService)
    sim.run_until(lambda: sim.leader() is not None, 2_000)
    client = sim.client()
    for bad, error in ((-1, ValueError), (2**31, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="service_id"):
            client.offer(b"x", service_id=bad)
        with pytest.raises(error, match="service_id"):
            client.request(b"x", service_id=bad)
    assert client.request(b"ok") == b"ok"              # the session goes on
