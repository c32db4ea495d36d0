"""``inproc_cluster()``: three real ``ClusterNode``s and a connected ``ClusterClient`` in the
calling thread, each node driven by ``do_work()`` (invoker mode) on loopback UDP.

For tests and benchmarks that want the whole real path (sockets, archive, compiled fast paths)
without processes or threads: ``pump()`` runs one duty cycle of every node, and nothing runs
between calls, so a test sees exactly what each cycle did.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, Tuple

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from aeronpy.client import ClusterClient
    from aeronpy.cluster.node import ClusterNode


def _services_for_node(services: Any) -> list:
    """One node's services from ``inproc_cluster(services=...)`` (see there)."""
    from aeronpy.service import ClusteredService
    if services is None:
        from aeronpy.testing.services import EchoService
        return [EchoService()]
    if callable(services):
        made = services()
        return list(made) if isinstance(made, (list, tuple)) else [made]
    if isinstance(services, ClusteredService) or isinstance(services, (str, bytes)) \
            or not hasattr(services, "__iter__"):
        raise TypeError(_not_a_factory("services", services))
    services = list(services)
    for i, factory in enumerate(services):
        if not callable(factory):
            raise TypeError(_not_a_factory(f"services[{i}]", factory))
    made = [factory() for factory in services]
    if not made:
        raise ValueError("inproc_cluster: services is empty")
    return made


def _not_a_factory(where: str, value: Any) -> str:
    """inproc_cluster builds each node's services afresh: an instance cannot be shared."""
    from aeronpy.service import ClusteredService
    if isinstance(value, ClusteredService):
        cls = type(value).__name__
        return (f"inproc_cluster: {where} is a {cls} instance, but each node needs its own: "
                f"pass the class {cls} (or a factory) instead")
    return (f"inproc_cluster: {where} is {type(value).__name__} {value!r:.80}: expected a "
            "factory (a ClusteredService subclass is one) or a list of factories")


@contextlib.contextmanager
def inproc_cluster(pump_with: Optional[Callable[[List[ClusterNode]], Callable[[], None]]] = None,
                   *, timeout_s: float = 10.0, services: Any = None,
                   ) -> Iterator[Tuple[List[ClusterNode], Callable[[], None], ClusterClient]]:
    """Yield ``(nodes, pump, client)``: 3 nodes with a leader and a connected client.
    ``pump()`` runs one duty cycle of every node, through ``pump_with(nodes)`` when given (to
    time the cycles). Everything, data dirs included, is removed afterwards (three members'
    preallocated segments are ~190 MB).

    ``services`` is what each node hosts (default: one ``EchoService``), built afresh for each
    node, since a service instance holds one member's state: either a factory called once per
    node that returns a service or a list of them (``services=OrderBook``,
    ``services=lambda: [Book(), Audit()]``), or a list of factories (a class is one), each
    called once per node (``services=[Book, Audit]``); service ids follow their order. An
    instance in their place is refused (``TypeError``): each node needs its own.

    Nothing runs the nodes between ``pump()`` calls: ``client.request()`` alone times out.
    Offer, then pump and poll::

        with inproc_cluster(services=CounterService) as (nodes, pump, client):
            client.offer(payload)
            while not client.poll_egress(on_reply):
                pump()
    """
    from aeronpy.client import ClusterClient
    from aeronpy.cluster.config import NodeConfig
    from aeronpy.cluster.node import ClusterNode
    from aeronpy.testing.process_cluster import free_udp_ports
    ports = free_udp_ports(6)
    members = [{"id": i, "host": "127.0.0.1", "consensus_port": ports[2 * i],
                "ingress_port": ports[2 * i + 1]} for i in range(3)]
    base = tempfile.mkdtemp(prefix="aeronpy-inproc-")
    nodes = []
    client = None
    try:
        for i in range(3):
            nodes.append(ClusterNode(NodeConfig(cluster_id=7, members=members, member_id=i,
                                                data_dir=f"{base}/n{i}", log_level="WARNING"),
                                     _services_for_node(services)))

        def each_once() -> None:
            for node in nodes:
                node.do_work()
        pump = pump_with(nodes) if pump_with is not None else each_once
        deadline = time.monotonic() + timeout_s
        while not any(n.role.name == "LEADER" for n in nodes) and time.monotonic() < deadline:
            pump()
            time.sleep(0.001)
        client = ClusterClient.open(",".join(f"127.0.0.1:{m['ingress_port']}" for m in members))
        while not client.is_connected and time.monotonic() < deadline:
            pump()
            client.do_work()
        if not client.is_connected:
            raise TimeoutError(f"in-process cluster: no connected client within {timeout_s} s")
        yield nodes, pump, client
    finally:
        if client is not None:
            client.close()
        for node in nodes:
            node.close()
        shutil.rmtree(base, ignore_errors=True)


def close_leader_handing_over(nodes: List["ClusterNode"],
                              close: Optional[Callable[["ClusterNode"], Any]] = None) -> Tuple["ClusterNode", Any]:
    """Close the leader of invoker-mode ``nodes`` while a thread runs the others' duty cycles,
    so one of them can take the hand-over (``inproc_cluster``'s ``pump`` runs in the caller's
    thread, which ``close()`` blocks). ``close(leader)`` replaces ``leader.close()``; returns
    (the leader, what the close returned)."""
    import threading
    from aeronpy.service import Role
    leader = next(n for n in nodes if n.role == Role.LEADER)
    stop = threading.Event()

    def others() -> None:
        while not stop.is_set():
            for n in nodes:
                if n is not leader and not n.closed:
                    n.do_work()
    thread = threading.Thread(target=others, daemon=True)
    thread.start()
    try:
        return leader, (close or (lambda n: n.close()))(leader)
    finally:
        stop.set()
        thread.join(timeout=10)
