"""Prometheus metrics from a node's counters file, as text and over an optional HTTP endpoint.

Built on `CountersReader`, so metrics come from outside the node's duty cycle: a scrape costs
the node nothing, and works the same from `aeronpy tool metrics` or a sidecar process.
Names are ``aeronpy_<slot>`` (``_total`` appended for counters), labelled with
``cluster_id`` and ``member_id``; ``aeronpy_up`` is 1 while the node is running.
"""
from __future__ import annotations

import http.server
import logging
import os
import threading
from typing import Optional

from aeronpy.cluster.counters import COUNTER, CountersReader, CountersUnavailableError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_log = logging.getLogger("aeronpy.metrics")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(reader: CountersReader, prefix: str = "aeronpy") -> str:
    """The counters in the Prometheus text exposition format (version 0.0.4)."""
    header = reader.header
    status = reader.status()
    labels = (f'{{cluster_id="{_escape_label(str(header.cluster_id))}",'
              f'member_id="{_escape_label(str(header.member_id))}"}}')
    lines = [f"# HELP {prefix}_up 1 while the node behind the counters file is running",
             f"# TYPE {prefix}_up gauge",
             f"{prefix}_up{labels} {1 if status.running else 0}"]
    values = reader.read()
    for name, kind, help_text in zip(reader.names, reader.kinds, reader.helps):
        metric = f"{prefix}_{name}" + ("_total" if kind == COUNTER else "")
        lines.append(f"# HELP {metric} {_escape_help(help_text)}")
        lines.append(f"# TYPE {metric} {'counter' if kind == COUNTER else 'gauge'}")
        lines.append(f"{metric}{labels} {values[name]}")
    return "\n".join(lines) + "\n"


def metrics_for_data_dir(data_dir: "str | os.PathLike") -> str:
    """Open the counters afresh (a restarted node replaces the file) and render them."""
    with CountersReader(data_dir) as reader:
        return prometheus_text(reader)


class MetricsServer:
    """Serves ``GET /metrics`` on 127.0.0.1 from a data dir's counters; off unless started.

    Loopback only on purpose: the figures are not secret, but an operator decides how they
    leave the machine (a local Prometheus agent or a reverse proxy).
    """

    def __init__(self, data_dir: "str | os.PathLike", port: int = 0, host: str = "127.0.0.1") -> None:
        data_dir = os.fspath(data_dir)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?", 1)[0] != "/metrics":
                    self._send(404, "only /metrics is served here\n")
                    return
                try:
                    body = metrics_for_data_dir(data_dir)
                except CountersUnavailableError as exc:
                    self._send(503, f"{exc}\n")
                    return
                self._send(200, body)

            def _send(self, code: int, text: str) -> None:
                raw = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, fmt: str, *args: object) -> None:
                _log.debug("metrics http: " + fmt, *args)

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def start(self) -> "MetricsServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="aeronpy-metrics",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until `close` (from a signal handler or another thread)."""
        self._server.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> "MetricsServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
