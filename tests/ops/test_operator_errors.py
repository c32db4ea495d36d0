"""What an operator meets when things go wrong: a node that fails while starting, the
traceback in errors.log, restore errors, admin requests to a member that is not running."""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import aeronpy.cli as cli
from aeronpy.cluster import admin
from aeronpy.cluster.counters import ConsensusModuleState, CountersReader, CountersWriter, SlotId
from aeronpy.cluster.nodefiles import ERRORS_FILE, ErrorLog, read_errors
from aeronpy.testing.process_cluster import child_env, free_udp_ports

from opsfiles import write_one_member_config


SERVICES = textwrap.dedent("""
    import aeronpy

    class Good(aeronpy.ClusteredService):
        pass

    class BoomOnStart(aeronpy.ClusteredService):
        def on_start(self, cluster, snapshot):
            raise RuntimeError("cannot open the order book")
""")


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def one_member(tmp_path):
    """A one-member cluster file (free loopback ports) and a module with services beside it."""
    write_one_member_config(tmp_path)
    (tmp_path / "ops_services.py").write_text(SERVICES)
    return tmp_path


def node(tmp_path, *services, wait=True, timeout=20):
    argv = [sys.executable, "-m", "aeronpy", "node", "--config", str(tmp_path / "cluster.toml"),
            "--member-id", "0"]
    for service in services:
        argv += ["--service", service]
    env = child_env(str(tmp_path))     # the aeronpy this process imported, then the services
    if wait:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=str(tmp_path))
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=str(tmp_path))


def check_failed_start(tmp_path, out, *words):
    """Exit 4, one traceback at most on stderr, the last line naming the cause and where its
    traceback is; errors.log holds it with the traceback; the counters say FAILED and the
    status is not "stopped" (cleanly)."""
    data_dir = str(tmp_path / "data-0")
    assert out.returncode == 4, out.stderr
    assert out.stderr.count("Traceback (most recent call last)") <= 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("aeronpy node: member 0 failed while starting"), out.stderr
    assert all(w in last for w in words), last
    assert os.path.join(data_dir, ERRORS_FILE) in last
    entries = read_errors(data_dir)
    assert len(entries) == 1 and all(w in entries[0].text for w in words), entries
    assert "Traceback (most recent call last)" in entries[0].detail
    with CountersReader(data_dir) as reader:
        values, status = reader.read(), reader.status()
    assert values["consensus_module_state"] == ConsensusModuleState.FAILED
    assert values["errors"] == 1
    assert status.state != "stopped" and not status.running, status
    return entries[0]


def test_a_service_raising_in_on_start_exits_4_and_leaves_the_evidence(one_member, capsys):
    out = node(one_member, "ops_services:BoomOnStart")
    entry = check_failed_start(one_member, out, "cannot open the order book")
    assert "ops_services.py" in entry.detail and "in on_start" in entry.detail
    assert "(at ops_services.py:" in entry.text          # the service's line, not the wrapper's
    data_dir = str(one_member / "data-0")
    code, text, _ = run(["tool", "describe", "--data-dir", data_dir], capsys)
    assert code == 0 and "stopped cleanly" not in text and "FAILED" in text
    code, text, _ = run(["tool", "errors", "--data-dir", data_dir], capsys)
    assert code == 0 and "cannot open the order book" in text
    assert "    Traceback (most recent call last)" in text and "in on_start" in text


def test_a_snapshot_taken_with_fewer_services_fails_the_start_with_status_4(one_member, capsys):
    data_dir = str(one_member / "data-0")
    child = node(one_member, "ops_services:Good", wait=False)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with CountersReader(data_dir) as reader:
                    if reader.status().running and reader.read()["role"] == 2:
                        break
            except FileNotFoundError:
                pass
            assert time.monotonic() < deadline and child.poll() is None, child.stderr
            time.sleep(0.05)
        code, text, err = run(["tool", "shutdown", "--data-dir", data_dir, "--timeout", "8"], capsys)
        assert code == 0, (text, err)                    # with a final snapshot
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    out = node(one_member, "ops_services:Good", "ops_services:Good")
    check_failed_start(one_member, out, "SnapshotFileError", "1 service streams", "2 services")
    assert "--service list" in out.stderr.strip().splitlines()[-1]


# -- errors.log keeps the traceback -------------------------------------------------------------

def _raise_deep(depth):
    if depth == 0:
        raise KeyError("the root cause")
    _raise_deep(depth - 1)


def test_error_log_keeps_a_bounded_traceback_with_the_root_cause(tmp_path):
    log = ErrorLog(tmp_path)
    try:
        try:
            _raise_deep(200)
        except KeyError as exc:
            raise RuntimeError("wrapped " + "x" * 5000) from exc
    except RuntimeError as exc:
        log.record(exc)
    log.record("a message has no traceback")
    log.close()
    first, second = read_errors(tmp_path)
    assert first.text.startswith("RuntimeError: wrapped")
    assert "in _raise_deep" in first.text                 # where the chain began
    assert len(first.detail.encode()) <= 3580
    lines = first.detail.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert "KeyError: 'the root cause'" in first.detail   # the cause, then the error itself
    assert lines[-1].startswith("RuntimeError: wrapped xxx")
    assert second.detail == ""


def test_an_error_log_written_before_tracebacks_is_kept(tmp_path):
    import struct
    # the old layout: a 64-byte header and 512-byte records, nothing after them
    old = bytearray(64 + 4 * 512)
    struct.pack_into("<8sIII4x", old, 0, b"AERONERR", 1, 4, 512)
    struct.pack_into("<q", old, 32, 1)
    text = b"old error"
    struct.pack_into("<qqqI4x", old, 64, 5, 6, 2, len(text))
    old[64 + 32:64 + 32 + len(text)] = text
    (tmp_path / ERRORS_FILE).write_bytes(bytes(old))
    assert [(e.text, e.count, e.detail) for e in read_errors(tmp_path)] == [("old error", 2, "")]
    log = ErrorLog(tmp_path, capacity=4)
    try:
        raise ValueError("new")
    except ValueError as exc:
        log.record(exc)
    log.close()
    entries = read_errors(tmp_path)
    assert [e.text.split(" (at")[0] for e in entries] == ["old error", "ValueError: new"]
    assert "raise ValueError" in entries[1].detail


def test_tool_errors_prints_and_dumps_the_traceback(tmp_path, capsys):
    log = ErrorLog(tmp_path)
    try:
        _raise_deep(1)
    except KeyError as exc:
        log.record(exc, now_ns=1_700_000_000_000_000_000)
    log.close()
    code, out, _ = run(["tool", "errors", "--data-dir", str(tmp_path)], capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("2023-11-14T22:13:20.000Z  x1     KeyError")
    assert lines[1] == "    Traceback (most recent call last):" and "_raise_deep" in out
    code, out, _ = run(["tool", "errors", "--data-dir", str(tmp_path), "--json"], capsys)
    (entry,) = json.loads(out)
    assert entry["text"].startswith("KeyError") and "_raise_deep" in entry["traceback"]


# -- backup --restore-to ------------------------------------------------------------------------

def _backup_dir(tmp_path):
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "00000000000000000001.seg").write_bytes(b"x")
    (backup / "recording.log").write_bytes(b"")
    return backup


def test_restore_into_a_dir_holding_a_log_is_one_line_and_status_2(tmp_path, capsys):
    backup = _backup_dir(tmp_path)
    target = tmp_path / "member-0"
    target.mkdir()
    (target / "00000000000000000001.seg").write_bytes(b"old")
    code, out, err = run(["backup", "--config", "unused.toml", "--data-dir", str(backup),
                          "--restore-to", str(target)], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "already holds a log" in err and "Traceback" not in err
    assert (target / "00000000000000000001.seg").read_bytes() == b"old"


@pytest.mark.parametrize("missing", [True, False])
def test_restore_from_no_backup_is_one_line_and_leaves_no_target(tmp_path, capsys, missing):
    backup = tmp_path / "nope"
    if not missing:
        backup.mkdir()               # a directory, but not a backup
    target = tmp_path / "member-0"
    code, out, err = run(["backup", "--config", "unused.toml", "--data-dir", str(backup),
                          "--restore-to", str(target)], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(backup) in err and "Traceback" not in err
    assert not target.exists()


def test_restore_still_copies_a_backup(tmp_path, capsys):
    backup = _backup_dir(tmp_path)
    code, out, _ = run(["backup", "--data-dir", str(backup),      # no --config: not needed
                        "--restore-to", str(tmp_path / "m0")], capsys)
    # (node.state made for a backup that had none: see test_backup.py)
    assert code == 0 and "restored 3 files" in out
    assert "at least a majority" in out          # what an empty majority would do to it
    assert sorted(os.listdir(tmp_path / "m0")) == ["00000000000000000001.seg", "node.state",
                                                   "recording.log"]


def test_a_restore_that_fails_part_way_into_an_existing_dir_leaves_nothing(tmp_path, capsys,
                                                                          monkeypatch):
    """A copy that failed part-way (disk full) left the file it was writing behind, though the
    message said nothing was restored, and a retry was then refused (today's review)."""
    import shutil
    backup = _backup_dir(tmp_path)
    target = tmp_path / "member-0"
    target.mkdir()                   # a mounted volume, say: it exists before the restore
    real_copy = shutil.copy2

    def copy_then_fill_the_disk(src, dst, *a, **k):
        if src.endswith(".seg"):
            with open(dst, "wb") as f:
                f.write(b"half a segm")
            raise OSError(28, "No space left on device")
        return real_copy(src, dst, *a, **k)
    monkeypatch.setattr(shutil, "copy2", copy_then_fill_the_disk)
    code, _, err = run(["backup", "--config", "unused.toml", "--data-dir", str(backup),
                        "--restore-to", str(target)], capsys)
    assert code != 0 and "No space left" in err
    assert os.listdir(target) == []


def test_backing_up_without_a_config_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        run(["backup", "--data-dir", str(tmp_path / "b")], capsys)
    assert exited.value.code == 2
    assert "--config is required to back up" in capsys.readouterr().err


# -- admin requests -----------------------------------------------------------------------------

MEMBERS = [{"id": 0, "host": "127.0.0.1", "consensus_port": 1, "ingress_port": 0}]


@pytest.fixture
def counters_dir(tmp_path):
    """The counters of a node with member 0 at an ingress port nothing listens on."""
    (port,) = free_udp_ports(1)
    members = [dict(MEMBERS[0], ingress_port=port)]
    writer = CountersWriter(tmp_path / "node0", member_id=0, cluster_id=7, members=members)
    writer.values[SlotId.ROLE] = 2
    yield str(tmp_path / "node0"), writer
    writer.close()


def test_snapshot_on_a_stopped_member_is_refused_at_once(counters_dir, capsys):
    d, writer = counters_dir
    writer.close()                                   # the node stopped cleanly
    started = time.monotonic()
    code, out, err = run(["tool", "snapshot", "--data-dir", d], capsys)
    assert time.monotonic() - started < 2.0
    assert code == 2 and out == ""
    assert "member 0 is not running" in err and "node stopped cleanly" in err


@pytest.mark.parametrize("command", ["snapshot", "suspend", "resume", "shutdown", "abort"])
def test_request_commands_take_a_timeout(command, counters_dir, capsys):
    d, _ = counters_dir                              # "running", but nobody answers
    started = time.monotonic()
    code, _, err = run(["tool", command, "--data-dir", d, "--timeout", "0.3"], capsys)
    assert time.monotonic() - started < 3.0
    assert code == 2 and "within 0.3 s" in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["tool", command, "--data-dir", d, "--timeout", "-1"])
    assert exc.value.code == 2
    capsys.readouterr()


def test_request_commands_are_the_admin_requests():
    assert set(cli.request_timeouts()) == {"snapshot", "suspend", "resume", "shutdown", "abort",
                                             "transfer-leadership"}


def test_snapshot_prints_key_value_lines_and_json_as_before(counters_dir, capsys, monkeypatch):
    d, _ = counters_dir
    result = {"requested_at_index": 2, "leader_endpoint": "127.0.0.1:9", "recorded": True,
              "snapshot": {"type": "SNAPSHOT", "term": 1, "index": 2, "name": "s.snap",
                           "checksum": "513fe23b", "timestamp_ns": 5}}
    seen = []

    def fake_snapshot(data_dir, timeout_s=10.0):
        seen.append(timeout_s)
        return result

    monkeypatch.setitem(admin.COMMAND_FUNCTIONS, "snapshot", fake_snapshot)
    code, out, _ = run(["tool", "snapshot", "--data-dir", d], capsys)
    assert code == 0 and seen == [10.0]
    assert out.splitlines() == ["requested_at_index: 2", "leader_endpoint: 127.0.0.1:9",
                                "recorded: yes", "snapshot:", "  type: SNAPSHOT", "  term: 1",
                                "  index: 2", "  name: s.snap", "  checksum: 513fe23b",
                                "  timestamp_ns: 5"]
    assert "{" not in out
    code, out, _ = run(["tool", "snapshot", "--data-dir", d, "--json", "--timeout", "4"], capsys)
    assert code == 0 and json.loads(out) == result and seen[-1] == 4.0
    monkeypatch.setitem(admin.COMMAND_FUNCTIONS, "snapshot",
                        lambda data_dir, timeout_s=10.0: dict(result, recorded=False, snapshot=None))
    code, out, _ = run(["tool", "snapshot", "--data-dir", d], capsys)
    assert code == 1 and "recorded: no" in out and "snapshot: none" in out


def test_a_reader_that_goes_away_gets_no_traceback(tmp_path):
    """``aeronpy tool describe ... | head`` ended in a BrokenPipeError traceback."""
    writer = CountersWriter(tmp_path / "d", member_id=0, cluster_id=7, members=MEMBERS)
    writer.close()
    child = subprocess.Popen([sys.executable, "-m", "aeronpy", "tool", "describe", "--data-dir",
                              str(tmp_path / "d")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=child_env(), cwd=str(tmp_path))
    child.stdout.close()                      # the reader is gone before anything is written
    _, err = child.communicate(timeout=30)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err
    assert child.returncode == 0
