"""Two services on one node (``--service A --service B``): a message names its service id and
only that service receives it; session open/close reach both."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.process


def _messages(records: list, session_id: int) -> list:
    return [r[4]["data"] for r in records if r[1] == "message" and r[2] == session_id]


def test_each_service_receives_only_its_own_messages(shared_cluster):
    sent = {0: [], 1: []}
    with shared_cluster.connect() as client:
        session_id = client.session_id
        for i in range(30):
            service_id = (i * 7) % 3 % 2          # an irregular interleaving of 0 and 1
            data = f"m{i}-for-{service_id}"
            reply = json.loads(client.request(json.dumps({"op": "echo", "data": data}).encode(),
                                              service_id=service_id, timeout_s=5.0))
            assert reply == {"service": service_id, "data": data}
            sent[service_id].append(data)
        # a message for a service that does not exist is applied by nobody, then traffic goes on
        assert client.offer(json.dumps({"op": "echo", "data": "nobody"}).encode(), service_id=2) > 0
        last = json.loads(client.request(b'{"op": "echo", "data": "last"}', service_id=1, timeout_s=5.0))
        assert last["data"] == "last"
        sent[1].append("last")
    assert all(sent.values())
    for service_id in (0, 1):
        assert shared_cluster.wait_probe(lambda r: _messages(r, session_id) == sent[service_id],
                                         service_id=service_id), \
            [_messages(shared_cluster.probe(service_id, m), session_id) for m in range(3)]
    for member in range(shared_cluster.members):   # both services saw the session open
        for service_id in (0, 1):
            kinds = [r[1] for r in shared_cluster.probe(service_id, member) if r[2] == session_id]
            assert kinds[0] == "open", kinds
