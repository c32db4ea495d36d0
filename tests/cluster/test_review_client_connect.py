"""Review of ClusterClient.connect and UdpClientTransport: a connect that fails by an exception
must not leave its socket open, and an endpoint the client cannot use fails the same way every
time instead of once and then silently."""
import pytest

from aeronpy.client import ClusterClient, UdpClientTransport
from aeronpy.cluster.client_core import ClientConfig
from aeronpy.errors import NotConnectedError


class _FailingTransport:
    local_endpoint = "me:1"

    def __init__(self, fail_in):
        self.fail_in = fail_in
        self.closed = False

    def send(self, endpoint, message):
        if self.fail_in == "send":
            raise RuntimeError("boom in send")

    def poll(self, handler, limit=64):
        if self.fail_in == "poll":
            raise RuntimeError("boom in poll")
        return 0

    def close(self):
        self.closed = True


@pytest.mark.parametrize("fail_in", ["send", "poll"])
def test_a_connect_that_raises_closes_its_transport(fail_in):
    transport = _FailingTransport(fail_in)
    with pytest.raises(RuntimeError, match="boom"):
        ClusterClient.connect("m0:1", timeout_s=1.0, transport=transport,
                              config=ClientConfig(connect_attempt_timeout_ns=1_000_000))
    assert transport.closed


def test_an_endpoint_the_transport_cannot_use_fails_every_send_not_only_the_first():
    """A leader endpoint named by the cluster (redirect, NEW_LEADER) that this client cannot
    resolve raised a bare gaierror once; the failed peer stayed mapped, so every later send to
    it vanished without a word and requests just timed out."""
    t = UdpClientTransport(["127.0.0.1:9"])
    try:
        for _ in range(2):
            with pytest.raises(NotConnectedError, match="no-such-host.invalid:1"):
                t.send("no-such-host.invalid:1", b"\x23\x00\x01\x00")
        t.send("127.0.0.1:10", b"\x23\x00\x01\x00")         # other peers still work
    finally:
        t.close()
