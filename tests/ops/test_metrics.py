"""Prometheus text from the counters: parsed back, and served over HTTP on loopback."""
import urllib.error
import urllib.request

import pytest
from promtext import parse

from aeronpy.cluster.counters import COUNTER, CountersReader, CountersWriter, SlotId
from aeronpy.cluster.metrics import MetricsServer, prometheus_text


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
