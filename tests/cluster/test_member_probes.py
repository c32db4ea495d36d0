"""A busy client's keepalive to each other member in turn (ClientCore._probe_members, set by
ClusterClient for UDP). A member can send to a client only once it has heard from it, and a
client with messages in flight all along never sent a keepalive, so a new leader's NEW_LEADER
event did not reach it: it learnt of a kill -9 failover only by its 500 ms re-send timeout
(failover gaps of 250 or 500 ms, about half each, in `aeronpy bench`)."""
from __future__ import annotations

import time

from aeronpy.cluster import protocol as P

from .test_client_core import MS, connected, sent


def _probing(interval_ns=500 * MS):
    c = connected()                       # leader m1:1 of term 3, session 42
    c._probe_interval_ns = interval_ns
    return c


def _keepalive_targets(out):
    return [ep for ep, m in out if type(m) is P.SessionKeepAlive]


def test_a_busy_client_probes_every_other_member_then_one_per_interval():
    c = _probing(200 * MS)                  # (under the 500 ms re-send timeout)
    assert c.offer(b"x", 0, 1 * MS) > 0
    assert _keepalive_targets(sent(c)) == []
    c.tick(2 * MS)
    assert sorted(_keepalive_targets(sent(c))) == ["m0:1", "m2:1"]     # first: all of them
    last_sent = c._last_sent_ns
    c.tick(2 * MS + 199 * MS)
    assert _keepalive_targets(sent(c)) == []
    c.tick(2 * MS + 200 * MS)
    assert _keepalive_targets(sent(c)) in (["m0:1"], ["m2:1"])        # then one in turn
    assert c._last_sent_ns == last_sent      # not the session's own sends: no keepalive skipped
    assert c.counters["member_probes"] == 3
    assert c.next_due_ns() <= 2 * MS + 400 * MS


def test_probes_need_the_setting_and_messages_in_flight():
    c = connected()                          # the control: the setting off (SimCluster's)
    c.offer(b"x", 0, 1 * MS)
    c.tick(2 * MS)
    assert _keepalive_targets(sent(c)) == []
    idle = _probing()                        # and an idle client: its keepalives do that
    idle.tick(2 * MS)
    assert _keepalive_targets(sent(idle)) == []


def test_a_probed_follower_naming_our_leader_is_no_redirect():
    c = _probing()
    c.on_egress(P.SessionEvent(0, 42, P.EVENT_REDIRECT, 0, 3, "m1:1"), 0)
    assert c.leader_endpoint == "m1:1" and c.counters.get("redirects", 0) == 0
    assert c.counters["leader_confirmed"] == 1


def test_every_member_hears_from_a_busy_client_over_udp():
    """On real sockets: after a second of requests in flight, every member's ingress holds
    the client, so whichever of them leads next can announce itself to it."""
    from aeronpy.testing.inproc import inproc_cluster
    with inproc_cluster() as (nodes, pump, client):
        deadline = time.monotonic() + 1.5
        replies = []
        while time.monotonic() < deadline:
            client.offer(b"busy")
            pump()
            client.poll_egress(lambda cid, p: replies.append(cid))
        assert replies
        assert all(node.ingress.client_ids() for node in nodes), \
            [node.ingress.client_ids() for node in nodes]
        assert client.counters.get("member_probes", 0) >= 2
