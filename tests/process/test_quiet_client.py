"""A client that stays quiet while things change must still work at once when it speaks again
(a second new-user review): its offers go out while it waits for replies, and its first request
after a failover that happened while it was idle is answered within an ordinary timeout."""
from __future__ import annotations

import signal
import time

import pytest

import aeronpy

from .helpers import ADD, add, caught_up, counters, describe, wait_until

pytestmark = pytest.mark.process


def test_wait_for_egress_sends_what_offer_queued(make_cluster):
    """offer() queues; wait_for_egress used to park with the message still queued, so the
    documented open loop (offer, wait until the next send, poll) held every message for the
    whole wait."""
    pc = make_cluster().start()
    assert pc.leader(timeout_s=20) is not None, describe(pc)
    with aeronpy.ClusterClient.connect(pc.ingress_endpoints, timeout_s=10) as client:
        assert add(client) == 1
        sock = client._transport._udp.socket
        before = sock.datagrams_out
        cid = client.offer(ADD.pack(1))
        assert cid > 0 and sock.datagrams_out == before           # queued, not yet sent
        assert client.wait_for_egress(2.0)                         # the reply ends the wait
        assert sock.datagrams_out == before + 1                    # sent before it parked
        replies = {}
        deadline = time.monotonic() + 5.0
        while cid not in replies and time.monotonic() < deadline:
            client.poll_egress(lambda c, p: replies.__setitem__(c, ADD.unpack(p)[0]))
            client.wait_for_egress(0.1)
        assert replies[cid] == 2


def test_the_first_request_after_a_quiet_failover_is_answered_within_a_second(make_cluster):
    """The new leader's NEW_LEADER event cannot reach a client that never sent to it, so an
    idle client learns of a failover from its own re-send timer; it used to try another member
    only after a second 500 ms stall, and a request with timeout_s=1.0 timed out (4 in 7)."""
    pc = make_cluster().start()
    assert pc.leader(timeout_s=20) is not None, describe(pc)
    with aeronpy.ClusterClient.connect(pc.ingress_endpoints, timeout_s=10) as client:
        total = add(client)
        for _ in range(5):               # the old client passed a cycle 3 times in 7
            leader = pc.leader(timeout_s=10)
            assert pc.kill(leader, signal.SIGKILL) == -signal.SIGKILL
            successor = pc.leader(timeout_s=10, exclude={leader})
            assert successor is not None, describe(pc)
            time.sleep(1.0)                                       # the client stays quiet
            total = add(client, timeout_s=1.0)                    # the issue's own timeout
            pc.start_member(leader)
            others = [m for m in range(pc.members) if m != leader]
            assert wait_until(lambda: caught_up(pc, leader, others)
                              and counters(pc, leader).get("role") == 0, 15), describe(pc)
        assert total == 6
