"""NodeConfig: loading, defaults, and one ConfigError naming the key for every kind of mistake."""
import dataclasses
import os
import re
import socket

import pytest

from aeronpy.cluster.config import KEY_DOCS, NodeConfig
from aeronpy.errors import ConfigError
from aeronpy.testing.process_cluster import free_udp_ports

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "configuration.md")


def members(n=3, base=20100, host="127.0.0.1"):
    return [{"id": i, "host": host, "consensus_port": base + 10 * i,
             "ingress_port": base + 10 * i + 1} for i in range(n)]


def raw(**changes):
    d = {"cluster_id": 7, "members": members()}
    d.update(changes)
    return d


def write_toml(path, text):
    path.write_text(text)
    return str(path)


TOML = """
cluster_id = 7
data_dir = "{dir}/node-{{member_id}}"
election_timeout_ms = 300
secret = "s3cret-key"
[[members]]
id = 0
host = "127.0.0.1"
consensus_port = 20100
ingress_port = 20101
[[members]]
id = 1
host = "127.0.0.1"
consensus_port = 20110
ingress_port = 20111
admin_port = 20112
"""


def test_from_toml_reads_members_and_substitutes_member_id(tmp_path):
    path = write_toml(tmp_path / "c.toml", TOML.format(dir=tmp_path))
    cfg = NodeConfig.from_toml(path, member_id=1)
    assert cfg.member_id == 1 and cfg.cluster_id == 7
    assert cfg.data_dir == f"{tmp_path}/node-1"
    assert cfg.election_timeout_ms == 300
    assert cfg.secret == b"s3cret-key"
    assert cfg.member.admin_port == 20112 and cfg.member.consensus_endpoint == ("127.0.0.1", 20110)
    assert [p.id for p in cfg.peers] == [0]
    assert cfg.ingress_endpoints == "127.0.0.1:20101,127.0.0.1:20111"
    assert "s3cret" not in repr(cfg) and cfg.to_dict()["secret"] == "<set>"


def test_overrides_win_over_the_file(tmp_path):
    path = write_toml(tmp_path / "c.toml", TOML.format(dir=tmp_path))
    cfg = NodeConfig.from_toml(path, member_id=0, data_dir=str(tmp_path / "x"), idle_strategy="yield")
    assert cfg.data_dir == str(tmp_path / "x") and cfg.idle_strategy == "yield"


def test_documented_defaults():
    cfg = NodeConfig.from_dict(raw(), member_id=0)
    assert (cfg.election_timeout_ms, cfg.heartbeat_interval_ms, cfg.leader_heartbeat_timeout_ms,
            cfg.session_timeout_ms) == (200, 50, 400, 10000)
    assert cfg.idle_strategy == "backoff" and cfg.mtu_bytes == 1408 and cfg.file_sync == "none"
    assert cfg.metrics_http_port is None and cfg.secret is None and cfg.log_level == "INFO"
    assert cfg.data_dir == os.path.abspath("aeronpy-data/member-0")


def test_a_relative_data_dir_is_made_absolute_when_read(tmp_path, monkeypatch):
    """An embedding application that changes its working directory later: the node's files
    were looked for (and new segments made) under the new one (a review)."""
    monkeypatch.chdir(tmp_path)
    cfg = NodeConfig.from_dict(raw(data_dir="data/m{member_id}"), member_id=2)
    monkeypatch.chdir("/")
    assert cfg.data_dir == str(tmp_path / "data" / "m2")


def test_frozen_and_replace_revalidates():
    cfg = NodeConfig.from_dict(raw(), member_id=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mtu_bytes = 9000
    assert cfg.replace(mtu_bytes=9000).mtu_bytes == 9000
    with pytest.raises(ConfigError) as e:
        cfg.replace(mtu_bytes=10)
    assert e.value.key == "mtu_bytes"


def test_names_are_case_folded():
    cfg = NodeConfig.from_dict(raw(log_level="debug", file_sync="FULL"), member_id=0)
    assert cfg.log_level == "DEBUG" and cfg.file_sync == "full"


def _dup_member():
    m = members()
    m[2]["id"] = 0
    return m


def _dup_port_across_members():
    m = members()
    m[1]["consensus_port"] = m[0]["consensus_port"]
    return m


def _dup_port_within_member():
    m = members()
    m[0]["ingress_port"] = m[0]["consensus_port"]
    return m


def _member_key(key, value, i=0):
    m = members()
    m[i][key] = value
    return m


def _member_missing(key):
    m = members()
    del m[1][key]
    return m


BAD = [
    # (changes to the raw config, member_id, expected key, words the message must contain)
    ({"election_timout_ms": 3}, 0, "election_timout_ms", ["unknown", "election_timeout_ms"]),
    ({"members": _member_key("hots", "x")}, 0, "members[0].hots", ["unknown", "'host'"]),
    ({"members": _member_missing("host")}, 0, "members[1].host", ["missing"]),
    ({"members": _member_key("host", "0.0.0.0")}, 0, "members[0].host", ["wildcard"]),
    ({"members": _member_key("host", "::", 1)}, 0, "members[1].host", ["wildcard"]),
    ({"members": _member_key("host", "0")}, 0, "members[0].host", ["wildcard"]),
    ({"members": _member_key("host", "h\x00")}, 0, "members[0].host", ["non-empty host"]),
    ({"data_dir": "d\x00"}, 0, "data_dir", ["non-empty path"]),
    ({"members": _member_key("host", "::0", 1)}, 0, "members[1].host", ["wildcard"]),
    ({"members": _dup_member()}, 0, "members[2].id", ["duplicate member id 0"]),
    ({}, 5, "member_id", ["5", "[0, 1, 2]"]),
    ({}, None, "member_id", ["missing"]),
    ({"cluster_id": None}, 0, "cluster_id", ["integer"]),
    ({"members": []}, 0, "members", ["non-empty"]),
    ({"members": {"id": 0}}, 0, "members", ["list"]),
    ({"members": [1, 2]}, 0, "members[0]", ["table"]),
    ({"election_timeout_ms": "200"}, 0, "election_timeout_ms", ["integer", "str"]),
    ({"heartbeat_interval_ms": True}, 0, "heartbeat_interval_ms", ["integer", "bool"]),
    ({"session_timeout_ms": 0}, 0, "session_timeout_ms", ["between"]),
    ({"mtu_bytes": 100}, 0, "mtu_bytes", ["between 512 and 65504"]),
    ({"reply_cache_messages": -1}, 0, "reply_cache_messages", ["between"]),
    ({"segment_bytes": 1.5}, 0, "segment_bytes", ["integer"]),
    ({"snapshots_to_keep": 0}, 0, "snapshots_to_keep", ["between"]),
    ({"members": _member_key("consensus_port", 70000)}, 0, "members[0].consensus_port", ["65535"]),
    ({"members": _member_key("id", -1, 1)}, 0, "members[1].id", ["between"]),
    ({"file_sync": "fast"}, 0, "file_sync", ["'none'", "'data'", "'full'"]),
    ({"idle_strategy": "busyspin"}, 0, "idle_strategy", ["did you mean 'busy-spin'"]),
    ({"log_level": "loud"}, 0, "log_level", ["DEBUG"]),
    ({"secret": ""}, 0, "secret", ["non-empty"]),
    ({"data_dir": ""}, 0, "data_dir", ["non-empty"]),
    ({"heartbeat_interval_ms": 400}, 0, "heartbeat_interval_ms", ["leader_heartbeat_timeout_ms"]),
    ({"heartbeat_interval_ms": 150, "election_timeout_ms": 100}, 0, "heartbeat_interval_ms",
     ["election_timeout_ms"]),
    ({"session_timeout_ms": 600}, 0, "session_timeout_ms", ["failover"]),
    ({"members": _dup_port_across_members()}, 0, "members[1].consensus_port",
     ["127.0.0.1:20100", "members[0].consensus_port"]),
    ({"members": _dup_port_within_member()}, 0, "members[0].ingress_port", ["already used"]),
    ({"metrics_http_port": 20100}, 0, "metrics_http_port", ["consensus_port"]),
    ({"cpu_affinity": "0,1"}, 0, "cpu_affinity", ["list of CPU ids", "str"]),
    ({"cpu_affinity": 3}, 0, "cpu_affinity", ["list of CPU ids", "int"]),
    ({"cpu_affinity": {0: 1}}, 0, "cpu_affinity", ["list of CPU ids", "dict"]),
    ({"cpu_affinity": []}, 0, "cpu_affinity", ["at least one CPU"]),
    ({"cpu_affinity": [0, "1"]}, 0, "cpu_affinity", ["integers", "str '1'"]),
    ({"cpu_affinity": [True]}, 0, "cpu_affinity", ["integers", "bool"]),
    ({"cpu_affinity": [1.0]}, 0, "cpu_affinity", ["integers", "float"]),
    ({"cpu_affinity": [0, -1]}, 0, "cpu_affinity", ["non-negative", "-1"]),
    ({"cpu_affinity": [0, 1, 0]}, 0, "cpu_affinity", ["CPU 0 is listed twice"]),
    ({"cpu_afinity": [0]}, 0, "cpu_afinity", ["unknown", "'cpu_affinity'"]),
]


@pytest.mark.parametrize("changes, member_id, key, words", BAD,
                         ids=[b[2] + "-" + str(i) for i, b in enumerate(BAD)])
def test_every_validation_error_names_its_key(changes, member_id, key, words):
    d = raw(**changes)
    if changes.get("cluster_id", 0) is None:
        d["cluster_id"] = None
    with pytest.raises(ConfigError) as e:
        NodeConfig.from_dict(d, member_id=member_id)
    assert e.value.key == key
    message = str(e.value)
    assert message.startswith(key + ": ")
    for word in words:
        assert word in message, (word, message)


def test_same_port_on_different_hosts_is_fine():
    m = members()
    m[1]["host"] = "10.0.0.2"
    m[1]["consensus_port"] = m[0]["consensus_port"]
    assert NodeConfig.from_dict(raw(members=m), member_id=1).member.host == "10.0.0.2"


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        NodeConfig.from_toml(write_toml(tmp_path / "bad.toml", "cluster_id = = 7\n"), member_id=0)
    with pytest.raises(ConfigError, match="no such configuration file"):
        NodeConfig.from_toml(tmp_path / "absent.toml", member_id=0)


def _startable_config(tmp_path, **changes):
    # distinct ports: two port-0 binds in a row may be given the same port (a CI run failed so)
    ports = free_udp_ports(2)
    m = [{"id": 0, "host": "127.0.0.1", "consensus_port": ports[0], "ingress_port": ports[1]},
         {"id": 1, "host": "127.0.0.1", "consensus_port": 1, "ingress_port": 2}]
    return NodeConfig.from_dict(raw(members=m, data_dir=str(tmp_path / "d"), **changes), member_id=0)


def test_check_startable_passes_and_creates_the_data_dir(tmp_path):
    cfg = _startable_config(tmp_path)
    cfg.check_startable()
    assert os.path.isdir(cfg.data_dir) and os.listdir(cfg.data_dir) == []


@pytest.mark.parametrize("which", ["consensus_port", "ingress_port"])
def test_port_in_use_names_key_and_port(tmp_path, which):
    cfg = _startable_config(tmp_path)
    port = getattr(cfg.member, which)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))
        with pytest.raises(ConfigError) as e:
            cfg.check_startable()
    assert e.value.key == f"members[0].{which}"
    assert f"UDP port {port} on 127.0.0.1 is already in use" in str(e.value)


def test_metrics_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = _startable_config(tmp_path, metrics_http_port=port)
        with pytest.raises(ConfigError) as e:
            cfg.check_startable()
    assert e.value.key == "metrics_http_port" and str(port) in str(e.value)


def test_host_not_on_this_machine(tmp_path):
    cfg = _startable_config(tmp_path)
    m = [dict(dataclasses.asdict(x)) for x in cfg.members]
    m[0]["host"] = "192.0.2.1"  # TEST-NET-1: never local
    cfg = cfg.replace(members=m)
    with pytest.raises(ConfigError) as e:
        cfg.check_startable()
    assert e.value.key == "members[0].consensus_port" and "192.0.2.1" in str(e.value)


def test_uncreatable_data_dir_under_a_regular_file(tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    cfg = _startable_config(tmp_path).replace(data_dir=str(blocker / "data"))
    with pytest.raises(ConfigError) as e:
        cfg.check_startable()
    assert e.value.key == "data_dir" and "cannot create" in str(e.value)


def test_data_dir_that_is_a_file(tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    cfg = _startable_config(tmp_path).replace(data_dir=str(blocker))
    with pytest.raises(ConfigError) as e:
        cfg.check_startable()
    assert e.value.key == "data_dir"


def test_every_key_is_documented():
    fields = [f.name for f in dataclasses.fields(NodeConfig)]
    assert [k for k, _, _ in KEY_DOCS] == fields
    with open(DOCS) as f:
        docs = f.read()
    for key in fields:
        assert f"`{key}`" in NodeConfig.__doc__, key
        assert re.search(rf"^\| `{key}` \|", docs, re.M), f"{key} missing from docs/configuration.md"
    for key in ("id", "host", "consensus_port", "ingress_port", "admin_port"):
        assert f"`{key}`" in docs


def test_reply_cache_messages_reaches_the_consensus_module(tmp_path):
    """The node key sizes the replicated reply cache (raise it with the clients' window)."""
    from aeronpy.cluster.node import ClusterNode
    from aeronpy.testing.process_cluster import free_udp_ports
    from aeronpy.testing.services import EchoService
    ports = free_udp_ports(2)
    cfg = NodeConfig(cluster_id=1, member_id=0, data_dir=str(tmp_path / "n0"), log_level="WARNING",
                     reply_cache_messages=2048,
                     members=[{"id": 0, "host": "127.0.0.1", "consensus_port": ports[0],
                               "ingress_port": ports[1]}])
    node = ClusterNode(cfg, [EchoService()])
    try:
        assert node.module.config.reply_cache_messages == 2048
    finally:
        node.close()
    assert NodeConfig(cluster_id=1, member_id=0, members=cfg.members).reply_cache_messages == 256


def test_docs_keys_table_is_the_generated_one():
    """docs/configuration.md carries KEY_DOCS verbatim, so the two cannot drift apart."""
    from aeronpy.cluster.config import _key_table
    with open(DOCS) as f:
        assert _key_table() in f.read()


# -- cpu_affinity -------------------------------------------------------------------------------

def test_cpu_affinity_defaults_to_none_and_is_normalised_to_a_tuple():
    assert NodeConfig.from_dict(raw(), member_id=0).cpu_affinity is None
    cfg = NodeConfig.from_dict(raw(cpu_affinity=[3, 1]), member_id=0)
    assert cfg.cpu_affinity == (3, 1) and type(cfg.cpu_affinity) is tuple
    assert cfg.replace(cpu_affinity=(0,)).cpu_affinity == (0,)
    assert cfg.replace(cpu_affinity=None).cpu_affinity is None


def test_cpu_affinity_from_toml_and_override(tmp_path):
    path = write_toml(tmp_path / "c.toml", TOML.format(dir=tmp_path).replace(
        "secret =", "cpu_affinity = [2, 3]\nsecret ="))
    assert NodeConfig.from_toml(path, member_id=0).cpu_affinity == (2, 3)
    assert NodeConfig.from_toml(path, member_id=0, cpu_affinity=[0]).cpu_affinity == (0,)


needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"),
                                    reason="os.sched_getaffinity/sched_setaffinity are Linux-only")


@needs_affinity
def test_check_startable_accepts_the_cpus_this_process_may_use(tmp_path):
    allowed = sorted(os.sched_getaffinity(0))
    _startable_config(tmp_path, cpu_affinity=allowed).check_startable()
    _startable_config(tmp_path, cpu_affinity=allowed[-1:]).check_startable()


@needs_affinity
def test_check_startable_rejects_a_cpu_this_process_may_not_use(tmp_path):
    allowed = os.sched_getaffinity(0)
    assert 4096 not in allowed
    cfg = _startable_config(tmp_path, cpu_affinity=[min(allowed), 4096, 4097])
    with pytest.raises(ConfigError) as e:
        cfg.check_startable()
    assert e.value.key == "cpu_affinity"
    message = str(e.value)
    assert "4096, 4097 not available to this process" in message
    assert f"CPU(s) {min(allowed)}," not in message      # only the missing ones are named
    assert not os.path.exists(cfg.data_dir)   # refused before anything was created


def test_check_startable_says_pinning_needs_linux(tmp_path, monkeypatch):
    cfg = _startable_config(tmp_path, cpu_affinity=[0])
    monkeypatch.delattr(os, "sched_setaffinity", raising=False)
    with pytest.raises(ConfigError) as e:
        cfg.check_startable()
    assert e.value.key == "cpu_affinity" and "needs Linux" in str(e.value)
    _startable_config(tmp_path).check_startable()     # without the key nothing is asked of the OS


def test_cpu_list_format():
    from aeronpy.cluster.config import _cpu_list
    assert _cpu_list({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert _cpu_list({3}) == "3"


# ------------------------------------------------------------------ any value, a clear error
_ODD_VALUES = [None, True, False, 0, -1, 1, 2**40, -2**70, 2**70, 1.5, float("nan"), float("inf"),
               "", "x", "none", "data", "0", "batch", [], [1], {}, {"a": 1}, "127.0.0.1", "\x00",
               "é", "0.0.0.0"]


def _config_fuzz(trials: int, seed: int, data_dir: str) -> list:
    """Random odd values in random keys (and member keys): what escapes that is not a
    ConfigError, as (type, message)."""
    import random as _random
    rng = _random.Random(seed)
    keys = [k for k, *_ in KEY_DOCS] + ["bogus"]
    escaped = []
    for _ in range(trials):
        raw = {"cluster_id": 7, "data_dir": data_dir + "/n{member_id}", "members": members()}
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(keys)
            if key == "members" and rng.random() < 0.7:
                member = rng.choice(raw["members"]) if isinstance(raw["members"], list) else None
                if isinstance(member, dict):
                    member[rng.choice(["id", "host", "consensus_port", "ingress_port",
                                       "admin_port", "x"])] = rng.choice(_ODD_VALUES)
                    continue
            raw[key] = rng.choice(_ODD_VALUES)
        try:
            NodeConfig.from_dict(raw, member_id=rng.choice([0, 1, 5, None, "0", -1]))
        except ConfigError:
            pass
        except Exception as exc:  # the defect this test looks for
            escaped.append((type(exc).__name__, str(exc)))
    return escaped


def test_any_odd_value_anywhere_gets_a_config_error(tmp_path):
    assert _config_fuzz(3000, 1, str(tmp_path)) == []


def test_negative_control_a_validator_that_raises_is_found(tmp_path, monkeypatch):
    from aeronpy.cluster import config as config_module
    real = config_module._is_wildcard

    def raising(host):            # as a check that lets an odd host's ValueError out would
        if not host.isascii():
            raise ValueError("not an address")
        return real(host)
    monkeypatch.setattr(config_module, "_is_wildcard", raising)
    # a few seeds: whether one seed's course reaches an odd host depends on how many keys
    # there are (a new key moved seed 1's)
    assert any(("ValueError", "not an address") in _config_fuzz(3000, seed, str(tmp_path))
               for seed in range(1, 6))


def test_stream_heartbeat_interval_reaches_every_stream(tmp_path):
    """How soon a lost lone datagram is exposed (a stream HEARTBEAT after unacknowledged data):
    20 ms fixed before; a packet-loss trial put the p99 at 1 % loss at 21 ms because of it. The
    default is 5 ms since a STATUS rides with each reply (2026-11-28)."""
    from aeronpy import ClientConfig, ClusterClient
    from tests.ops.opsfiles import one_member_node
    node = one_member_node(tmp_path, stream_heartbeat_interval_ms=3)
    try:
        assert node.consensus.config.heartbeat_interval_ns == 3_000_000
        assert node.ingress.config.heartbeat_interval_ns == 3_000_000
        client = ClusterClient.open(node.config.ingress_endpoints,
                                    config=ClientConfig(stream_heartbeat_interval_ns=2_000_000))
        try:
            assert client._transport._udp.config.heartbeat_interval_ns == 2_000_000
        finally:
            client.close()
    finally:
        node.close()
    assert NodeConfig.from_dict(raw(), member_id=0).stream_heartbeat_interval_ms == 5
    assert ClientConfig().stream_heartbeat_interval_ns == 5_000_000
    for bad in (0, 1001, 2.5):
        with pytest.raises(ConfigError) as e:
            NodeConfig.from_dict(raw(stream_heartbeat_interval_ms=bad), member_id=0)
        assert e.value.key == "stream_heartbeat_interval_ms"
    with pytest.raises(ValueError):
        ClientConfig(stream_heartbeat_interval_ns=0)
