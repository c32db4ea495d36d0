"""Prometheus text from the counters: parsed back, and served over HTTP on loopback."""
import urllib.error
import urllib.request

import pytest
from promtext import parse

from aeronpy.cluster.counters import COUNTER, CountersReader, CountersWriter, SlotId
from aeronpy.cluster.metrics import MetricsServer, prometheus_text
from tests.ops.opsfiles import one_member_node


def _writer(d, **kw):
    return CountersWriter(d, member_id=1, cluster_id=7, **kw)


def test_text_parses_back_to_the_counter_values(tmp_path):
    with _writer(tmp_path) as w, CountersReader(tmp_path) as r:
        w.values[SlotId.COMMIT_INDEX] = 77
        w.values[SlotId.FRAMES_IN] = 5
        w.values[SlotId.ROLE] = 2
        families = parse(prometheus_text(r))
        values = r.read()
        for name, kind in zip(r.names, r.kinds):
            metric = f"aeronpy_{name}" + ("_total" if kind == COUNTER else "")
            family = families[metric]
            assert family["type"] == ("counter" if kind == COUNTER else "gauge")
            ((labels, value),) = family["samples"]
            assert labels == {"cluster_id": "7", "member_id": "1"}
            assert value == values[name]
        assert families["aeronpy_commit_index"]["samples"][0][1] == 77
        assert families["aeronpy_frames_in_total"]["samples"][0][1] == 5
        assert families["aeronpy_up"]["samples"][0][1] == 1
        assert len(families) == len(r.names) + 1
    with CountersReader(tmp_path) as r:
        assert parse(prometheus_text(r))["aeronpy_up"]["samples"][0][1] == 0   # closed


def test_help_text_is_escaped(tmp_path):
    with _writer(tmp_path, extra_slots=[("odd", 0, "back\\slash and\nnewline")]), \
            CountersReader(tmp_path) as r:
        text = prometheus_text(r)
        assert "back\\\\slash and\\nnewline" in text
        assert parse(text)["aeronpy_odd"]["help"] == "back\\slash and\nnewline"


def test_parser_rejects_a_malformed_exposition():
    with pytest.raises(ValueError):
        parse("aeronpy_x 1\n")                       # sample before its TYPE
    with pytest.raises(ValueError):
        parse("# TYPE aeronpy_x gauge\naeronpy_x{a=1} 1\n")


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_server_serves_metrics_on_loopback(tmp_path):
    with _writer(tmp_path) as w, MetricsServer(tmp_path, port=0) as server:
        assert server.host == "127.0.0.1" and server.port > 0
        w.values[SlotId.COMMIT_INDEX] = 5
        status, ctype, body = _get(server.url)
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        assert parse(body)["aeronpy_commit_index"]["samples"][0][1] == 5
        w.values[SlotId.COMMIT_INDEX] = 6   # every scrape reads afresh
        assert parse(_get(server.url)[2])["aeronpy_commit_index"]["samples"][0][1] == 6
        assert _get(f"http://127.0.0.1:{server.port}/")[0] == 404


def test_server_without_counters_answers_503(tmp_path):
    with MetricsServer(tmp_path, port=0) as server:
        status, _, body = _get(server.url)
    assert status == 503 and "no counters.dat" in body


def _free_tcp_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_embedded_node_serves_its_metrics_until_closed(tmp_path):
    # Found by a docs audit: only `aeronpy node` started the server, so an embedded node with
    # metrics_http_port set checked that the port was free and then served nothing.
    port = _free_tcp_port()
    node = one_member_node(tmp_path, cluster_id=5, metrics_http_port=port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            families = parse(r.read().decode())
        assert families["aeronpy_up"]["samples"] == [({"cluster_id": "5", "member_id": "0"}, 1)]
        assert "aeronpy_commit_index" in families
    finally:
        node.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_a_metrics_port_taken_after_the_check_stops_the_start_and_frees_the_rest(tmp_path):
    import socket

    from aeronpy.errors import ConfigError
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as e:
            one_member_node(tmp_path, metrics_http_port=port, check_startable=False)
        assert e.value.key == "metrics_http_port" and str(port) in str(e.value)
    node = one_member_node(tmp_path)       # the data dir's lock and sockets were given back
    node.close()
