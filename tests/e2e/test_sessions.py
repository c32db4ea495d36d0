"""Sessions on a real cluster: redirect from a follower, timeout, close by the service, close by
the client, authentication rejected. Closes are checked on every member's probe record."""
from __future__ import annotations

import json
import time

import pytest

from aeronpy.errors import AuthenticationError, ClusterClosedError

pytestmark = pytest.mark.process


def _closes(records: list, session_id: int) -> list:
    return [r[4] for r in records if r[1] == "close" and r[2] == session_id]


def _echo(client, data, service_id: int = 0) -> dict:
    return json.loads(client.request(json.dumps({"op": "echo", "data": data}).encode(),
                                     service_id=service_id, timeout_s=5.0))


def test_connect_through_a_follower_is_redirected_to_the_leader(shared_cluster):
    leader = shared_cluster.leader()
    follower = next(m for m in range(shared_cluster.members) if m != leader)
    endpoints = [shared_cluster.endpoint(follower)] + [
        shared_cluster.endpoint(m) for m in range(shared_cluster.members) if m != follower]
    with shared_cluster.connect(",".join(endpoints)) as client:
        assert client.counters.get("redirects", 0) >= 1
        assert client.leader_endpoint == shared_cluster.endpoint(leader)
        assert _echo(client, "via follower") == {"service": 0, "data": "via follower"}
    # only the follower's own endpoint listed: the redirect names an endpoint it never knew
    with shared_cluster.connect(shared_cluster.endpoint(follower)) as client:
        assert client.leader_endpoint == shared_cluster.endpoint(leader)
        assert _echo(client, "only follower") == {"service": 0, "data": "only follower"}


def test_silent_session_times_out_on_every_member(shared_cluster):
    client = shared_cluster.connect()
    try:
        assert client.session_terms["session_timeout_ms"] == 1500    # told at connect
        session_id = client.session_id
        _echo(client, "then silence")
        started = time.monotonic()
        # no do_work, so no keepalives: the leader appends SESSION_CLOSE(TIMEOUT) after 1.5 s
        assert shared_cluster.wait_probe(lambda r: _closes(r, session_id) == ["TIMEOUT"], timeout_s=15.0), \
            [_closes(shared_cluster.probe(0, m), session_id) for m in range(3)]
        assert time.monotonic() - started >= 1.0
        for m in range(shared_cluster.members):   # every service hears the close, once
            assert _closes(shared_cluster.probe(1, m), session_id) == ["TIMEOUT"]
        # the client knows the session is gone: the message is refused before it is sent
        with pytest.raises(ClusterClosedError, match="session expired"):
            _echo(client, "too late")
        assert client.counters["sessions_expired"] == 1
    finally:
        client.close()


def test_service_closes_the_session_on_every_member(shared_cluster):
    with shared_cluster.connect() as client:
        session_id = client.session_id
        reply = json.loads(client.request(b'{"op": "close-me"}', timeout_s=5.0))
        assert reply == {"closing": True}
        assert shared_cluster.wait_probe(lambda r: _closes(r, session_id) == ["SERVICE_ACTION"]), \
            [_closes(shared_cluster.probe(0, m), session_id) for m in range(3)]
        with pytest.raises(ClusterClosedError):
            _echo(client, "after close")


def test_client_close_reaches_every_member(shared_cluster):
    client = shared_cluster.connect()
    session_id = client.session_id
    _echo(client, "bye")
    client.close()
    assert shared_cluster.wait_probe(lambda r: _closes(r, session_id) == ["CLIENT_ACTION"]), \
        [_closes(shared_cluster.probe(0, m), session_id) for m in range(3)]


def test_wrong_credentials_are_rejected_with_a_clear_error(shared_cluster):
    with pytest.raises(AuthenticationError, match="rejected"):
        shared_cluster.connect(credentials=b"guess", timeout_s=10.0)
    with pytest.raises(AuthenticationError):
        shared_cluster.connect(credentials=b"", timeout_s=10.0)
    with shared_cluster.connect() as client:      # the right password still gets in
        assert _echo(client, "welcome")["data"] == "welcome"
