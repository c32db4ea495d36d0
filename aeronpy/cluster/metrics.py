"""Prometheus metrics from a node's counters file, as text and over an optional HTTP endpoint.

Built on `CountersReader`, so metrics come from outside the node's duty cycle: a scrape costs
the node nothing, and works the same from `aeronpy tool metrics` or a sidecar process.
Names are ``aeronpy_<slot>`` (``_total`` appended for counters), labelled with
``cluster_id`` and ``member_id``; ``aeronpy_up`` is 1 while the node is running.
"""
from __future__ import annotations

import http.client
import http.server
import logging
import os
import socket
import threading
import time
from typing import Optional

from aeronpy.cluster.counters import COUNTER, CountersReader, CountersUnavailableError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The server runs inside the node process: what one local client can make it hold is bounded.
CONNECTION_TIMEOUT_S = 5.0      # a connection is closed this long after it was accepted
MAX_CONNECTIONS = 16            # served at once (a thread each); more are closed at once
REQUEST_HEAD_MAX_BYTES = 8192   # request line and headers together (a scrape's take ~200)
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


class _HeadTooLarge(http.client.LineTooLong):
    """The request line and headers ran past REQUEST_HEAD_MAX_BYTES (a LineTooLong, so the
    header parser answers it with 431)."""

    def __init__(self, limit: int):
        http.client.HTTPException.__init__(self, f"request head over {limit} bytes")


class _BoundedHead:
    """The handler's ``rfile``: ``readline`` returns at most ``limit`` bytes over the whole
    request head, then raises `_HeadTooLarge` (the stdlib allows 64 KiB a line, 100 lines)."""

    def __init__(self, raw, limit: int):
        self._raw, self._limit, self._left = raw, limit, limit

    def readline(self, size: int = -1) -> bytes:
        if self._left <= 0:
            raise _HeadTooLarge(self._limit)
        ours = size is None or size < 0 or size > self._left
        n = self._left if ours else size
        line = self._raw.readline(n)
        self._left -= len(line)
        if ours and len(line) == n and not line.endswith(b"\n"):
            raise _HeadTooLarge(self._limit)
        return line

    def __getattr__(self, name: str):        # close(), read(), ...
        return getattr(self._raw, name)


class _BoundedServer(http.server.ThreadingHTTPServer):
    """A ThreadingHTTPServer that serves at most ``max_connections`` at once (one more is
    closed as soon as accepted, counted in ``refused``) and closes each connection
    ``connection_timeout_s`` after accepting it, whatever it is doing (counted in
    ``timed_out``): a client that sends nothing, or a byte now and then, holds a thread for
    that long, not for ever. Errors on a connection are logged at DEBUG, not printed."""

    daemon_threads = True

    def __init__(self, address, handler, max_connections: int, connection_timeout_s: float):
        self.max_connections = max_connections
        self.connection_timeout_s = connection_timeout_s
        self.refused = self.timed_out = self.oversized = 0
        self._active: dict = {}                # socket -> when to close it (monotonic s)
        self._lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        with self._lock:
            full = len(self._active) >= self.max_connections
            if not full:
                self._active[request] = time.monotonic() + self.connection_timeout_s
        if full:
            self.refused += 1
            _log.debug("metrics http: %d connections open: closed one from %s at once (%d so "
                       "far)", self.max_connections, client_address, self.refused)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._lock:
            self._active.pop(request, None)
        super().shutdown_request(request)

    def count_oversized(self) -> None:
        with self._lock:
            self.oversized += 1
        _log.debug("metrics http: a request head over %d bytes refused", REQUEST_HEAD_MAX_BYTES)

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._active)

    def service_actions(self) -> None:
        """Each turn of serve_forever (poll_interval): end the connections past their time.
        shutdown() wakes the handler's blocked read (it sees the end); its thread closes."""
        now = time.monotonic()
        with self._lock:
            overdue = [s for s, due in self._active.items() if due <= now]
            for s in overdue:
                self._active[s] = float("inf")          # once
        for s in overdue:
            self.timed_out += 1
            _log.debug("metrics http: connection open for %.1f s: closed",
                       self.connection_timeout_s)
            _shut(s)

    def shut_all(self) -> None:
        with self._lock:
            active = list(self._active)
        for s in active:
            _shut(s)

    def handle_error(self, request, client_address) -> None:
        _log.debug("metrics http: connection from %s ended with an error", client_address,
                   exc_info=True)


def _shut(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:          # closed meanwhile by its own thread
        pass


class MetricsServer:
    """Serves ``GET /metrics`` on 127.0.0.1 from a data dir's counters; off unless started.

    Loopback only on purpose: the figures are not secret, but an operator decides how they
    leave the machine (a local Prometheus agent or a reverse proxy).

    It runs inside the node process, so what a client can make it hold is bounded: at most
    ``max_connections`` connections are served at once (one more is closed at once, counted in
    ``refused_connections``), each is closed ``connection_timeout_s`` after it was accepted
    (``timed_out_connections``), and a request line and headers over
    ``REQUEST_HEAD_MAX_BYTES`` are answered 414 / 431 (``oversized_requests``). Each is logged
    at DEBUG on the ``aeronpy.metrics`` logger.
    """

    def __init__(self, data_dir: "str | os.PathLike", port: int = 0, host: str = "127.0.0.1",
                 *, max_connections: int = MAX_CONNECTIONS,
                 connection_timeout_s: float = CONNECTION_TIMEOUT_S) -> None:
        data_dir = os.fspath(data_dir)
        if max_connections < 1 or not connection_timeout_s > 0:
            raise ValueError("max_connections must be at least 1 and connection_timeout_s above 0")

        class Handler(http.server.BaseHTTPRequestHandler):
            # each read and write on the socket: a backstop; the server closes the connection
            # at connection_timeout_s (counted), whatever it is doing then
            timeout = connection_timeout_s + 1.0

            def setup(self) -> None:
                super().setup()
                self.rfile = _BoundedHead(self.rfile, REQUEST_HEAD_MAX_BYTES)

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except _HeadTooLarge:            # the request line itself (headers: 431)
                    self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""
                    self.close_connection = True
                    self.send_error(414, f"request line over {REQUEST_HEAD_MAX_BYTES} bytes")

            def send_error(self, code: int, message: Optional[str] = None,
                           explain: Optional[str] = None) -> None:
                if code in (414, 431):
                    self.server.count_oversized()
                super().send_error(code, message, explain)

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

        self._server = _BoundedServer((host, port), Handler, max_connections,
                                      connection_timeout_s)
        self.host, self.port = self._server.server_address[:2]
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    @property
    def refused_connections(self) -> int:
        """Connections closed at once because ``max_connections`` were being served."""
        return self._server.refused

    @property
    def timed_out_connections(self) -> int:
        """Connections closed because they were still open ``connection_timeout_s`` after
        they were accepted (a client that sent nothing, or too slowly)."""
        return self._server.timed_out

    @property
    def oversized_requests(self) -> int:
        """Requests answered 414 or 431: line and headers over REQUEST_HEAD_MAX_BYTES."""
        return self._server.oversized

    @property
    def active_connections(self) -> int:
        return self._server.active

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
        self._server.shut_all()           # the connections being served end now too
        self._server.server_close()

    def __enter__(self) -> "MetricsServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
