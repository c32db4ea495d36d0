"""Configuration mistakes that used to surface as tracebacks at start (or hang): each is a
`ConfigError` naming the key, and ``aeronpy node`` exits 2 with one line."""
import os
import subprocess
import sys

import pytest

from aeronpy.cluster.config import SECRET_MAX_BYTES, NodeConfig
from aeronpy.errors import ConfigError
from aeronpy.testing.process_cluster import child_env, free_udp_ports

from opsfiles import make_special

TIMEOUT_S = 30


def members(host1: str = "127.0.0.1") -> list:
    ports = free_udp_ports(4)
    return [{"id": 0, "host": "127.0.0.1", "consensus_port": ports[0], "ingress_port": ports[1]},
            {"id": 1, "host": host1, "consensus_port": ports[2], "ingress_port": ports[3]}]


def config(tmp_path, **kw) -> NodeConfig:
    kw.setdefault("members", members())
    return NodeConfig(cluster_id=7, member_id=0, data_dir=str(tmp_path / "d"), **kw)


def toml_file(tmp_path, text: str = "", host1: str = "127.0.0.1") -> str:
    lines = ["cluster_id = 7", f'data_dir = "{tmp_path}/data-{{member_id}}"', text]
    for m in members(host1):
        lines += ["[[members]]"] + [f"{k} = {v!r}".replace("'", '"') for k, v in m.items()]
    path = tmp_path / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def node_cli(tmp_path, config_path: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "aeronpy", "node", "--config", config_path, "--member-id", "0",
            "--service", "aeronpy.testing.services:CounterService"]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S,
                              env=child_env(str(tmp_path)), cwd=str(tmp_path),
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"aeronpy node did not exit within {TIMEOUT_S} s (it blocked or started)")


def assert_config_error_line(out: subprocess.CompletedProcess, key: str) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"aeronpy node: configuration error: {key}: "), lines[0]
    return lines[0]


# -- secret ----------------------------------------------------------------------------------------

def test_a_secret_of_64_bytes_is_accepted(tmp_path):
    assert config(tmp_path, secret="k" * SECRET_MAX_BYTES).secret == b"k" * 64


@pytest.mark.parametrize("secret", ["k" * 65, "0123456789abcdef" * 8, "é" * 33])
def test_a_secret_longer_than_64_bytes_is_refused_at_load(tmp_path, secret):
    with pytest.raises(ConfigError) as info:
        config(tmp_path, secret=secret)
    assert info.value.key == "secret"
    assert f"is {len(secret.encode())} bytes" in str(info.value) and "64" in str(info.value)


def test_the_cli_refuses_a_long_secret_with_status_2(tmp_path):
    path = toml_file(tmp_path, 'secret = "' + "ab" * 64 + '"')
    line = assert_config_error_line(node_cli(tmp_path, path), "secret")
    assert "128 bytes" in line and "64" in line


def test_the_documented_limit_is_the_frame_macs():
    from aeronpy import _frame
    _frame._mac_factory(b"k" * SECRET_MAX_BYTES)
    with pytest.raises(ValueError):
        _frame._mac_factory(b"k" * (SECRET_MAX_BYTES + 1))
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs",
                           "configuration.md")) as f:
        assert "1 to 64 bytes" in f.read()


# -- member hosts --------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["::1", "[::1]", "2001:db8::5"])
def test_an_ipv6_member_beside_an_ipv4_one_is_refused_at_load(tmp_path, host):
    """A socket has one address family: the IPv4 member could never reach this one."""
    with pytest.raises(ConfigError) as info:
        config(tmp_path, members=members(host))
    assert info.value.key == "members[1].host"
    assert "IPv6" in str(info.value) and "one address family" in str(info.value)


@pytest.mark.parametrize("host, needle", [
    ("fe80::1", "link-local"), ("fe80::1%lo", "scoped"), ("::ffff:127.0.0.1", "IPv4-mapped")])
def test_ipv6_addresses_the_transport_cannot_name_are_refused_at_load(tmp_path, host, needle):
    with pytest.raises(ConfigError) as info:
        config(tmp_path, members=[dict(m, host=host) for m in members()])
    assert info.value.key == "members[0].host"
    assert needle in str(info.value)


def test_an_all_ipv6_cluster_is_accepted_and_startable(tmp_path):
    cfg = config(tmp_path, members=[dict(m, host=h) for m, h in zip(members(), ["::1", "[::1]"])])
    assert [m.host for m in cfg.members] == ["::1", "::1"]        # brackets dropped
    assert cfg.ingress_endpoints == ",".join(f"[::1]:{m.ingress_port}" for m in cfg.members)
    cfg.check_startable()


def test_a_name_that_resolves_to_the_other_family_is_refused_before_start(tmp_path):
    """Names are looked up at start: "localhost" is 127.0.0.1, beside a member at ::1."""
    cfg = config(tmp_path, members=[dict(m, host=h) for m, h in zip(members(), ["::1", "localhost"])])
    with pytest.raises(ConfigError) as info:
        cfg.check_startable()
    assert info.value.key == "members[0].host"
    assert "resolves to an IPv6 address" in str(info.value)


@pytest.mark.parametrize("host", ["no-such-host.invalid", "a" * 300])
def test_a_member_host_that_does_not_resolve_is_refused_before_start(tmp_path, host):
    cfg = config(tmp_path, members=members(host))
    with pytest.raises(ConfigError) as info:
        cfg.check_startable()
    assert info.value.key == "members[1].host"
    assert "cannot resolve" in str(info.value)


def test_resolvable_hosts_pass(tmp_path):
    config(tmp_path, members=members("localhost")).check_startable()


@pytest.mark.parametrize("host, needle", [("::1", "one address family"),
                                          ("no-such-host.invalid", "cannot resolve")])
def test_the_cli_refuses_a_bad_member_host_with_status_2(tmp_path, host, needle):
    line = assert_config_error_line(node_cli(tmp_path, toml_file(tmp_path, host1=host)),
                                    "members[1].host")
    assert needle in line


# -- the file itself -----------------------------------------------------------------------------

def test_deeply_nested_toml_is_a_config_error(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as info:
        NodeConfig.from_toml(path, member_id=0)
    assert info.value.key == "<config>" and "nested too deeply" in str(info.value)
    assert_config_error_line(node_cli(tmp_path, str(path)), "<config>")


def test_a_config_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'cluster_id = 7\nsecret = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        NodeConfig.from_toml(path, member_id=0)


def test_a_huge_config_file_is_not_read(tmp_path):
    path = tmp_path / "huge.toml"
    path.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    with pytest.raises(ConfigError, match="bytes at most"):
        NodeConfig.from_toml(path, member_id=0)


@pytest.mark.parametrize("kind", ["fifo", "dir", "devzero"])
def test_a_config_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path, kind):
    path = str(tmp_path / "cluster.toml")
    make_special(path, kind)
    line = assert_config_error_line(node_cli(tmp_path, path), "<config>")
    assert path in line and "not a regular file" in line


def test_a_regular_config_still_loads(tmp_path):
    cfg = NodeConfig.from_toml(toml_file(tmp_path, 'secret = "s3cret"'), member_id=0)
    assert cfg.secret == b"s3cret" and len(cfg.members) == 2


def test_nesting_is_refused_whatever_the_recursion_limit(tmp_path):
    """The refusal came from the parser's RecursionError, so it depended on the process's
    recursion limit: with it raised (an application, or mypy run in the same process) a
    5000-deep array parsed and was refused as an unknown key instead, after a long parse."""
    import subprocess
    import sys
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    code = ("import sys; sys.setrecursionlimit(10**6)\n"
            "from aeronpy.cluster.config import NodeConfig\n"
            "from aeronpy.errors import ConfigError\n"
            f"try:\n    NodeConfig.from_toml({str(path)!r}, member_id=0)\n"
            "except ConfigError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "nested too deeply" in done.stdout, done.stdout + done.stderr


def test_brackets_in_strings_and_comments_do_not_count_as_nesting():
    from aeronpy.cluster.config import CONFIG_MAX_NESTING, _nesting_depth
    deep = "[" * (CONFIG_MAX_NESTING + 5)
    text = (f'a = "{deep}"\nb = \'{deep}\'\n# {deep}\nc = """x\\"""{deep}"""\n'
            f"d = '''{deep}'''\ne = [[1, 2], {{f = [3]}}]\n[t]\n[[u]]\n")
    assert _nesting_depth(text) == 3
    assert _nesting_depth("x = " + "[" * 70 + "]" * 70) == 70
