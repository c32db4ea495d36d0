"""Endpoint spelling (``host:port``, ``[ipv6]:port``) shared by members, clients and tools,
and the address a client binds for each family."""
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aeronpy.client import UdpClientTransport, local_host_for
from aeronpy.endpoints import format_endpoint, resolve, split_endpoint


@pytest.mark.parametrize("endpoint, parts", [
    ("127.0.0.1:20101", ("127.0.0.1", 20101)),
    ("localhost:1", ("localhost", 1)),
    ("[::1]:20101", ("::1", 20101)),
    ("[2001:db8::5]:0", ("2001:db8::5", 0)),
])
def test_endpoints_split(endpoint, parts):
    assert split_endpoint(endpoint) == parts
    assert format_endpoint(*parts) == endpoint


@pytest.mark.parametrize("endpoint, needle", [
    ("::1:20101", "in brackets"),
    ("[::1]20101", "is not '\\[ipv6-address\\]:port'"),
    ("[::1", "is not '\\[ipv6-address\\]:port'"),
    ("[]:5", "is not '\\[ipv6-address\\]:port'"),
    ("20101", "is not 'host:port'"),
    (":20101", "is not 'host:port'"),
    ("h:abc", "port 'abc' is not a number"),
    ("[::1]:x", "port 'x' is not a number"),
    ("h:70000", "out of range"),
])
def test_malformed_endpoints_get_a_clear_error(endpoint, needle):
    with pytest.raises(ValueError, match=needle):
        split_endpoint(endpoint)


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(), st.integers(0, 65535))
def test_format_then_split_gives_the_address_back(address, port):
    assert split_endpoint(format_endpoint(str(address), port)) == (str(address), port)


def test_resolve_takes_addresses_as_given_and_names_by_ipv4_first():
    assert resolve("127.0.0.1") == (socket.AF_INET, "127.0.0.1")
    assert resolve("[::1]") == (socket.AF_INET6, "::1")
    assert resolve("0:0::1") == (socket.AF_INET6, "::1")
    assert resolve("localhost") == (socket.AF_INET, "127.0.0.1")
    with pytest.raises(socket.gaierror):
        resolve("no-such-host.invalid")
    with pytest.raises(socket.gaierror, match="not a valid host name"):
        resolve("a" * 300)


def test_a_name_with_only_an_ipv6_address_resolves_to_it():
    calls = []

    def lookup(fn, *args):
        calls.append(fn.__name__)
        if fn is socket.gethostbyname:
            raise socket.gaierror(socket.EAI_NONAME, "no IPv4 address")
        return [(socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("2001:db8::7", 0, 0, 0))]
    assert resolve("v6only.example", lookup) == (socket.AF_INET6, "2001:db8::7")
    assert calls == ["gethostbyname", "getaddrinfo"]


def test_a_client_of_an_ipv6_loopback_cluster_binds_ipv6_loopback():
    assert local_host_for(["[::1]:20101", "[::1]:20111"]) == "::1"
    assert local_host_for(["127.0.0.1:20101"]) == "127.0.0.1"


def test_a_client_given_both_families_is_refused_before_any_socket():
    with pytest.raises(ValueError, match="mix IPv4 and IPv6"):
        local_host_for(["127.0.0.1:20101", "[::1]:20111"])


def test_a_client_given_an_unusable_ipv6_address_is_refused():
    with pytest.raises(ValueError, match="link-local"):
        local_host_for(["[fe80::1]:20101"])


def test_an_ipv6_client_transport_names_its_endpoint_in_brackets():
    try:
        transport = UdpClientTransport(["[::1]:20101"])
    except OSError as exc:              # no IPv6 on this machine
        pytest.skip(f"no IPv6 loopback: {exc}")
    try:
        host, port = split_endpoint(transport.local_endpoint)
        assert transport.local_endpoint.startswith("[::1]:") and host == "::1" and port > 0
    finally:
        transport.close()


def test_the_admin_tools_look_up_ipv6_endpoints_without_the_resolver():
    import time
    from aeronpy.cluster.admin_client import _look_up
    addresses: dict = {}
    deadline = time.monotonic() + 5
    _look_up("[0:0::1]:7", addresses, deadline, 5)
    _look_up("localhost:8", addresses, deadline, 5)
    assert addresses == {"[0:0::1]:7": "[::1]:7", "localhost:8": "127.0.0.1:8"}
    with pytest.raises(ValueError, match="link-local"):
        _look_up("[fe80::2]:7", addresses, deadline, 5)
