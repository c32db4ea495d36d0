"""Second operator-CLI review, configuration: ``aeronpy node`` with bad files and flags exits 2
with one line naming the setting, never a traceback, and never starts on a bad setting it
ignored. The sweep is a guard over what already held; the named tests failed before the fixes."""
import os
import pathlib
import socket
import subprocess
import sys
import tempfile

import pytest

import aeronpy.cli as cli
from aeronpy.cluster.config import NodeConfig
from aeronpy.errors import ConfigError
from aeronpy.testing.process_cluster import child_env, free_udp_ports

SERVICE = "aeronpy.testing.services:CounterService"


class _MustNotStart:
    """The node class while a bad configuration is tried: constructing it is the bug."""

    def __init__(self, config, services):
        raise AssertionError(f"a node was constructed from a bad configuration: {config}")


@pytest.fixture
def no_node(monkeypatch):
    monkeypatch.setattr(cli, "_cluster_node_class", lambda: _MustNotStart)


def write_config(tmp_path, text: str = "", members: str = None) -> str:
    if members is None:
        p = free_udp_ports(4)
        members = "".join(f'[[members]]\nid = {i}\nhost = "127.0.0.1"\nconsensus_port = '
                          f'{p[2 * i]}\ningress_port = {p[2 * i + 1]}\n' for i in range(2))
    path = tmp_path / "cluster.toml"
    path.write_text(f'cluster_id = 7\ndata_dir = "{tmp_path}/data-{{member_id}}"\n'
                    f'{text}\n{members}')
    return str(path)


def node(capsys, config_path: str, *flags: str):
    code = cli.main(["node", "--config", config_path, *flags, "--service", SERVICE])
    out, err = capsys.readouterr()
    return code, err


def assert_one_line(code: int, err: str, key: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"aeronpy node: configuration error: {key}: "), lines[0]
    return lines[0]


# -- fixed ----------------------------------------------------------------------------------------

def test_an_empty_data_dir_flag_is_refused_not_ignored(tmp_path, capsys, no_node):
    # it was dropped as if absent: the node started on the file's data_dir instead
    code, err = node(capsys, write_config(tmp_path), "--member-id", "0", "--data-dir", "")
    assert "must be a non-empty path" in assert_one_line(code, err, "data_dir")


def _same_endpoint_members(port: int) -> str:
    free = free_udp_ports(2)
    return (f'[[members]]\nid = 0\nhost = "127.0.0.1"\nconsensus_port = {port}\n'
            f'ingress_port = {free[0]}\n'
            f'[[members]]\nid = 1\nhost = "localhost"\nconsensus_port = {port}\n'
            f'ingress_port = {free[1]}\n')


@pytest.mark.skipif(socket.gethostbyname("localhost") != "127.0.0.1",
                    reason="localhost does not resolve to 127.0.0.1 here")
def test_two_members_on_one_address_and_port_under_two_names_are_refused(tmp_path, capsys,
                                                                          no_node):
    # 127.0.0.1:P and localhost:P are one socket: member 0 started, sent member 1's frames to
    # itself and logged "dropped frames (unknown_member)" once a second for ever
    (port,) = free_udp_ports(1)
    path = write_config(tmp_path, members=_same_endpoint_members(port))
    cfg = NodeConfig.from_toml(path, member_id=0)
    with pytest.raises(ConfigError) as info:
        cfg.check_startable()
    assert info.value.key == "members[1].consensus_port"
    assert "members[0].consensus_port" in str(info.value) and "127.0.0.1" in str(info.value)
    code, err = node(capsys, path, "--member-id", "0")
    line = assert_one_line(code, err, "members[1].consensus_port")
    assert f"localhost:{port}" in line


def test_members_on_distinct_addresses_with_one_port_still_pass(tmp_path):
    (port,) = free_udp_ports(1)
    free = free_udp_ports(2)
    members = (f'[[members]]\nid = 0\nhost = "127.0.0.1"\nconsensus_port = {port}\n'
               f'ingress_port = {free[0]}\n'
               f'[[members]]\nid = 1\nhost = "127.0.0.2"\nconsensus_port = {port}\n'
               f'ingress_port = {free[1]}\n')
    NodeConfig.from_toml(write_config(tmp_path, members=members), member_id=0).check_startable()


# -- guards: what already held --------------------------------------------------------------------

SWEEP = [
    ('election_timeout_ms = "200"', (), "election_timeout_ms"),
    ("election_timeout_ms = 200.5", (), "election_timeout_ms"),
    ("election_timeout_ms = true", (), "election_timeout_ms"),
    ("election_timeout_ms = -1", (), "election_timeout_ms"),
    ("election_timeout_ms = 9223372036854775807", (), "election_timeout_ms"),
    ("election_timeout_ms = nan", (), "election_timeout_ms"),
    ("electon_timeout_ms = 200", (), "electon_timeout_ms"),
    ("[extra]\nx = 1", (), "extra"),
    ("metrics_http_port = 0", (), "metrics_http_port"),
    ('file_sync = "always"', (), "file_sync"),
    ("secret = 5", (), "secret"),
    ('cpu_affinity = "0"', (), "cpu_affinity"),
    ("heartbeat_interval_ms = 500", (), "heartbeat_interval_ms"),
    ("", ("--member-id", "-1"), "member_id"),
    ("", ("--member-id", "5"), "member_id"),
    ("", ("--member-id", "99999999999999999999"), "member_id"),
    ("", ("--cpu-affinity", "a,b"), "cpu_affinity"),
    ("", ("--cpu-affinity", "999999"), "cpu_affinity"),
    ("", ("--data-dir", "a\0b"), "data_dir"),
]


@pytest.mark.parametrize("text, flags, key", SWEEP)
def test_each_bad_setting_is_one_line_naming_it(tmp_path, capsys, no_node, text, flags, key):
    if "--member-id" not in flags:
        flags = ("--member-id", "0") + flags
    code, err = node(capsys, write_config(tmp_path, text), *flags)
    assert_one_line(code, err, key)


def test_duplicate_member_ids_and_missing_file_and_data_dir_that_is_a_file(tmp_path, capsys,
                                                                          no_node):
    p = free_udp_ports(4)
    dup = "".join(f'[[members]]\nid = 0\nhost = "127.0.0.1"\nconsensus_port = {p[2 * i]}\n'
                  f'ingress_port = {p[2 * i + 1]}\n' for i in range(2))
    code, err = node(capsys, write_config(tmp_path, members=dup), "--member-id", "0")
    assert "duplicate member id 0" in assert_one_line(code, err, "members[1].id")
    code, err = node(capsys, str(tmp_path / "absent.toml"), "--member-id", "0")
    assert "no such configuration file" in assert_one_line(code, err, "<config>")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    code, err = node(capsys, write_config(tmp_path), "--member-id", "0", "--data-dir", str(a_file))
    assert "is not a directory" in assert_one_line(code, err, "data_dir")


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/setpriv"),
                    reason="needs root to run the node as another user (setpriv)")
def test_unreadable_file_and_unwritable_data_dir_as_an_unprivileged_user():
    # pytest's tmp_path is private to root: a directory of /tmp the other user can enter
    with tempfile.TemporaryDirectory(prefix="aeronpy-review2-") as where:
        os.chmod(where, 0o755)
        path = write_config(pathlib.Path(where))
        read_only = os.path.join(where, "ro")
        os.mkdir(read_only)
        os.chmod(read_only, 0o555)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        # the package as the other user can read it: the checkout (and a CI job's venv, whose
        # editable install points there) may sit in a directory private to root
        import shutil
        import aeronpy
        shutil.copytree(os.path.dirname(os.path.abspath(aeronpy.__file__)),
                        os.path.join(where, "site", "aeronpy"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        for root, dirs, files in os.walk(os.path.join(where, "site")):
            for name in dirs + files:
                os.chmod(os.path.join(root, name), 0o755)
        os.chmod(os.path.join(where, "site"), 0o755)
        env = child_env(PYTHONPATH=os.path.join(where, "site"), PYTHONDONTWRITEBYTECODE="1")

        def run(*flags):
            out = subprocess.run([*nobody, sys.executable, "-m", "aeronpy", "node", "--config",
                                  path, "--member-id", "0", *flags, "--service", SERVICE],
                                 capture_output=True, text=True, timeout=30, env=env,
                                 cwd="/", stdin=subprocess.DEVNULL)
            assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
            assert len(out.stderr.strip().splitlines()) == 1, out.stderr
            return out.stderr

        os.chmod(path, 0o644)
        err = run("--data-dir", read_only)
        assert "data_dir:" in err and "is not writable: Permission denied" in err
        os.chmod(path, 0o600)
        err = run()
        assert "<config>: cannot read" in err and "Permission denied" in err
