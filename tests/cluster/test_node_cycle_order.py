"""What a duty cycle does first: the two orderings that take work off a request's path.

- The first cycle after a park polls only the sockets ``select`` found readable (an empty
  poll is a syscall); a datagram that reaches the other socket meanwhile is polled by the
  next cycle, never lost.
- Replies leave as soon as the entries that produced them are applied, before the rest of
  the cycle (``core.advance``, snapshots, timers) runs.

On the 2-core VM these two (with ``_flush_acks`` skipping an empty sort) moved the open-loop
p50 at 10k/s from 239-293 to 208-232 us over 6 alternating pairs (bench/results/perf.md).
"""
import socket

from aeronpy import ClusterClient
from aeronpy.cluster.config import NodeConfig
from aeronpy.cluster.node import ClusterNode
from aeronpy.service import Role
from aeronpy.testing.process_cluster import free_udp_ports
from aeronpy.testing.services import EchoService
from aeronpy.testing.waits import wait_until


def _node(tmp_path, cls=ClusterNode) -> ClusterNode:
    ports = free_udp_ports(2)
    cfg = NodeConfig(cluster_id=1, member_id=0, data_dir=str(tmp_path / "n0"), log_level="WARNING",
                     members=[{"id": 0, "host": "127.0.0.1", "consensus_port": ports[0],
                               "ingress_port": ports[1]}])
    node = cls(cfg, [EchoService()])
    assert wait_until(lambda: node.do_work() >= 0 and node.role == Role.LEADER, 10.0)
    for _ in range(20):
        node.do_work()                        # settle: nothing left to do
    return node


def _count_polls(node) -> dict:
    calls = {"consensus": 0, "ingress": 0}
    for name in calls:
        transport = getattr(node, name)
        real = transport.poll

        def counted(handler, limit, _real=real, _name=name):
            calls[_name] += 1
            return _real(handler, limit)
        transport.poll = counted
    return calls


def _garbage_to(node, which: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\xff" * 40, getattr(node, which).local_address)


def test_the_first_cycle_after_a_park_polls_only_what_woke_it(tmp_path):
    node = _node(tmp_path)
    try:
        calls = _count_polls(node)
        _garbage_to(node, "consensus")
        assert node._idle._park(1.0) is True
        assert node._woken_by == [node.consensus.socket.fileno()]
        node.do_work()
        assert calls == {"consensus": 1, "ingress": 0}
        node.do_work()                             # not after a park: both, as always
        assert calls == {"consensus": 2, "ingress": 1}
    finally:
        node.close()


def test_a_datagram_on_the_other_socket_is_polled_by_the_next_cycle(tmp_path):
    node = _node(tmp_path)
    try:
        def drops() -> int:
            return sum(t.counters.drops["malformed"] for t in (node.consensus, node.ingress))
        before = drops()
        _garbage_to(node, "consensus")
        assert node._idle._park(1.0) is True
        _garbage_to(node, "ingress")                # arrives after select looked
        assert wait_until(lambda: node.do_work() >= 0 and drops() >= before + 2, 5.0)
        assert drops() == before + 2                # both counted, the second a cycle later
    finally:
        node.close()


class _WrappedEgress(ClusterNode):
    """A node whose egress goes through a replaced ``_send_egress`` (as bench/latency_trace.py
    does): it takes the cycle-end drain, so its replies are not out at ``advance``."""

    def _send_egress(self, client_ref, message) -> bool:
        return ClusterNode._send_egress(self, client_ref, message)


def _reply_out_before_advance(tmp_path, cls) -> bool:
    node = _node(tmp_path, cls)
    client = None
    try:
        endpoint = f"127.0.0.1:{node.ingress.local_address[1]}"
        client = ClusterClient.open(endpoint)
        assert wait_until(lambda: node.do_work() >= 0 and client.do_work() >= 0
                          and client.is_connected, 10.0)
        seen = []
        real_advance = node.core.advance

        def advance(rd, durable=True):
            if rd.apply_hi > rd.apply_lo:
                seen.append(len(node.module.egress))     # replies still queued at advance
            return real_advance(rd, durable)
        node.core.advance = advance
        got = []
        client.offer(b"ping")
        assert wait_until(lambda: node.do_work() >= 0
                          and client.poll_egress(lambda c, p: got.append(bytes(p))) >= 0 and got, 10.0)
        assert got == [b"ping"] and seen
        return seen[0] == 0
    finally:
        if client is not None:
            client.close()
        node.close()


def test_replies_are_sent_before_the_cycle_goes_on_to_advance(tmp_path):
    assert _reply_out_before_advance(tmp_path, ClusterNode)


def test_negative_control_a_cycle_end_drain_is_seen_as_late(tmp_path):
    assert not _reply_out_before_advance(tmp_path, _WrappedEgress)
