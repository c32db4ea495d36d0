"""Problems a new user hit in a first afternoon with the wheel: error messages that sent them
the wrong way. Each test states what the user expected (each failed before its fix)."""
import logging

import pytest

import aeronpy
from aeronpy.testing.process_cluster import free_udp_ports


class Book(aeronpy.ClusteredService):
    def on_session_message(self, session, timestamp_ns, message):
        session.offer(b"ok")


class BookFixed(Book):            # the same service, fixed and renamed: the usual bug-fix flow
    pass


def test_node_key_after_members_table_says_where_it_belongs(tmp_path):
    """A top-level key written after a [[members]] table (as "add segment_bytes = ... to the
    file" invites) belongs to that table in TOML: was 'unknown member key', no more."""
    path = tmp_path / "cluster.toml"
    path.write_text('cluster_id = 7\n[[members]]\nid = 0\nhost = "127.0.0.1"\n'
                    'consensus_port = 41900\ningress_port = 41901\nsegment_bytes = 1048576\n')
    with pytest.raises(aeronpy.ConfigError) as caught:
        aeronpy.NodeConfig.from_toml(str(path), member_id=0)
    message = str(caught.value)
    assert "segment_bytes" in message                                  # holds today
    assert "[[members]]" in message or "above" in message, message     # where to move it


@pytest.mark.parametrize("endpoints", ["127.0.0.1:41901;127.0.0.1:41911",
                                       "127.0.0.1:41901 127.0.0.1:41911"])
def test_wrong_endpoint_separator_names_the_comma(endpoints):
    """Was refused with advice about IPv6 brackets."""
    with pytest.raises(ValueError) as caught:
        aeronpy.ClusterClient.connect(endpoints, timeout_s=0.5)
    assert "comma" in str(caught.value), str(caught.value)


def _run_once(tmp_path, service, ports):
    config = aeronpy.NodeConfig.from_dict({
        "cluster_id": 7, "data_dir": str(tmp_path / "node"), "segment_bytes": 1 << 20,
        "members": [{"id": 0, "host": "127.0.0.1", "consensus_port": ports[0],
                     "ingress_port": ports[1]}]}, member_id=0)
    with aeronpy.ClusterNode(config, services=[service]) as node:
        node.start()
        with aeronpy.ClusterClient.connect(config.ingress_endpoints, timeout_s=10) as client:
            assert client.request(b"x", timeout_s=5) == b"ok"


def test_renamed_service_error_points_to_service_name(tmp_path, caplog):
    """The fixed service under a new class name: the message said to start the member on an
    empty data dir (which throws the state away), never the service_name attribute."""
    ports = free_udp_ports(2)
    _run_once(tmp_path, Book(), ports)
    with caplog.at_level(logging.ERROR):
        _run_once(tmp_path, BookFixed(), ports)
    mismatches = [r.getMessage() for r in caplog.records if "hosts services" in r.getMessage()]
    assert mismatches, "no service-list mismatch reported at all"      # holds today
    assert all("service_name" in m for m in mismatches), mismatches[0]
