"""Error log (bounded, distinct, kept across restarts) and the node.pid lock."""
import subprocess
import sys

import pytest

from aeronpy.cluster.counters import CountersUnavailableError
from aeronpy.cluster.nodefiles import ERRORS_FILE, ErrorLog, PidFile, read_errors, read_pid
from aeronpy.errors import ConfigError


def test_ring_keeps_only_the_newest_capacity_records(tmp_path):
    log = ErrorLog(tmp_path, capacity=4)
    for i in range(10):
        log.record(f"error {i}", now_ns=1000 + i)
    entries = read_errors(tmp_path)
    assert [e.text for e in entries] == ["error 6", "error 7", "error 8", "error 9"]
    assert [e.first_ns for e in entries] == [1006, 1007, 1008, 1009]
    # bounded: each record is a 512-byte summary and a 3.5 KiB traceback slot
    assert (tmp_path / ERRORS_FILE).stat().st_size == 64 + 4 * 512 + 4 * 3584
    log.close()


def test_repeated_error_bumps_count_and_last_time(tmp_path):
    log = ErrorLog(tmp_path, capacity=8)
    log.record("disk full", now_ns=10)
    log.record("other", now_ns=11)
    log.record("disk full", now_ns=20)
    log.record("disk full", now_ns=30)
    entries = read_errors(tmp_path)
    assert [(e.text, e.count, e.first_ns, e.last_ns) for e in entries] == [
        ("disk full", 3, 10, 30), ("other", 1, 11, 11)]
    log.close()


def test_an_evicted_error_gets_a_new_record(tmp_path):
    log = ErrorLog(tmp_path, capacity=2)
    log.record("a", now_ns=1)
    log.record("b", now_ns=2)
    log.record("c", now_ns=3)   # evicts a
    log.record("a", now_ns=4)   # evicts b; a is new again
    assert [(e.text, e.count) for e in read_errors(tmp_path)] == [("c", 1), ("a", 1)]
    log.close()


def test_exception_text_has_type_message_and_place(tmp_path):
    log = ErrorLog(tmp_path)
    try:
        {}["missing"]
    except KeyError as exc:
        log.record(exc)
    (entry,) = read_errors(tmp_path)
    assert entry.text.startswith("KeyError: 'missing' (at test_nodefiles.py:")
    assert "in test_exception_text_has_type_message_and_place" in entry.text
    log.close()


def test_long_text_is_truncated_without_breaking_utf8(tmp_path):
    log = ErrorLog(tmp_path)
    log.record("é" * 1000)
    (entry,) = read_errors(tmp_path)
    assert set(entry.text) == {"é"} and 200 < len(entry.text) <= 240
    log.close()


def test_log_survives_restart_and_capacity_change_recreates(tmp_path):
    log = ErrorLog(tmp_path, capacity=4)
    log.record("before restart")
    log.close()
    log = ErrorLog(tmp_path, capacity=4)
    log.record("after restart")
    assert [e.text for e in read_errors(tmp_path)] == ["before restart", "after restart"]
    log.close()
    log = ErrorLog(tmp_path, capacity=8)
    assert read_errors(tmp_path) == []
    log.record("x")
    log.close()
    log.record("ignored after close")
    assert [e.text for e in read_errors(tmp_path)] == ["x"]


def _allocated(path) -> int:
    import os
    return os.stat(path).st_blocks * 512


def test_the_error_log_has_every_page_allocated_before_it_is_mapped(tmp_path):
    """A sparse errors.log (its header written, then truncated to size) is mapped: on a full
    disk the first record into a hole killed the member with SIGBUS, unrecorded and unlogged
    (an operator's disk-full trial). Every page now has its blocks from the start, and an old
    sparse file gets them when opened."""
    import os
    log = ErrorLog(tmp_path)
    path = tmp_path / ERRORS_FILE
    size = os.path.getsize(path)
    assert _allocated(path) >= size
    log.record("kept")
    log.close()
    with open(path, "r+b") as f:                      # an old, sparse one: holes punched
        data = f.read()
        f.seek(0)
        f.truncate(0)
        f.write(data[:4096])
        f.truncate(size)
    assert _allocated(path) < size                    # the control: it is sparse now
    log = ErrorLog(tmp_path)
    assert _allocated(path) >= size
    log.record("after")
    log.close()
    assert [e.text for e in read_errors(tmp_path)] == ["kept", "after"]


def test_the_error_log_is_allocated_where_the_filesystem_has_no_fallocate(tmp_path,
                                                                         monkeypatch):
    """Without posix_fallocate (macOS, some filesystems) zeros are written over every hole, a
    page at a time: by 64 KiB chunks, the one holding the header stayed mostly a hole (a
    review: the 9th record on a full disk was SIGBUS)."""
    import errno
    import os

    def unsupported(*_args):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")
    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    log = ErrorLog(tmp_path)
    path = tmp_path / ERRORS_FILE
    assert _allocated(path) >= os.path.getsize(path)
    log.close()


def test_a_failing_error_record_still_leaves_the_reason_in_the_log(tmp_path, caplog):
    from tests.ops.opsfiles import one_member_node
    node = one_member_node(tmp_path)
    try:
        def no_room(*_a, **_k):
            raise OSError(28, "No space left on device")
        node._errors.record = no_room
        with caplog.at_level("ERROR"):
            node._fail(RuntimeError("the cause"))
        text = caplog.text
        assert "unrecoverable error: RuntimeError('the cause')" in text
        assert "could not record it in errors.log" in text
        assert isinstance(node.failure, RuntimeError)
    finally:
        node.close()


def test_read_errors_missing_and_foreign(tmp_path):
    assert read_errors(tmp_path) == []
    (tmp_path / ERRORS_FILE).write_bytes(b"garbage" * 20)
    with pytest.raises(CountersUnavailableError):
        read_errors(tmp_path)


def test_pid_file_locks_the_data_dir(tmp_path):
    first = PidFile(tmp_path).acquire()
    assert read_pid(tmp_path) == __import__("os").getpid()
    with pytest.raises(ConfigError) as e:
        PidFile(tmp_path).acquire()
    assert e.value.key == "data_dir" and "in use by a running node" in str(e.value)
    first.release()
    assert read_pid(tmp_path) is None
    PidFile(tmp_path).acquire().release()


def test_pid_file_lock_is_released_by_a_killed_process(tmp_path):
    code = ("import sys, time; from aeronpy.cluster.nodefiles import PidFile; "
            "p = PidFile(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=f"pid {child.pid}"):
            PidFile(tmp_path).acquire()
        child.kill()
        child.wait(timeout=10)
        PidFile(tmp_path).acquire().release()   # a stale file from kill -9 does not block
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
