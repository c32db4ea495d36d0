"""Admin snapshot requests on a loaded machine: the tool re-sends a request it has no answer to
after 0.5 s, and asks again while an election is running. A re-sent request must not snapshot
twice, and an election must not make the tool give up before its timeout."""
import os
import threading
import time

from aeronpy.client import UdpClientTransport
from aeronpy.cluster import admin
from aeronpy.cluster import protocol as P
from aeronpy.cluster.node_snapshots import ADMIN_OK, ADMIN_SNAPSHOT

from .cluster_helpers import LocalCluster, add, applied_everywhere


def _ask(transport, endpoint: str, correlation_id: int, timeout_s: float = 10.0,
         request_type: int = ADMIN_SNAPSHOT, payload: bytes = b""):
    """Send one AdminRequest (a snapshot by default) with this correlation id; its
    AdminResponse."""
    answers: list = []

    def on_message(msg) -> None:
        if type(msg) is P.AdminResponse and msg.correlation_id == correlation_id:
            answers.append(msg)

    transport.send(endpoint, P.AdminRequest(correlation_id, request_type, payload))
    deadline = time.monotonic() + timeout_s
    while not answers and time.monotonic() < deadline:
        if transport.poll(on_message) == 0:
            time.sleep(0.001)
    assert answers, f"no answer to admin request {correlation_id} within {timeout_s} s"
    return answers[0]


def _taken_everywhere(cluster) -> set:
    return {n.snapshots.snapshotter.stats.taken for n in cluster.nodes.values()}


def test_resent_snapshot_request_is_answered_again_without_a_second_snapshot(tmp_path):
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0).start()
    transport = None
    try:
        leader = cluster.leader()
        assert leader is not None
        with cluster.client() as client:
            for _ in range(10):
                add(client)
        transport = UdpClientTransport(cluster.endpoints.split(","))
        endpoint = cluster.endpoints.split(",")[leader]
        first = _ask(transport, endpoint, 1001)
        again = _ask(transport, endpoint, 1001)            # the tool's re-send: same id
        assert first.code == again.code == ADMIN_OK
        assert bytes(again.payload) == bytes(first.payload)   # the same index, answered again
        assert cluster.wait_for(lambda: _taken_everywhere(cluster) == {1}, 10)
        with cluster.client() as client:      # an entry after it, applied everywhere
            add(client)
        last = cluster.nodes[leader].commit_index
        assert cluster.wait_for(lambda: applied_everywhere(cluster, last), 10)
        # a second snapshot entry would sit before that entry: it would show here (taken or
        # in flight)
        assert _taken_everywhere(cluster) == {1}
        assert not any(n.snapshots.snapshotter.in_progress for n in cluster.nodes.values())
        # control: a new request (another correlation id) is a second snapshot, seen as such
        other = _ask(transport, endpoint, 1002)
        assert other.code == ADMIN_OK and bytes(other.payload) != bytes(first.payload)
        assert cluster.wait_for(lambda: _taken_everywhere(cluster) == {2}, 10)
    finally:
        if transport is not None:
            transport.close()
        cluster.close()


def test_admin_snapshot_waits_out_an_election(tmp_path):
    # one member of three: no quorum, so it answers "not leader, leader unknown" until a second
    # member starts and the two elect a leader
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0).start(0)
    starter = threading.Timer(1.5, cluster.start, args=(1,))
    try:
        assert cluster.leader(timeout_s=0.5) is None
        starter.start()
        result = admin.snapshot(cluster.data_dir(0), timeout_s=30.0)
        assert result["recorded"], result
        assert os.path.exists(os.path.join(cluster.data_dir(0), result["snapshot"]["name"]))
    finally:
        starter.cancel()
        starter.join()
        cluster.close()
