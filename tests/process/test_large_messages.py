"""Messages bigger than the transport's old fixed 4 MiB reassembly bound, on a cluster whose
``max_message_bytes`` allows them. Before, the node's ingress stream and the client's kept
that default whatever the config said, so a 5 MiB request on a 6 MiB cluster was dropped at
the transport (counted as oversize) and the request timed out."""
from __future__ import annotations

import pytest

import aeronpy

pytestmark = pytest.mark.process

MIB = 1024 * 1024


def test_a_message_over_4_mib_on_a_cluster_that_allows_it(make_cluster):
    pc = make_cluster(members=3, services=("aeronpy.testing.services:EchoService",),
                      config={"max_message_bytes": 6 * MIB})
    pc.start()
    assert pc.leader(timeout_s=20) is not None
    client = aeronpy.ClusterClient.connect(pc.ingress_endpoints, timeout_s=10,
                                           config=aeronpy.ClientConfig(max_message_bytes=6 * MIB))
    try:
        small = bytes(client.request(b"small", timeout_s=10))
        assert small == b"small"                               # the control
        big = bytes(range(256)) * (5 * MIB // 256)
        assert bytes(client.request(big, timeout_s=30)) == big
    finally:
        client.close()
