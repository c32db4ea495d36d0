"""A FIFO, a link to /dev/zero or a directory where a data dir file belongs: the node and the
tools refuse it with one line naming the file, and never block on it.

Everything that could block on a FIFO runs in a subprocess with a timeout, so a regression
shows as a failed assertion ("hung"), never as a hung test run.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from aeronpy.archive import Archive
from aeronpy.archive.fs import NotARegularFileError, OsFileSystem
from aeronpy.cluster import admin_auth
from aeronpy.cluster.counters import CountersWriter
from aeronpy.cluster.nodefiles import ErrorLog, record_failed_start
from aeronpy.testing.process_cluster import child_env

from opsfiles import make_special, write_one_member_config

TIMEOUT_S = 30
KINDS = ("fifo", "dir", "devzero")
SNAPSHOT_INDEX = 20


def run_bounded(argv, env=None, cwd=None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S,
                              env=env, cwd=cwd, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:     # the child is killed by subprocess.run
        pytest.fail(f"hung for {TIMEOUT_S} s (a read or open without bound): {argv}")


def python_bounded(code: str) -> subprocess.CompletedProcess:
    return run_bounded([sys.executable, "-c", textwrap.dedent(code)], env=child_env(os.getcwd()))


def tool(command: str, data_dir: str, *extra) -> subprocess.CompletedProcess:
    return run_bounded([sys.executable, "-m", "aeronpy", "tool", command, "--data-dir", data_dir,
                        *extra], env=child_env(os.getcwd()))


def assert_one_line_refusal(out: subprocess.CompletedProcess, path: str, code: int = 2) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == code, (out.returncode, out.stderr)
    line = out.stderr.strip().splitlines()[0]
    assert path in line and "not a regular file" in line, out.stderr
    return line


# -- the file layer ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_os_file_system_refuses_what_is_not_a_regular_file(tmp_path, kind):
    path = str(tmp_path / "durable.pos")
    make_special(path, kind)
    out = python_bounded(f"""
        from aeronpy.archive.fs import NotARegularFileError, OsFileSystem
        fs = OsFileSystem()
        for call in (fs.read_file, fs.open_file, lambda p: fs.open_file(p, create=True)):
            try:
                call({path!r})
            except NotARegularFileError as exc:
                assert isinstance(exc, OSError)
                print(exc)
            else:
                print("ACCEPTED")
    """)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and "ACCEPTED" not in out.stdout, out.stdout
    assert all(line.startswith(f"{path} is ") and "not a regular file" in line for line in lines)


def test_os_file_system_still_reads_and_opens_regular_files(tmp_path):
    fs = OsFileSystem()
    path = str(tmp_path / "f")
    with open(path, "wb") as f:
        f.write(b"abc")
    assert fs.read_file(path) == bytearray(b"abc")
    h = fs.open_file(path)
    try:
        assert os.get_blocking(h)          # O_NONBLOCK was only for the open
        assert fs.pread(h, 3, 0) == b"abc"
    finally:
        fs.close(h)
    with pytest.raises(FileNotFoundError):
        fs.read_file(str(tmp_path / "absent"))


# -- a data dir to damage -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A stopped node's data dir: node.state, recording.log, log segments, a snapshot,
    durable.pos, errors.log and a closed counters.dat."""
    from aeronpy._logindex import LogIndex  # noqa: F401 - the archive's in-memory log

    data_dir = str(tmp_path_factory.mktemp("base") / "node0")
    arc = Archive.open(data_dir, file_sync="data", segment_bytes=65536)
    rec = arc.recover()
    arc.save_hard_state(1, 0)
    arc.record_term_start(1, 1)
    log = rec.log
    for i in range(50):
        log.append(1, 16, b"entry %d" % i)
    arc.append_from(log, 1, log.last_index + 1)
    arc.sync()
    writer = arc.begin_snapshot(SNAPSHOT_INDEX, 1)
    writer.write(b"state")
    writer.commit()
    arc.note_commit_index(50)
    arc.sync()
    arc.close()
    errors = ErrorLog(data_dir)
    errors.record("something went wrong once")
    errors.close()
    CountersWriter(data_dir, member_id=0, cluster_id=7).close()
    return data_dir


@pytest.fixture
def data_dir(base_dir, tmp_path):
    import shutil
    target = str(tmp_path / "node0")
    shutil.copytree(base_dir, target)
    return target


def snapshot_name(data_dir: str) -> str:
    return next(n for n in os.listdir(data_dir) if n.endswith(".snap"))


def segment_name(data_dir: str) -> str:
    return sorted(n for n in os.listdir(data_dir) if n.endswith(".seg"))[0]


def test_the_base_data_dir_reads_cleanly(data_dir):
    out = tool("recovery-plan", data_dir, "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["snapshot"]["index"] == SNAPSHOT_INDEX and plan["log_end"] == 50
    assert tool("describe", data_dir).returncode == 0


# -- the tools -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["durable.pos", "node.state", "recording.log", "snapshot",
                                  "segment"])
def test_recovery_plan_refuses_a_special_file_in_one_line(data_dir, name, kind):
    if name == "snapshot":
        name = snapshot_name(data_dir)
    elif name == "segment":
        name = segment_name(data_dir)
    path = os.path.join(data_dir, name)
    make_special(path, kind)
    line = assert_one_line_refusal(tool("recovery-plan", data_dir), path)
    assert line.startswith("aeronpy tool recovery-plan: ")


@pytest.mark.parametrize("kind", KINDS)
def test_recording_log_refuses_a_special_recording_log(data_dir, kind):
    path = os.path.join(data_dir, "recording.log")
    make_special(path, kind)
    assert_one_line_refusal(tool("recording-log", data_dir), path)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", ["describe", "errors"])
def test_describe_and_errors_refuse_a_special_errors_log(data_dir, command, kind):
    path = os.path.join(data_dir, "errors.log")
    make_special(path, kind)
    assert_one_line_refusal(tool(command, data_dir), path)
    out = tool(command, data_dir, "--json")
    assert out.returncode == 2 and path in json.loads(out.stdout)["error"]


@pytest.mark.parametrize("kind", KINDS)
def test_describe_refuses_a_special_counters_file(data_dir, kind):
    path = os.path.join(data_dir, "counters.dat")
    make_special(path, kind)
    assert_one_line_refusal(tool("describe", data_dir), path)


@pytest.mark.parametrize("kind", ["fifo", "devzero"])
def test_pid_file_readers_do_not_block(data_dir, kind):
    make_special(os.path.join(data_dir, "node.pid"), kind)
    out = python_bounded(f"""
        from aeronpy.cluster.nodefiles import read_pid
        print(read_pid({data_dir!r}))
    """)
    assert out.returncode == 0 and out.stdout.strip() == "None", out


@pytest.mark.parametrize("kind", ["fifo", "devzero"])
def test_reading_the_admin_key_does_not_block(data_dir, kind):
    path = os.path.join(data_dir, "admin.key")
    make_special(path, kind)
    out = python_bounded(f"""
        from aeronpy.archive.fs import NotARegularFileError
        from aeronpy.cluster.admin_auth import read_key_file
        try:
            read_key_file({data_dir!r})
        except NotARegularFileError as exc:
            print(exc)
    """)
    assert out.returncode == 0 and out.stdout.startswith(f"{path} is "), out


def test_a_directory_as_admin_key_is_refused_naming_it(tmp_path):
    path = str(tmp_path / "admin.key")
    os.mkdir(path)
    for call in (lambda: admin_auth.remove_key_file(str(tmp_path)),
                 lambda: admin_auth.write_key_file(str(tmp_path), b"k" * 32)):
        with pytest.raises(NotARegularFileError) as info:
            call()
        assert str(info.value).startswith(f"{path} is a directory, not a regular file: remove it")
    assert not [n for n in os.listdir(tmp_path) if n != "admin.key"]   # no .tmp left behind
    os.rmdir(path)
    os.mkfifo(path)
    admin_auth.remove_key_file(str(tmp_path))      # a leftover of any kind but a dir: removed
    assert not os.path.lexists(path)


def test_a_directory_as_counters_file_is_refused_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "counters.dat")
    os.mkdir(path)
    with pytest.raises(NotARegularFileError) as info:
        CountersWriter(str(tmp_path), member_id=0, cluster_id=7)
    assert str(info.value).startswith(f"{path} is a directory, not a regular file")
    assert os.listdir(tmp_path) == ["counters.dat"]


def test_a_failed_start_is_recorded_in_errors_log_even_when_counters_cannot_be(tmp_path):
    from aeronpy.cluster.config import NodeConfig
    config = NodeConfig(cluster_id=7, member_id=0, data_dir=str(tmp_path),
                        members=[{"id": 0, "host": "127.0.0.1", "consensus_port": 1,
                                  "ingress_port": 2}])
    os.mkdir(tmp_path / "counters.dat")
    assert record_failed_start(config, RuntimeError("boom")) is True
    from aeronpy.cluster.nodefiles import read_errors
    assert [e.text for e in read_errors(str(tmp_path))] == ["RuntimeError: boom"]


# -- the node ------------------------------------------------------------------------------------

@pytest.fixture
def one_member(tmp_path):
    write_one_member_config(tmp_path)
    os.mkdir(tmp_path / "data-0")
    return tmp_path


def start_node(tmp_path) -> subprocess.CompletedProcess:
    """``aeronpy node`` on the one-member config; a node that starts is stopped by the timeout
    (and reported as hung: every case here must refuse to start)."""
    return run_bounded([sys.executable, "-m", "aeronpy", "node", "--config",
                        str(tmp_path / "cluster.toml"), "--member-id", "0",
                        "--service", "aeronpy.testing.services:CounterService"],
                       env=child_env(str(tmp_path)), cwd=str(tmp_path))


@pytest.mark.parametrize("name,kind", [
    ("durable.pos", "fifo"), ("node.state", "fifo"), ("recording.log", "devzero"),
    ("errors.log", "fifo"), ("node.pid", "fifo"), ("counters.dat", "dir"),
    ("admin.key", "dir"), ("durable.pos", "dir"), ("admin.seen", "dir"),
])
def test_the_node_refuses_a_special_file_with_status_4_and_one_line(one_member, name, kind):
    path = os.path.join(str(one_member), "data-0", name)
    make_special(path, kind)
    out = start_node(one_member)
    assert out.returncode == 4, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("aeronpy node: member 0 failed while starting and stopped: "
                           f"NotARegularFileError: {path} is "), last
    assert "not a regular file" in last
    if name in ("counters.dat", "admin.key", "durable.pos"):   # errors.log could be written
        assert "traceback in " in last and "errors.log" in last, last
    if name in ("errors.log", "node.pid"):
        assert last.endswith("(not recorded in the data dir)"), last
