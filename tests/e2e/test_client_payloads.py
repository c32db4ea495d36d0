"""A payload the client cannot send is refused at the call, before it takes a sequence number:
a refused str used to take one, and the cluster then waited for that message for ever, so
every later request of the session timed out. Bytes-like payloads of every kind are sent."""
from __future__ import annotations

import asyncio
import json

import pytest

from aeronpy import ClusterClient
from aeronpy.aio import AsyncClusterClient

from e2e.conftest import FAST_CLIENT
from e2e.e2e_services import PASSWORD

pytestmark = pytest.mark.process


def _echo(i) -> bytes:
    return json.dumps({"op": "echo", "data": i}).encode()


@pytest.mark.parametrize("bad", ["text", [1, 2], 7, None, 2.5])
def test_a_payload_that_is_not_bytes_like_is_refused_and_the_session_goes_on(shared_cluster, bad):
    with ClusterClient.connect(shared_cluster.ingress_endpoints, timeout_s=15.0,
                               credentials=PASSWORD, config=FAST_CLIENT) as client:
        assert json.loads(client.request(_echo(1), timeout_s=10.0))["data"] == 1
        for send in (client.request, client.offer):
            with pytest.raises(TypeError, match="payload must be bytes-like"):
                send(bad)
        assert json.loads(client.request(_echo(2), timeout_s=10.0))["data"] == 2


def test_bytes_like_payloads_of_every_kind_are_sent(shared_cluster):
    with ClusterClient.connect(shared_cluster.ingress_endpoints, timeout_s=15.0,
                               credentials=PASSWORD, config=FAST_CLIENT) as client:
        for i, make in enumerate((bytes, bytearray, memoryview,
                                  lambda b: memoryview(b"xx" + b)[2:])):
            assert json.loads(client.request(make(_echo(i)), timeout_s=10.0))["data"] == i


def test_the_async_client_refuses_it_too(shared_cluster):
    async def run():
        client = await AsyncClusterClient.connect(shared_cluster.ingress_endpoints, timeout_s=15.0,
                                                  credentials=PASSWORD, config=FAST_CLIENT)
        try:
            with pytest.raises(TypeError, match="payload must be bytes-like"):
                await client.request("text")
            return json.loads(await client.request(_echo(3), timeout_s=10.0))["data"]
        finally:
            await client.close()
    assert asyncio.run(asyncio.wait_for(run(), 60.0)) == 3


def test_an_offered_message_the_cluster_refuses_is_reported_not_lost(shared_cluster):
    """offer() + poll_egress(): a message the cluster refuses unapplied (here: for a service
    it lacks) gets no reply, so a pipelining client needs the refusal some other way; it was
    only counted. take_rejections() hands it over; request() raises it itself."""
    import time
    import aeronpy
    with ClusterClient.connect(shared_cluster.ingress_endpoints, timeout_s=15.0,
                               credentials=PASSWORD, config=FAST_CLIENT) as client:
        refused = client.offer(_echo("nowhere"), service_id=9)
        fine = client.offer(_echo("here"))
        assert refused > 0 and fine > 0
        replies, rejections = {}, []
        deadline = time.monotonic() + 10.0
        while (fine not in replies or not rejections) and time.monotonic() < deadline:
            client.poll_egress(lambda cid, p: replies.__setitem__(cid, bytes(p)))
            rejections += client.take_rejections()
            client.wait_for_egress(0.01)
        assert json.loads(replies[fine])["data"] == "here" and refused not in replies
        [(cid, error)] = rejections
        assert cid == refused and isinstance(error, aeronpy.MessageRejectedError)
        assert "service" in str(error)
        assert client.take_rejections() == []                  # handed over once
        with pytest.raises(aeronpy.MessageRejectedError):
            client.request(_echo("nowhere"), service_id=9, timeout_s=10.0)
        assert client.take_rejections() == []                  # request() kept its own
