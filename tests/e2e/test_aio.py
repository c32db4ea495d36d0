"""``aeronpy.aio.AsyncClusterClient`` against a real cluster: concurrent awaited requests."""
from __future__ import annotations

import asyncio
import json

import pytest

from aeronpy.aio import AsyncClusterClient
from aeronpy.errors import ClusterClosedError

from e2e.conftest import FAST_CLIENT
from e2e.e2e_services import PASSWORD

pytestmark = pytest.mark.process


async def _session(endpoints: str) -> None:
    client = await AsyncClusterClient.connect(endpoints, timeout_s=15.0, credentials=PASSWORD,
                                              config=FAST_CLIENT)
    try:
        requests = [json.dumps({"op": "echo", "data": i}).encode() for i in range(40)]
        replies = await asyncio.wait_for(
            asyncio.gather(*(client.request(r, service_id=i % 2, timeout_s=10.0)
                             for i, r in enumerate(requests))), 30.0)
        assert [json.loads(r) for r in replies] == [{"service": i % 2, "data": i} for i in range(40)]
        other = asyncio.create_task(asyncio.sleep(0.01))     # the event loop stays responsive
        assert json.loads(await client.request(b'{"op": "echo", "data": "x"}'))["data"] == "x"
        await other
    finally:
        await client.close()
    with pytest.raises(ClusterClosedError):
        await client.request(b'{"op": "echo", "data": "closed"}')


def test_async_client_requests(shared_cluster):
    asyncio.run(asyncio.wait_for(_session(shared_cluster.ingress_endpoints), 60.0))
