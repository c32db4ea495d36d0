"""A message for a service id the cluster lacks is refused at once with a clear error, on real
nodes: before, it was sequenced, skipped at apply (counted), and a request() for it waited out
its timeout with 'it may still be applied'."""
import time

import pytest

import aeronpy
from aeronpy.service import Role
from aeronpy.testing.inproc import inproc_cluster


@pytest.mark.parametrize("service_id", [1, 7, 2**31 - 1])     # -1: the client refuses it
def test_a_request_to_a_missing_service_fails_at_once_and_the_session_goes_on(service_id):
    with inproc_cluster(timeout_s=20) as (nodes, pump, client):
        import threading
        stop = threading.Event()

        def drive():
            while not stop.is_set():
                pump()
        driver = threading.Thread(target=drive, daemon=True)
        driver.start()
        try:
            started = time.monotonic()
            with pytest.raises(aeronpy.MessageRejectedError, match="unknown service"):
                client.request(b"hello", service_id=service_id, timeout_s=10)
            assert time.monotonic() - started < 5           # not the timeout
            assert client.request(b"after", timeout_s=10) == b"after"   # EchoService, id 0
        finally:
            stop.set()
            driver.join(timeout=10)
        leader = next(n for n in nodes if n.role == Role.LEADER)
        assert leader.module.counters["ingress_unknown_service"] >= 1
        leader._transport_counters.publish()          # and operators read it
        assert leader.counters.values[leader.counters.index("ingress_unknown_service")] >= 1
        assert all(n.module.counters.get("unknown_service", 0) == 0 for n in nodes)


def test_a_negative_service_id_is_refused_by_the_client_before_it_is_sent():
    """The wire field is an int32 the cluster also refuses below 0 (ingress_unknown_service,
    tests/cluster/test_module_single.py); the client no longer sends it at all."""
    with inproc_cluster(timeout_s=20) as (nodes, pump, client):
        with pytest.raises(ValueError, match="service_id"):
            client.offer(b"hello", service_id=-1)
        with pytest.raises(ValueError, match="service_id"):
            client.request(b"hello", service_id=-1, timeout_s=1)
        assert client._core.unacknowledged == 0                  # nothing entered the window
