"""Second operator-CLI review, the metrics HTTP server (inside the node process): a local
client that opens connections and sends nothing, or sends slowly, or sends an endless head,
no longer holds a thread for ever. Connections are closed after a few seconds, at most a
bounded number are served at once (the rest closed at once, counted), and a request's line
and headers are bounded. Every wait in these tests is bounded by time; all on loopback."""
import socket
import threading
import time
import urllib.request

import pytest
from promtext import parse

from aeronpy.cluster.counters import CountersWriter, SlotId
from aeronpy.cluster.metrics import MetricsServer


@pytest.fixture
def counters(tmp_path):
    writer = CountersWriter(tmp_path, member_id=1, cluster_id=7)
    writer.values[SlotId.COMMIT_INDEX] = 42
    yield str(tmp_path)
    writer.close()


def idle_connections(server, count: int) -> list:
    socks = []
    for _ in range(count):
        s = socket.create_connection((server.host, server.port), timeout=5)
        socks.append(s)
    return socks


def closed_by_server_within(sock, seconds: float) -> bool:
    """The server closed (or reset) the connection within ``seconds``: recv sees the end."""
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def handler_threads() -> int:
    return sum("process_request_thread" in t.name for t in threading.enumerate())


def scrape(server) -> float:
    with urllib.request.urlopen(server.url, timeout=5) as resp:
        return parse(resp.read().decode())["aeronpy_commit_index"]["samples"][0][1]


def raw_request(server, head: bytes, timeout_s: float = 5.0) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=timeout_s) as s:
        s.sendall(head)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError):
            pass
        return b"".join(chunks)


def test_the_default_server_closes_an_idle_connection_within_a_few_seconds(counters):
    # it kept it (and its thread) open for ever
    with MetricsServer(counters, port=0) as server:
        (sock,) = idle_connections(server, 1)
        try:
            started = time.monotonic()
            assert closed_by_server_within(sock, 8.0), "idle connection still open after 8 s"
            assert time.monotonic() - started >= 1.0          # not at once: a few seconds
        finally:
            sock.close()
        assert scrape(server) == 42


def test_the_default_server_bounds_the_threads_idle_connections_hold(counters):
    # each of 40 idle connections held a thread of the node process (200 held 200)
    with MetricsServer(counters, port=0) as server:
        base = handler_threads()
        most = 0
        socks = []
        try:
            for _ in range(40):
                socks += idle_connections(server, 1)
                most = max(most, handler_threads() - base)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                most = max(most, handler_threads() - base)
                time.sleep(0.05)
            assert most <= 16
            assert server.refused_connections >= 1
            # and none is held for ever: every one is closed by the server, in a few seconds
            assert all(closed_by_server_within(s, 8.0) for s in socks)
        finally:
            for s in socks:
                s.close()


def test_connections_beyond_the_cap_are_closed_at_once_and_counted(counters):
    with MetricsServer(counters, port=0, max_connections=3, connection_timeout_s=2.0) as server:
        held = idle_connections(server, 3)
        try:
            (extra,) = idle_connections(server, 1)
            with extra:
                assert closed_by_server_within(extra, 1.5)
            assert server.refused_connections == 1
        finally:
            for s in held:
                s.close()
        deadline = time.monotonic() + 3          # the held ones' places are free again
        while time.monotonic() < deadline and server.active_connections:
            time.sleep(0.02)
        assert server.active_connections == 0
        assert scrape(server) == 42


def test_idle_connections_are_closed_after_the_timeout_and_counted(counters):
    with MetricsServer(counters, port=0, max_connections=4, connection_timeout_s=0.5) as server:
        socks = idle_connections(server, 3)
        try:
            started = time.monotonic()
            assert all(closed_by_server_within(s, 3.0) for s in socks)
            assert time.monotonic() - started < 3.0
        finally:
            for s in socks:
                s.close()
        assert server.timed_out_connections == 3
        assert scrape(server) == 42


def test_a_request_sent_slowly_is_cut_at_the_connection_timeout(counters):
    # each byte within the socket timeout kept it going for ever
    with MetricsServer(counters, port=0, max_connections=4, connection_timeout_s=0.6) as server:
        with socket.create_connection((server.host, server.port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n")
            started = time.monotonic()
            cut = False
            while time.monotonic() - started < 4.0:
                try:
                    s.sendall(b"X")
                except (BrokenPipeError, ConnectionResetError):
                    cut = True
                    break
                s.settimeout(0.1)
                try:
                    if s.recv(65536) == b"":
                        cut = True
                        break
                except socket.timeout:
                    pass
            assert cut, "a slow request was still open after 4 s"
            assert time.monotonic() - started < 2.5


def test_an_oversized_request_head_is_refused(counters):
    # 20 headers of 5,000 bytes were read and answered (the stdlib allows 100 x 64 KiB)
    with MetricsServer(counters, port=0) as server:
        head = (b"GET /metrics HTTP/1.0\r\n"
                + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 5000) for i in range(20)) + b"\r\n")
        answer = raw_request(server, head)
        assert answer.startswith(b"HTTP/1.0 431"), answer[:200]
        long_line = b"GET /metrics?" + b"a" * 20000 + b" HTTP/1.0\r\n\r\n"
        answer = raw_request(server, long_line)
        assert answer.startswith(b"HTTP/1.0 414"), answer[:200]
        assert server.oversized_requests == 2
        assert scrape(server) == 42        # and it serves on


def test_a_request_with_ordinary_headers_is_served(counters):
    # guard: a scraper's usual head
    with MetricsServer(counters, port=0) as server:
        head = (b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Prometheus/2.45\r\n"
                b"Accept: text/plain;version=0.0.4\r\nConnection: close\r\n\r\n")
        answer = raw_request(server, head)
        assert answer.startswith(b"HTTP/1.0 200") and b"aeronpy_commit_index" in answer


def test_close_ends_the_connections_it_serves(counters):
    server = MetricsServer(counters, port=0, max_connections=4, connection_timeout_s=30).start()
    socks = idle_connections(server, 2)
    try:
        time.sleep(0.2)
        started = time.monotonic()
        server.close()
        assert time.monotonic() - started < 3
        assert all(closed_by_server_within(s, 2.0) for s in socks)
    finally:
        for s in socks:
            s.close()
