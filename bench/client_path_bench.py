"""CPU per message of the client's own code (ClusterClient, ClientCore, UdpClientTransport),
without the network or the stream layer under it: the transport's UdpTransport is replaced by
a stub that drops what is sent and hands back pre-encoded EgressMessages, one per offered
message, in the byte form the real transport delivers (a memoryview).

    python bench/client_path_bench.py [--messages N] [--window W] [--profile]

The windowed loop is perf_harness's: W offers in flight, ``poll_egress`` between bursts.
Compare branches by the ratio of two runs made back to back (the machine is shared).
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from aeronpy import _codec  # noqa: E402
from aeronpy.client import ClusterClient, UdpClientTransport  # noqa: E402
from aeronpy.cluster import protocol as P  # noqa: E402

PAYLOAD = b"x" * 32
SESSION_ID = 77


class _StubUdp:
    """Stands in for UdpTransport: counts sends, delivers queued egress bytes on poll."""

    def __init__(self) -> None:
        self.sent = 0
        self.egress: list = []
        self.next_egress = 0

    def send(self, peer_id, payload) -> int:
        self.sent += 1
        return 1

    def poll(self, handler, limit=64) -> int:
        egress, i = self.egress, self.next_egress
        start = i
        end = min(self.sent, len(egress), i + limit)    # egress[k] answers the k-th send
        while i < end:
            handler(0, memoryview(egress[i]))
            i += 1
        self.next_egress = i
        return i - start

    def do_work(self, now_ns=None) -> int:
        return 0

    def flush(self) -> int:
        return 0

    def wait_readable(self, timeout_ns) -> bool:
        return False

    def close(self) -> None:
        pass


def stub_client(messages: int) -> tuple[ClusterClient, _StubUdp]:
    """A connected ClusterClient over a UdpClientTransport whose UDP layer is the stub."""
    transport = UdpClientTransport.__new__(UdpClientTransport)
    UdpClientTransport.__init__(transport, ["127.0.0.1:1"])
    transport._udp.close()
    stub = transport._udp = _StubUdp()
    # connect's correlation id is 1; messages get correlation ids 2.. and seqs 1..
    # the OK carries the session terms, as a node's does: without them the client asks again,
    # and that extra send put the stub's replies one behind (the bench reported missing replies)
    terms = P.format_session_terms("127.0.0.1:1", {"session_timeout_ms": 10_000,
                                                   "reply_cache_messages": 256,
                                                   "max_message_bytes": 1 << 20})
    stub.egress.append(_codec.encode(P.SessionEvent(1, SESSION_ID, P.EVENT_OK, 0, 0, terms)))
    for seq in range(1, messages + 1):
        stub.egress.append(_codec.encode_egress_message(SESSION_ID, seq + 1, seq, PAYLOAD))
    client = ClusterClient.open("127.0.0.1:1", transport=transport)
    client.do_work()
    assert client.is_connected, "stub connect failed"
    return client, stub


def windowed(client: ClusterClient, count: int, window: int) -> int:
    replies = [0]

    def on_reply(_cid, _payload) -> None:
        replies[0] += 1
    sent = 0
    for _ in range(count * 4):
        if replies[0] >= count:
            break
        while sent < count and sent - replies[0] < window and client.offer(PAYLOAD) > 0:
            sent += 1
        client.poll_egress(on_reply)
    if replies[0] != count:
        raise SystemExit(f"only {replies[0]} of {count} replies")
    return replies[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    client, _ = stub_client(args.messages + 2_000)
    windowed(client, 2_000, args.window)                 # warm up
    profiler = cProfile.Profile() if args.profile else None
    cpu0 = time.process_time()
    if profiler:
        profiler.enable()
    windowed(client, args.messages, args.window)
    if profiler:
        profiler.disable()
    cpu = time.process_time() - cpu0
    print(f"client path (stub UDP), {args.messages} x 32 B, window {args.window}: "
          f"CPU {cpu / args.messages * 1e6:.2f} us per message{' [profiled]' if profiler else ''}")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
