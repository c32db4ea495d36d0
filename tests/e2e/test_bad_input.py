"""Bad input on a real cluster: oversized payloads, garbage datagrams, forged session ids."""
from __future__ import annotations

import json
import random
import socket
import struct

import pytest

from aeronpy.client import ClientConfig
from aeronpy.errors import ClusterClosedError, ClusterTimeoutError, MessageTooLargeError

from e2e.conftest import FAST_CLIENT

pytestmark = pytest.mark.process

_DROP_SLOTS = ("drops_wrong_cluster", "drops_unknown_member", "drops_bad_mac", "drops_malformed",
               "drops_too_large", "drops_stale", "drops_other")


def _echo(client, data) -> dict:
    return json.loads(client.request(json.dumps({"op": "echo", "data": data}).encode(), timeout_s=5.0))


def _messages(records: list, session_id: int) -> list:
    return [r[4]["data"] for r in records if r[1] == "message" and r[2] == session_id]


def test_oversized_payload_is_refused_at_offer_and_nothing_is_sent(shared_cluster):
    config = ClientConfig(max_message_bytes=4096, resend_timeout_ns=FAST_CLIENT.resend_timeout_ns,
                          keepalive_interval_ns=FAST_CLIENT.keepalive_interval_ns)
    with shared_cluster.connect(config=config) as client:
        _echo(client, "before")
        udp = client._transport._udp
        out_before = udp.counters.messages_out
        window_before = client._core.unacknowledged
        too_big = b"x" * 4097
        with pytest.raises(MessageTooLargeError, match="4097"):
            client.offer(too_big)
        with pytest.raises(MessageTooLargeError):
            client.request(too_big)
        with pytest.raises(MessageTooLargeError):
            client.offer(memoryview(b"y" * 10_000))
        assert udp.counters.messages_out == out_before       # not a byte left the client
        assert client._core.unacknowledged == window_before and not client._core.outgoing
        assert _echo(client, "after") == {"service": 0, "data": "after"}   # session unharmed
        assert _echo(client, "x" * 4000)["data"] == "x" * 4000              # the limit is exact


def test_message_above_the_clusters_limit_fails_its_request_and_does_not_wedge_the_session(shared_cluster):
    # the client allows more than the cluster (1 MiB) and was not told the cluster's limit (a
    # client of protocol 1): the leader refuses the message, and it must neither hang its
    # request nor stay at the head of the window blocking the rest
    config = ClientConfig(max_message_bytes=2 << 20, resend_timeout_ns=FAST_CLIENT.resend_timeout_ns,
                          keepalive_interval_ns=FAST_CLIENT.keepalive_interval_ns, protocol_version=1)
    too_big = b"x" * ((1 << 20) + 1)
    with shared_cluster.connect(config=config) as client:
        _echo(client, "before")
        with pytest.raises(MessageTooLargeError, match="rejected"):
            client.request(too_big, timeout_s=10.0)
        assert client.offer(too_big) > 0                      # no one waits for this one
        assert _echo(client, "after") == {"service": 0, "data": "after"}
        assert shared_cluster.wait_for(lambda: client.poll_egress(lambda *_: None) >= 0
                                       and client._core.unacknowledged == 0, 10.0)
        assert client.counters["messages_rejected"] >= 2
    # no service on any member saw the refused messages
    assert shared_cluster.wait_probe(lambda r: _messages(r, client.session_id) == ["before", "after"])


def test_a_client_told_the_clusters_limit_refuses_a_larger_message_before_sending(shared_cluster):
    config = ClientConfig(max_message_bytes=2 << 20, resend_timeout_ns=FAST_CLIENT.resend_timeout_ns,
                          keepalive_interval_ns=FAST_CLIENT.keepalive_interval_ns)
    with shared_cluster.connect(config=config) as client:
        assert client.session_terms["max_message_bytes"] == 1 << 20
        with pytest.raises(MessageTooLargeError, match="exceeds max_message_bytes 1048576"):
            client.offer(b"x" * ((1 << 20) + 1))
        assert client._core.unacknowledged == 0 and "messages_rejected" not in client.counters
        assert _echo(client, "fits") == {"service": 0, "data": "fits"}


def _garbage(rng: random.Random) -> list:
    header = struct.Struct("<IBBHiiii")    # frame_length, version, flags, type, cluster, sender, stream, epoch
    return [
        b"",                                                      # empty datagram
        b"\x00",                                                  # shorter than any header
        rng.randbytes(7),
        rng.randbytes(200),
        header.pack(24, 1, 0, 1, 0, -1, 0, 1),                     # DATA frame with no body
        header.pack(64, 1, 0, 1, 0, -1, 0, 1) + rng.randbytes(40),   # frame_length lies
        header.pack(24 + 24, 1, 0, 1, 9999, -1, 0, 1) + rng.randbytes(24),   # another cluster
        header.pack(24 + 16, 1, 0, 77, 0, -1, 0, 1) + rng.randbytes(16),     # unknown frame type
        header.pack(24 + 16, 9, 0, 1, 0, -1, 0, 1) + rng.randbytes(16),      # unknown version
        header.pack(24 + 16, 1, 0, 2, 0, 5, 0, 1) + rng.randbytes(16),       # member id 5 unknown
    ]


def test_garbage_on_the_ingress_port_is_dropped_and_counted(shared_cluster):
    rng = random.Random(6)
    leader = shared_cluster.leader()
    targets = [leader, next(m for m in range(shared_cluster.members) if m != leader)]

    def drops(member: int) -> int:
        counters = shared_cluster.read_counters(member) or {}
        return sum(counters.get(slot, 0) for slot in _DROP_SLOTS)

    before = {m: drops(m) for m in targets}
    datagrams = _garbage(rng)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        for member in targets:
            port = shared_cluster.member_ports[member]["ingress_port"]
            for datagram in datagrams:
                raw.sendto(datagram, (shared_cluster.host, port))
    for member in targets:
        assert shared_cluster.wait_for(lambda: drops(member) - before[member] >= len(datagrams), 5.0), \
            (member, drops(member) - before[member], shared_cluster.read_counters(member))
    for member in targets:
        assert shared_cluster.alive(member)
    with shared_cluster.connect() as client:     # and the cluster carries on
        assert _echo(client, "still here")["data"] == "still here"


def test_forged_session_id_is_rejected(shared_cluster):
    with shared_cluster.connect() as victim, shared_cluster.connect() as forger:
        _echo(victim, "victim-1")
        real_id = forger.session_id
        forger._core.session_id = victim.session_id        # claim the victim's session
        with pytest.raises(ClusterTimeoutError):
            forger.request(json.dumps({"op": "echo", "data": "forged"}).encode(), timeout_s=1.0)
        assert forger.counters.get("session_errors", 0) >= 1   # "session belongs to another client"
        _echo(victim, "victim-2")
        assert shared_cluster.wait_probe(lambda r: "victim-2" in _messages(r, victim.session_id))
        for member in range(shared_cluster.members):
            assert "forged" not in _messages(shared_cluster.probe(0, member), victim.session_id)
            assert "forged" not in _messages(shared_cluster.probe(0, member), real_id)
        # a session id that names no session at all closes the forging client with a clear error
        forger._core.session_id = 10**12
        with pytest.raises(ClusterClosedError, match="unknown session"):
            forger.request(json.dumps({"op": "echo", "data": "made up"}).encode(), timeout_s=5.0)
