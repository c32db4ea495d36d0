"""Host lookups that hang (a dead DNS server: the system resolver waits for many seconds) no
longer hang the tool past its ``--timeout``, nor a node's start-up check past a fixed limit:
each says which host it could not look up. No real DNS: the resolver is a stub that blocks."""
from __future__ import annotations

import _socket
import socket
import threading

import pytest

from aeronpy.cluster import admin_client, config
from aeronpy.cluster.admin_client import AdminError
from aeronpy.cluster.config import NodeConfig
from aeronpy.errors import ConfigError

BLOCKED = "dns-hangs.example"


@pytest.fixture
def hung_resolver(monkeypatch):
    """Lookups of BLOCKED block (at most 20 s, then fail as a resolver would); others pass."""
    release = threading.Event()
    calls = []

    def wrap(real):
        def lookup(host, *args, **kwargs):
            if host == BLOCKED:
                calls.append(host)
                release.wait(20)
                raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
            return real(host, *args, **kwargs)
        return lookup
    for module in (socket, _socket):      # the compiled transport calls _socket's own
        monkeypatch.setattr(module, "gethostbyname", wrap(module.gethostbyname))
        monkeypatch.setattr(module, "getaddrinfo", wrap(module.getaddrinfo))
    yield calls
    release.set()                         # the abandoned lookup threads end now


def test_the_tools_request_gives_up_on_a_hung_lookup_within_its_timeout(hung_resolver):
    endpoints = ["127.0.0.1:1", f"{BLOCKED}:20111"]
    with pytest.raises(AdminError) as exc:
        admin_client.admin_request(endpoints, "127.0.0.1:1", 1, b"", timeout_s=0.3)
    assert hung_resolver, "the stub was not called"
    message = str(exc.value)
    assert BLOCKED in message and "did not finish within 0.3 s" in message, message


def test_a_lookup_that_fails_is_named_at_once(monkeypatch):
    def fail(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    for module in (socket, _socket):
        monkeypatch.setattr(module, "gethostbyname", fail)
    with pytest.raises(AdminError, match="cannot resolve 'nowhere.example'.*not known"):
        admin_client.admin_request(["nowhere.example:20101"], "nowhere.example:20101", 1, b"",
                                   timeout_s=5.0)


def config_with(host: str, tmp_path) -> NodeConfig:
    members = [{"id": 0, "host": "127.0.0.1", "consensus_port": 1, "ingress_port": 2},
               {"id": 1, "host": host, "consensus_port": 3, "ingress_port": 4}]
    return NodeConfig(cluster_id=7, members=members, member_id=0, data_dir=str(tmp_path / "d"))


def test_the_start_check_gives_up_on_a_hung_lookup_after_its_limit(hung_resolver, monkeypatch,
                                                                   tmp_path):
    assert config.HOST_LOOKUP_TIMEOUT_S == 10.0           # the documented limit
    monkeypatch.setattr(config, "HOST_LOOKUP_TIMEOUT_S", 0.3)
    with pytest.raises(ConfigError) as exc:
        config_with(BLOCKED, tmp_path).check_startable()
    assert hung_resolver
    assert exc.value.key == "members[1].host"
    assert BLOCKED in str(exc.value) and "did not finish within 0.3 s" in str(exc.value)


def test_the_port_check_lookup_is_bounded_too(hung_resolver, monkeypatch):
    monkeypatch.setattr(config, "HOST_LOOKUP_TIMEOUT_S", 0.3)
    with pytest.raises(ConfigError) as exc:
        config._probe_port("members[0].ingress_port", BLOCKED, 20101, socket.SOCK_DGRAM)
    assert exc.value.key == "members[0].ingress_port" and BLOCKED in str(exc.value)
    assert "did not finish within 0.3 s" in str(exc.value)
