"""The streams' HEARTBEAT, STATUS and duplicate counts reach the counters file (operators see
the tail probes back off, and acknowledgements ride with replies), summed over a node's two
transports, as NAKs and retransmits are."""
from __future__ import annotations

from aeronpy import ClusterClient
from aeronpy.cluster.counters import CountersReader
from aeronpy.cluster.node_counters import STREAM_COUNTERS
from aeronpy.service import Role
from aeronpy.testing.waits import wait_until
from tests.ops.opsfiles import one_member_node


def _published(node) -> dict:
    return dict(CountersReader(node.config.data_dir).read())


def test_stream_counters_are_published_as_the_transports_count_them(tmp_path):
    node = one_member_node(tmp_path).start()
    try:
        assert wait_until(lambda: node.role == Role.LEADER, 10.0)
        client = ClusterClient.connect(node.config.ingress_endpoints, timeout_s=10)
        try:
            for i in range(3):
                assert client.request(b"%d" % i, timeout_s=5) == b"%d" % i
        finally:
            client.close()
        transports = (node.consensus, node.ingress)

        def matches():
            got = _published(node)
            return all(got[slot] == sum(getattr(t.counters, attr) for t in transports)
                       for slot, attr, _ in STREAM_COUNTERS)
        node.ingress.counters.duplicates += 2      # as if two resends had crossed originals
        assert wait_until(matches, 5.0)
        got = _published(node)
        assert got["stream_status_sent"] > 0       # the replies carried acknowledgements
        assert got["stream_duplicates"] >= 2
    finally:
        node.close()
