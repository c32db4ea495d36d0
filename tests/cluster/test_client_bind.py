"""Where a client receives its replies: a plain ``ClusterClient.connect`` to members on other
hosts used to bind 127.0.0.1 and so never got an answer (the multi-host test,
tests/process/test_netns.py, now connects that way and checks the address it chose)."""
import pytest

from aeronpy.client import UdpClientTransport, local_host_for


def test_a_cluster_on_loopback_gets_a_loopback_client():
    assert local_host_for(["127.0.0.1:20101", "127.0.0.2:20111"]) == "127.0.0.1"
    assert local_host_for(["localhost:20101"]) == "127.0.0.1"


@pytest.mark.parametrize("endpoint, needle", [
    ("h0:abc", "port 'abc' is not a number"),
    ("nosuchhost.invalid:5", "cannot resolve 'nosuchhost.invalid'"),
    ("20101", "is not 'host:port'"),
])
def test_bad_endpoints_get_a_clear_error(endpoint, needle):
    with pytest.raises(ValueError, match=needle):
        local_host_for([endpoint])


def test_an_explicit_bind_host_is_kept():
    transport = UdpClientTransport(["127.0.0.1:20101"], bind_host="127.0.0.3")
    try:
        assert transport.local_endpoint.startswith("127.0.0.3:")
    finally:
        transport.close()


def test_connect_takes_no_cluster_id_or_secret():
    """Both were accepted and made the client unable to connect: a member's client port uses
    cluster id 0 and no MAC. Now they are refused as unknown arguments, before any socket."""
    import pytest
    from aeronpy import ClusterClient
    for option in ({"cluster_id": 7}, {"secret": b"k"}):
        with pytest.raises(TypeError):
            ClusterClient.open("127.0.0.1:9", **option)


def test_a_connect_nobody_answers_says_so():
    """It said only 'no session ... within 0.3s'; a user could not tell a dead cluster from
    one that answered without giving a session."""
    import pytest
    from aeronpy import ClusterClient, NotConnectedError
    from aeronpy.testing.process_cluster import free_udp_ports
    port = free_udp_ports(1)[0]
    with pytest.raises(NotConnectedError, match="no member answered .* reach this client at 127.0.0.1:"):
        ClusterClient.connect(f"127.0.0.1:{port}", timeout_s=0.3)
