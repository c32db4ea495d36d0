"""A node whose service callback raises stops (it must not diverge from its peers), and the
``aeronpy node`` process then exits with status 4 instead of lingering with a dead duty cycle,
so a supervisor (systemd, Kubernetes) sees the failure. Its counters keep saying FAILED after
the exit and errors.log holds the exception, for the post-mortem."""
from __future__ import annotations

import textwrap
import time

from aeronpy import ClusterClient
from aeronpy.cluster.counters import ConsensusModuleState, CountersReader
from aeronpy.cluster.nodefiles import read_errors

from .helpers import wait_until

SERVICE = textwrap.dedent("""
    import aeronpy

    class Boom(aeronpy.ClusteredService):
        def on_session_message(self, session, timestamp_ns, message):
            if bytes(message) == b"boom":
                raise RuntimeError("order book corrupted")
            if session is not None:
                session.offer(b"ok")
""")


def _one_member(make_cluster, tmp_path, service: str):
    (tmp_path / "boom_service.py").write_text(SERVICE)
    # after the imported aeronpy's directory, which ProcessCluster puts first
    pc = make_cluster(members=1, services=(service,), env={"PYTHONPATH": str(tmp_path)})
    pc.start()
    assert pc.leader(timeout_s=20) == 0, pc.tail_log(0)
    return pc


def test_a_failed_node_exits_4_and_keeps_failed_in_its_counters(make_cluster, tmp_path):
    pc = _one_member(make_cluster, tmp_path, "boom_service:Boom")
    client = ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    try:
        assert bytes(client.request(b"fine", timeout_s=10)) == b"ok"
        client.offer(b"boom")
        deadline = time.monotonic() + 20
        while pc.procs[0].poll() is None and time.monotonic() < deadline:
            client.poll_egress(lambda *_: None)
            time.sleep(0.01)
    finally:
        client.close()
    assert pc.procs[0].poll() == 4, pc.tail_log(0)
    log = pc.tail_log(0, lines=200)
    assert "member 0 failed and stopped" in log and "order book corrupted" in log
    assert any("order book corrupted" in str(e) for e in read_errors(pc.data_dir(0)))
    state = CountersReader(pc.data_dir(0)).read()["consensus_module_state"]
    assert state == ConsensusModuleState.FAILED, state


def test_control_a_healthy_node_keeps_running_and_closes_with_0(make_cluster, tmp_path):
    pc = _one_member(make_cluster, tmp_path, "boom_service:Boom")
    client = ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    try:
        for _ in range(3):
            assert bytes(client.request(b"fine", timeout_s=10)) == b"ok"
    finally:
        client.close()
    assert not wait_until(lambda: pc.procs[0].poll() is not None, 1.0)   # still running
    assert pc.kill(0, sig=15) == 0
    state = CountersReader(pc.data_dir(0)).read()["consensus_module_state"]
    assert state == ConsensusModuleState.CLOSED, state
