"""The aeronpy command: argument parsing, error messages, node start-up seam, tool commands."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request

import pytest
from promtext import parse

import aeronpy.cli as cli
from aeronpy.cluster.counters import CountersWriter, SlotId
from aeronpy.cluster.nodefiles import ErrorLog
from aeronpy.testing.process_cluster import child_env

MEMBERS = [{"id": i, "host": "127.0.0.1", "consensus_port": 20100 + 10 * i,
            "ingress_port": 20101 + 10 * i} for i in range(3)]


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def config_file(tmp_path):
    # distinct free ports from the shared helper (two port-0 binds may return the same port)
    from aeronpy.testing.process_cluster import free_udp_ports

    ports = free_udp_ports(2)
    path = tmp_path / "cluster.toml"
    path.write_text(textwrap.dedent(f"""
        cluster_id = 7
        data_dir = "{tmp_path}/data-{{member_id}}"
        [[members]]
        id = 0
        host = "127.0.0.1"
        consensus_port = {ports[0]}
        ingress_port = {ports[1]}
        [[members]]
        id = 1
        host = "127.0.0.1"
        consensus_port = 1
        ingress_port = 2
    """))
    return path


@pytest.fixture
def service_module(tmp_path, monkeypatch):
    (tmp_path / "svc_mod.py").write_text(textwrap.dedent("""
        import aeronpy
        class Good(aeronpy.ClusteredService):
            pass
        class NotAService:
            pass
        class Exploding(aeronpy.ClusteredService):
            def __init__(self):
                raise RuntimeError("no database")
        class Outer:
            class Inner(aeronpy.ClusteredService):
                pass
    """))
    (tmp_path / "broken_mod.py").write_text("import json\nraise ImportError('cannot load thing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "svc_mod"


def node_argv(config_file, *services, member_id="0"):
    argv = ["node", "--config", str(config_file), "--member-id", member_id]
    for s in services:
        argv += ["--service", s]
    return argv


@pytest.mark.parametrize("spec, words", [
    ("nocolon", ["expected module:ClassName"]),
    ("no_such_module_xyz:Thing", ["no module named 'no_such_module_xyz'", "PYTHONPATH"]),
    ("svc_mod:Missing", ["has no 'Missing'"]),
    ("svc_mod:NotAService", ["not a subclass of aeronpy.ClusteredService"]),
    ("broken_mod:X", ["importing broken_mod failed", "cannot load thing"]),
    ("svc_mod:Exploding", ["Exploding() raised RuntimeError: no database"]),
])
def test_bad_service_is_one_clear_line(config_file, service_module, capsys, spec, words):
    code, out, err = run(node_argv(config_file, spec), capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"aeronpy node: --service {spec!r}") and err.count("\n") == 1
    for word in words:
        assert word in err


def test_service_loading_accepts_nested_classes(service_module):
    svc = cli.load_service("svc_mod:Outer.Inner")
    assert type(svc).__name__ == "Inner"


def test_bad_config_names_the_key(tmp_path, service_module, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("cluster_id = 7\nheartbeat_interval_ms = 500\n[[members]]\nid = 0\nhost = 'h'\n"
                   "consensus_port = 1\ningress_port = 2\n")
    code, _, err = run(node_argv(bad, "svc_mod:Good"), capsys)
    assert code == 2
    assert err.startswith("aeronpy node: configuration error: heartbeat_interval_ms: ")
    code, _, err = run(node_argv(tmp_path / "absent.toml", "svc_mod:Good"), capsys)
    assert code == 2 and "no such configuration file" in err
    code, _, err = run(node_argv(bad, "svc_mod:Good", member_id="4"), capsys)
    assert code == 2 and "member_id: 4 is not one of the member ids" in err


def test_port_in_use_is_refused_before_start(config_file, service_module, capsys):
    from aeronpy.cluster.config import _toml
    port = _toml.loads(config_file.read_text())["members"][0]["ingress_port"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))
        code, _, err = run(node_argv(config_file, "svc_mod:Good"), capsys)
    assert code == 2 and f"members[0].ingress_port: UDP port {port}" in err


def test_missing_node_agent_is_reported(config_file, service_module, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_cluster_node_class", lambda: None)
    code, _, err = run(node_argv(config_file, "svc_mod:Good"), capsys)
    assert code == 3 and "aeronpy.cluster.node.ClusterNode) is not available" in err


class FakeNode:
    instances = []

    def __init__(self, config, services):
        self.config, self.services, self.calls = config, services, []
        FakeNode.instances.append(self)

    def start(self):
        self.calls.append("start")
        self.closed = True          # stops itself at once

    def close(self):
        self.calls.append("close")


def test_node_is_built_from_config_and_services(config_file, service_module, capsys, monkeypatch,
                                                tmp_path):
    monkeypatch.setattr(cli, "_cluster_node_class", lambda: FakeNode)
    argv = node_argv(config_file, "svc_mod:Good", "svc_mod:Outer.Inner") + [
        "--data-dir", str(tmp_path / "override")]
    code, _, _ = run(argv, capsys)
    node = FakeNode.instances[-1]
    assert code == 0 and node.calls == ["start", "close"]
    assert node.config.member_id == 0 and node.config.data_dir == str(tmp_path / "override")
    assert [type(s).__name__ for s in node.services] == ["Good", "Inner"]
    assert os.path.isdir(tmp_path / "override")


class FailsWhileClosing(FakeNode):
    """A node whose close() meets a failure (the final sync's EIO, a hand-over a service broke)."""
    failure = None

    def close(self):
        super().close()
        self.failure = OSError(5, "Input/output error")


def test_a_failure_met_while_closing_exits_non_zero(config_file, service_module, capsys,
                                                    monkeypatch):
    # the node command read node.failure only while the node ran: one found by close() exited 0
    monkeypatch.setattr(cli, "_cluster_node_class", lambda: FailsWhileClosing)
    code, _, err = run(node_argv(config_file, "svc_mod:Good"), capsys)
    assert code == cli.EXIT_NODE_FAILED and "failed and stopped" in err, (code, err)


def test_sigterm_closes_the_node(config_file, tmp_path):
    script = textwrap.dedent(f"""
        import sys, threading
        sys.path.insert(0, {str(tmp_path)!r})
        open({str(tmp_path / "svc2.py")!r}, "w").write(
            "import aeronpy\\nclass S(aeronpy.ClusteredService):\\n    pass\\n")
        import aeronpy.cli as cli
        class Node:
            def __init__(self, config, services):
                pass
            def start(self):
                print("started", flush=True)
            def close(self):
                print("closed", flush=True)
        cli._cluster_node_class = lambda: Node
        sys.exit(cli.main(["node", "--config", {str(config_file)!r}, "--member-id", "0",
                           "--service", "svc2:S"]))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=child_env(), cwd=tmp_path)
    try:
        first = child.stdout.readline().strip()
        if first != "started":
            child.kill()
            _, err = child.communicate(timeout=20)
            raise AssertionError(f"the node command did not start: {first!r}; stderr:\n{err}")
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=20)
        assert child.returncode == 0 and out.strip() == "closed"
        assert "received SIGTERM: closing" in err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def test_usage_errors_exit_2(capsys):
    for argv in (["tool", "describe"], ["node", "--config", "x"], ["tool", "nope", "--data-dir", "d"], []):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
    capsys.readouterr()


# -- tool ---------------------------------------------------------------------------------------

@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "node0"
    w = CountersWriter(d, member_id=0, cluster_id=7, members=MEMBERS)
    w.values[SlotId.ROLE] = 2
    w.values[SlotId.LEADER_ID] = 0
    w.values[SlotId.LEADERSHIP_TERM] = 4
    w.values[SlotId.COMMIT_INDEX] = 99
    yield str(d), w
    w.close()


def test_describe_human_and_json(data_dir, capsys):
    d, _ = data_dir
    code, out, _ = run(["tool", "describe", "--data-dir", d], capsys)
    assert code == 0
    assert "status       running" in out and "2 (LEADER), term 4, leader member 0" in out
    assert "commit_index 99" in out and "(this node, leader)" in out
    assert "consensus 20110" in out
    code, out, _ = run(["tool", "describe", "--data-dir", d, "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["counters"]["commit_index"] == 99 and data["live"] is True
    assert data["counter_names"]["role"] == "LEADER" and len(data["members"]) == 3


def test_list_members(data_dir, capsys):
    d, _ = data_dir
    code, out, _ = run(["tool", "list-members", "--data-dir", d, "--json"], capsys)
    rows = json.loads(out)["members"]
    assert code == 0 and [r["leader"] for r in rows] == [True, False, False]
    code, out, _ = run(["tool", "list-members", "--data-dir", d], capsys)
    assert out.count("\n") == 3 and "(this node, leader)" in out.splitlines()[0]


def test_is_leader_exit_codes(data_dir, capsys):
    d, w = data_dir
    code, out, _ = run(["tool", "is-leader", "--data-dir", d], capsys)
    assert code == 0 and out.startswith("yes")
    w.values[SlotId.ROLE] = 0
    w.values[SlotId.LEADER_ID] = 2
    code, out, _ = run(["tool", "is-leader", "--data-dir", d, "--json"], capsys)
    assert code == 1 and json.loads(out) == {"is_leader": False, "role": "FOLLOWER", "leader_id": 2,
                                             "leadership_term": 4, "status": "running"}
    w.values[SlotId.ROLE] = 2
    w.close()
    code, out, _ = run(["tool", "is-leader", "--data-dir", d], capsys)
    assert code == 1 and "stopped" in out


def abandon(w):
    """Drop a writer's mapping without marking the file closed, as a crash would."""
    w.values.release()
    w._header.release()
    w._map.close()
    w._file.close()


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stopped_node_dir_describes_what_it_can(tmp_path, capsys):
    d = str(tmp_path / "dead")
    pid = dead_pid()
    w = CountersWriter(d, member_id=1, cluster_id=7, members=MEMBERS, pid=pid)
    w.values[SlotId.COMMIT_INDEX] = 12
    abandon(w)  # the "node" died without closing
    code, out, _ = run(["tool", "describe", "--data-dir", d], capsys)
    assert code == 0 and f"node not running: pid {pid} gone" in out
    assert "last values it published" in out and "commit_index 12" in out
    code, out, _ = run(["tool", "pid", "--data-dir", d], capsys)
    assert code == 1 and f"pid {pid} gone" in out
    code, out, _ = run(["tool", "is-leader", "--data-dir", d], capsys)
    assert code == 1 and "not running" in out


def test_pid_of_running_node(data_dir, capsys):
    d, _ = data_dir
    code, out, _ = run(["tool", "pid", "--data-dir", d], capsys)
    assert code == 0 and out.strip() == str(os.getpid())


def test_errors_command(data_dir, capsys):
    d, _ = data_dir
    code, out, _ = run(["tool", "errors", "--data-dir", d], capsys)
    assert code == 0 and out.strip() == "no errors recorded"
    log = ErrorLog(d)
    log.record("snapshot failed: disk full", now_ns=1_700_000_000_000_000_000)
    log.record("snapshot failed: disk full", now_ns=1_700_000_001_000_000_000)
    log.close()
    code, out, _ = run(["tool", "errors", "--data-dir", d], capsys)
    assert code == 0
    assert out.strip() == ("2023-11-14T22:13:20.000Z  x2     snapshot failed: disk full  "
                           "(last 2023-11-14T22:13:21.000Z)")
    code, out, _ = run(["tool", "errors", "--data-dir", d, "--json"], capsys)
    assert json.loads(out)[0]["count"] == 2


def test_metrics_command_parses(data_dir, capsys):
    d, _ = data_dir
    code, out, _ = run(["tool", "metrics", "--data-dir", d], capsys)
    assert code == 0 and parse(out)["aeronpy_commit_index"]["samples"][0][1] == 99


def test_serve_metrics_option(data_dir, tmp_path):
    d, _ = data_dir
    child = subprocess.Popen([sys.executable, "-m", "aeronpy.cli", "tool", "metrics", "--data-dir",
                              d, "--serve-metrics", "0"], stdout=subprocess.PIPE, text=True,
                             env=child_env(), cwd=tmp_path)
    try:
        line = child.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:")
        url = line.split()[1]
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert parse(resp.read().decode())["aeronpy_leadership_term"]["samples"][0][1] == 4
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=20) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def test_tool_without_counters(tmp_path, capsys):
    code, _, err = run(["tool", "describe", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "no counters.dat" in err
    code, _, err = run(["tool", "metrics", "--data-dir", str(tmp_path / "nope")], capsys)
    assert code == 2 and "nope: it does not exist" in err
    (tmp_path / "afile").write_text("x")
    code, _, err = run(["tool", "describe", "--data-dir", str(tmp_path / "afile")], capsys)
    assert code == 2 and "afile: not a directory" in err and "error log" not in err, err


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        run(["--version"], capsys)
    assert exited.value.code == 0
    from aeronpy import __version__
    assert capsys.readouterr().out.strip() == f"aeronpy {__version__}"


@pytest.mark.parametrize("command", ["suspend", "resume", "shutdown", "abort"])
def test_cluster_actions_on_a_stopped_node_say_so(command, data_dir, capsys):
    d, writer = data_dir
    writer.close()                                   # the node stopped cleanly
    code, out, err = run(["tool", command, "--data-dir", d], capsys)
    assert code == 2 and "member 0 is not running" in err and "node stopped cleanly" in err
    assert out == ""


@pytest.mark.parametrize("command", ["recording-log", "recovery-plan"])
def test_archive_commands_read_a_data_dir_without_a_node(command, data_dir, capsys):
    d, writer = data_dir
    writer.close()
    code, out, _ = run(["tool", command, "--data-dir", d, "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["data_dir"] == d
    assert data.get("entries", []) == [] and data.get("snapshot") is None


@pytest.mark.parametrize("command, modules", [("demo", ["aeronpy.demo"]),
                                              ("bench", ["bench.cluster_bench", "aeronpy.bench"]),
                                              ("backup", ["aeronpy.cluster.backup"])])
def test_passthrough_commands(command, modules, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_import_optional", lambda name: None)
    code, _, err = run([command, "--x"], capsys)
    assert code == 3 and "not available in this build" in err
    for m in modules:
        assert m + ":main" in err
    seen = []

    class Module:
        @staticmethod
        def main(argv):
            seen.append(argv)
            return 5

    monkeypatch.setattr(cli, "_import_optional", lambda name: Module if name == modules[-1] else None)
    assert cli.main([command, "--x", "y"]) == 5 and seen == [["--x", "y"]]


def test_import_optional_distinguishes_absent_from_broken(tmp_path, monkeypatch):
    (tmp_path / "uses_missing.py").write_text("import definitely_not_installed_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli._import_optional("not_here_at_all_xyz") is None
    with pytest.raises(ModuleNotFoundError):
        cli._import_optional("uses_missing")
