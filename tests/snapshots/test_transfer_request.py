"""The leadership transfer admin request on in-process nodes: the tool re-sends a request it has
no answer to (same correlation id) after 0.5 s. Re-sent after the transfer, it reaches a member
that no longer leads: it must be answered again as before, not redirected to the successor,
which would hand the leadership on a second time."""
import struct
import time

from aeronpy.client import UdpClientTransport
from aeronpy.cluster.node_admin import ADMIN_TRANSFER_LEADERSHIP
from aeronpy.cluster.node_snapshots import ADMIN_ERROR, ADMIN_NOT_LEADER, ADMIN_OK

from .cluster_helpers import LocalCluster
from .test_admin_requests import _ask as ask

ANY = struct.pack("<q", -1)


def _ask(transport, endpoint: str, correlation_id: int, payload: bytes):
    return ask(transport, endpoint, correlation_id, request_type=ADMIN_TRANSFER_LEADERSHIP,
               payload=payload)


def test_a_resent_transfer_request_is_answered_again_without_a_second_transfer(tmp_path):
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0).start()
    transport = None
    try:
        old = cluster.leader()
        assert old is not None
        endpoints = cluster.endpoints.split(",")
        transport = UdpClientTransport(endpoints)
        first = _ask(transport, endpoints[old], 2001, ANY)
        assert first.code == ADMIN_OK
        successor = struct.unpack("<q", bytes(first.payload))[0]
        assert successor != old
        assert cluster.wait_for(lambda: cluster.leader() == successor, 10)
        term = cluster.nodes[successor].term
        again = _ask(transport, endpoints[old], 2001, ANY)   # the tool's re-send: same id
        assert (again.code, bytes(again.payload)) == (ADMIN_OK, bytes(first.payload))
        time.sleep(0.5)
        assert cluster.leader() == successor and cluster.nodes[successor].term == term
        # control: a new request to the old leader is redirected, and one to the successor
        # naming itself is refused
        redirect = _ask(transport, endpoints[old], 2002, ANY)
        assert redirect.code == ADMIN_NOT_LEADER
        refused = _ask(transport, endpoints[successor], 2003, struct.pack("<q", successor))
        assert refused.code == ADMIN_ERROR and b"leads already" in bytes(refused.payload)
        bad = _ask(transport, endpoints[successor], 2004, b"\x01")
        assert bad.code == ADMIN_ERROR and b"bad transfer request" in bytes(bad.payload)
    finally:
        if transport is not None:
            transport.close()
        cluster.close()
