"""A service whose snapshot takes longer than the election timeout. Found in this session:
with 500 ms snapshots on the default 200/400 ms timeouts, a 3-member cluster held 14
elections in 15 s (a leader's pause looked like its death to its followers, the followers'
like theirs to the leader). A member now keeps its election and leader-heartbeat timeouts
above twice its last snapshot's pause, so only the first snapshot, whose pause nobody knew
yet, may cost an election."""
from __future__ import annotations

import textwrap
import time

import pytest

from aeronpy import ClusterClient

from .helpers import counters

pytestmark = pytest.mark.process

SERVICE = textwrap.dedent("""
    import struct, time
    import aeronpy

    class SlowSnapshots(aeronpy.ClusteredService):
        def on_start(self, cluster, snapshot):
            self.total = struct.unpack("<q", snapshot.read(8))[0] if snapshot else 0
        def on_session_message(self, session, timestamp_ns, message):
            self.total += 1
            session.offer(struct.pack("<q", self.total))
        def on_take_snapshot(self, writer):
            end = time.monotonic() + 0.3            # a big state: 300 ms of serialising
            while time.monotonic() < end:
                pass
            writer.write(struct.pack("<q", self.total))
""")


def test_snapshots_longer_than_the_election_timeout_cost_at_most_the_first_election(
        make_cluster, tmp_path):
    (tmp_path / "slow_snapshots.py").write_text(SERVICE)
    pc = make_cluster(members=3, services=("slow_snapshots:SlowSnapshots",),
                      config={"snapshot_log_bytes": 64 * 1024},
                      env={"PYTHONPATH": str(tmp_path)})
    pc.start()
    assert pc.leader(timeout_s=20) is not None
    client = ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    terms, snapshots = [], []
    try:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            client.request(b"x" * 64, timeout_s=10)
            c = [counters(pc, m) for m in range(3)]
            terms.append(max(x.get("leadership_term", 0) for x in c))
            snapshots.append(min(x.get("snapshot_count", 0) for x in c))
    finally:
        client.close()
    assert snapshots[-1] >= 6, snapshots[-1]          # every member snapshotted, many times
    # from the moment every member has snapshotted twice, leadership stays where it is
    settled = next(i for i, n in enumerate(snapshots) if n >= 2)
    assert terms[-1] == terms[settled], (terms[settled], terms[-1])
    assert any("election timeout now" in pc.tail_log(m, 400) for m in range(3))
