"""Disk-full bugs found by bench/diskfull_trial on a real tmpfs, reproduced in-process.

Each was a strict xfail until its fix; each test's docstring says what failed before."""
from __future__ import annotations

import errno
import io
import os

import pytest

from aeronpy.cluster import nodefiles
from aeronpy.errors import AeronpyError


class _FullDiskFileIO(io.FileIO):
    """The raw file under a buffered node.pid: every write fails with ENOSPC, as on a full
    tmpfs or ext4 (a new file has no block yet); the buffered layer's flush and close raise it."""

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def pid_file_on_full_disk(monkeypatch):
    """Writes to ``node.pid`` fail with ENOSPC, through a buffered file (os.fdopen) or through
    os.write/os.pwrite; every other file (errors.log among them, allocated whole when it was
    made) still takes writes. A file is node.pid by its inode, so fd reuse cannot confuse it."""
    real_fdopen, real_write, real_pwrite = os.fdopen, os.write, os.pwrite

    def is_pid_file(fd) -> bool:
        try:
            st = os.fstat(fd)
        except OSError:
            return False
        return any(os.path.basename(p) == nodefiles.PID_FILE and (st.st_dev, st.st_ino) == key
                   for p, key in opened.items())

    opened = {}
    real_open_regular = nodefiles.open_regular

    def open_regular(path, *args, **kwargs):
        fd = real_open_regular(path, *args, **kwargs)
        st = os.fstat(fd)
        opened[os.fspath(path)] = (st.st_dev, st.st_ino)
        return fd

    def fdopen(fd, mode="r", *args, **kwargs):
        if not is_pid_file(fd):
            return real_fdopen(fd, mode, *args, **kwargs)
        buffered = io.BufferedRandom(_FullDiskFileIO(fd, "r+"))
        return buffered if "b" in mode else io.TextIOWrapper(buffered)

    def write(fd, data):
        if is_pid_file(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    def pwrite(fd, data, offset):
        if is_pid_file(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(nodefiles, "open_regular", open_regular)
    monkeypatch.setattr(os, "fdopen", fdopen)
    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "pwrite", pwrite)


def _config(data_dir: str):
    from aeronpy.cluster.config import NodeConfig
    return NodeConfig(cluster_id=7, member_id=0, data_dir=data_dir,
                      members=[{"id": 0, "host": "127.0.0.1", "consensus_port": 1, "ingress_port": 2}])


def _negative_control_the_fake_disk_fails_the_pid_write(tmp_path) -> None:
    # without the fixture the same calls work: the failure below is the full disk's
    lock = nodefiles.PidFile(str(tmp_path)).acquire()
    lock.release()


def test_starting_on_a_full_disk_says_the_disk_is_full(tmp_path, pid_file_on_full_disk):
    """A pid write refused by a full disk is an AeronpyError naming node.pid and saying the
    disk is full. Failed before the fix: a bare OSError(ENOSPC) (raised again by f.close() in
    the except clause), so a member started on a full disk logged a traceback naming neither
    node.pid nor the way out (diskfull_trial start-full, free_left=0)."""
    with pytest.raises(AeronpyError, match="(?i)disk is full|no space") as info:
        nodefiles.PidFile(str(tmp_path)).acquire()
    assert "node.pid" in str(info.value)


def test_a_failed_start_on_a_full_disk_is_recorded_in_errors_log(tmp_path, pid_file_on_full_disk):
    """A start that failed on a full disk is recorded in errors.log (allocated whole by an
    earlier run), as docs/operations.md says. Failed before the fix: record_failed_start took
    the lock through PidFile.acquire, whose pid write failed, so it recorded nothing."""
    nodefiles.ErrorLog(str(tmp_path)).close()            # as an earlier run of the node left it
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert nodefiles.record_failed_start(_config(str(tmp_path)), error) is True
    assert [e.text for e in nodefiles.read_errors(str(tmp_path))] == [
        "OSError: [Errno 28] No space left on device"]


def _refuse_new_counters_files(monkeypatch) -> None:
    """A file the counters module makes anew (``counters.dat.<pid>.tmp``, renamed over
    counters.dat) takes no bytes, as on a full disk; files that exist keep their blocks."""
    from aeronpy.cluster import counters as counters_module

    def full_open(path, mode="r", *args, **kwargs):
        if "w" in mode and os.fspath(path).endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(counters_module, "open", full_open, raising=False)


def test_a_failed_start_on_a_full_disk_is_not_shown_as_a_clean_stop(tmp_path, monkeypatch,
                                                                      pid_file_on_full_disk):
    """A member that stopped cleanly and then fails to start on a full disk does not read
    'stopped' in its counters. Failed before the fix: record_failed_start made a new
    counters.dat (temporary file, rename), which the full disk refused, leaving the earlier
    run's file saying 'node stopped cleanly'."""
    from aeronpy.cluster.counters import CountersReader, CountersWriter
    config = _config(str(tmp_path))
    nodefiles.ErrorLog(str(tmp_path)).close()       # the earlier run, before the disk filled,
    CountersWriter.for_config(config).close()       # which stopped cleanly
    _refuse_new_counters_files(monkeypatch)
    nodefiles.record_failed_start(config, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with CountersReader(str(tmp_path)) as reader:
        assert reader.status().state != "stopped", reader.status()


def test_negative_control_pid_file_without_the_full_disk(tmp_path):
    """The two tests above fail because of the full disk, not the set-up: without it the
    same calls work."""
    _negative_control_the_fake_disk_fails_the_pid_write(tmp_path)
    nodefiles.ErrorLog(str(tmp_path)).close()
    assert nodefiles.record_failed_start(_config(str(tmp_path)), RuntimeError("boom")) is True


def test_the_fake_full_disk_fails_the_pid_write(tmp_path, pid_file_on_full_disk):
    with pytest.raises(OSError) as info:
        nodefiles.PidFile(str(tmp_path)).acquire()
    assert info.value.errno == errno.ENOSPC


# -- a snapshot this member takes, on a disk too full to create its file --------------------------
def _archive_with_entries():
    from aeronpy.archive import MemFileSystem

    from .test_archive import fill, open_mem
    fs = MemFileSystem()
    arc, rec = open_mem(fs, "data")
    fill(arc, rec.log, 20, 1)
    arc.sync()
    return fs, arc, rec


def test_a_snapshot_whose_file_cannot_be_created_does_not_fail_the_archive():
    """A snapshot of the member's own whose temporary file cannot be created (ENOSPC: a full
    directory block on ext4, exhausted inodes on tmpfs) fails only that snapshot, as one whose
    bytes cannot be written does. Failed before the fix: Archive.begin_snapshot sent it to
    Archive._fail, so the archive refused every later append and the member stopped."""
    from aeronpy.cluster.snapshotting import write_snapshot_file

    from .test_archive import fill
    fs, arc, rec = _archive_with_entries()
    fs.fail("create", errno.ENOSPC)
    with pytest.raises(OSError):
        write_snapshot_file(arc, 20, 1, 0, [b"state"])
    assert not arc.failed
    fill(arc, rec.log, 5, 1, seed=3)               # the log goes on, as after a failed write


def test_control_a_snapshot_whose_bytes_cannot_be_written_leaves_the_archive_writable():
    from aeronpy.cluster.snapshotting import write_snapshot_file

    from .test_archive import fill
    fs, arc, rec = _archive_with_entries()
    fs.fail("write", errno.ENOSPC, skip=1)           # not the truncate of the new file: its bytes
    with pytest.raises(OSError):
        write_snapshot_file(arc, 20, 1, 0, [b"state"])
    assert not arc.failed
    fill(arc, rec.log, 5, 1, seed=3)


# -- a new segment that could not be allocated --------------------------------------------------
def test_a_segment_whose_allocation_failed_is_not_taken_for_damage():
    """A new segment whose allocation failed (ENOSPC) leaves no file, so the restart after a
    full disk does not report damage. Failed before the fix: the empty file stayed and every
    restart logged 'recovery cut the log at index N (segment header is damaged or
    inconsistent ...)' for a file nothing was written to (diskfull_trial, every scenario)."""
    from aeronpy.archive import ArchiveIOError, MemFileSystem

    from .test_archive import SEG, fill, open_mem
    fs = MemFileSystem(capacity_bytes=3 * SEG + 3000)
    arc, rec = open_mem(fs, "data")
    with pytest.raises(ArchiveIOError, match="disk is full while appending"):
        for seed in range(10_000):                   # ~56 entries a segment: fails on the 4th
            fill(arc, rec.log, 1, 1, seed=seed)
            arc.sync()
    written = rec.log.last_index - 1                  # the one that failed is not written
    fs.crash()
    _, rec2 = open_mem(fs, "data")
    assert rec2.log.last_index == written
    assert "damaged" not in rec2.cut.reason, rec2.cut


# -- found while fixing the above (same trial, start on a full disk) ---------------------------
def test_a_failed_start_on_a_full_disk_marks_the_existing_counters_failed(tmp_path, monkeypatch,
                                                                          pid_file_on_full_disk):
    """With no room for a new counters.dat, the one there is overwritten in place: FAILED, this
    process's pid, not closed, so once the process has exited `aeronpy tool describe` reads
    'failed' (docs/operations.md). Failed before the fix: the earlier run's file stayed, closed
    cleanly, with its pid and state."""
    from aeronpy.cluster.counters import (WRITER_RUNNING, ConsensusModuleState, CountersReader,
                                          CountersWriter)
    config = _config(str(tmp_path))
    nodefiles.ErrorLog(str(tmp_path)).close()
    earlier = CountersWriter.for_config(config, pid=os.getpid() + 1, extra_slots=[("extra_x", 1)])
    earlier.values[earlier.index("commit_index")] = 42
    earlier.values[earlier.index("extra_x")] = 5
    earlier.close()
    _refuse_new_counters_files(monkeypatch)
    assert nodefiles.record_failed_start(config, OSError(errno.ENOSPC, "full")) is True
    with CountersReader(str(tmp_path)) as reader:
        assert reader.header.pid == os.getpid()
        assert reader.header.writer_state == WRITER_RUNNING
        values = reader.read()
    assert values["consensus_module_state"] == ConsensusModuleState.FAILED
    assert values["errors"] == 1
    assert values["commit_index"] == 0 and values["extra_x"] == 0, values   # as a new file's


def test_a_failed_start_with_no_counters_file_and_no_room_records_the_error(tmp_path, monkeypatch,
                                                                          pid_file_on_full_disk):
    """No counters.dat to overwrite (the member never ran) and no room for one: errors.log
    still has the failure, and no file is made."""
    nodefiles.ErrorLog(str(tmp_path)).close()
    _refuse_new_counters_files(monkeypatch)
    assert nodefiles.record_failed_start(_config(str(tmp_path)), OSError(errno.ENOSPC, "full"))
    assert os.listdir(tmp_path) == [nodefiles.ERRORS_FILE]     # node.pid goes with the lock


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_data_dir_too_full_for_the_write_probe_is_a_full_disk_not_a_config_error(code):
    """The data dir's write probe refused for lack of space is an ArchiveIOError (exit status
    4, as any full disk), not a DataDirError (a ConfigError: status 2, which a supervisor takes
    for a permanent misconfiguration). Failed before the fix: DataDirError 'not writable (No
    space left on device)' (diskfull_trial start-full, 4 KiB free)."""
    from aeronpy.archive import Archive, ArchiveIOError, MemFileSystem
    from aeronpy.errors import ConfigError
    fs = MemFileSystem()
    fs.makedirs("/data")
    fs.fail("create", code)
    with pytest.raises(ArchiveIOError, match="the disk is full") as info:
        Archive.open("/data", fs=fs)
    assert not isinstance(info.value, ConfigError)
    assert info.value.errno == code and "/data" in str(info.value)


def test_control_a_data_dir_not_writable_for_another_reason_stays_a_config_error():
    from aeronpy.archive import Archive, DataDirError, MemFileSystem
    fs = MemFileSystem()
    fs.makedirs("/data")
    fs.fail("create", errno.EACCES)
    with pytest.raises(DataDirError, match="not writable"):
        Archive.open("/data", fs=fs)


class _Records:
    def __init__(self):
        import logging
        self.records = []
        self.log = logging.getLogger("aeronpy.test.disk_full_found")
        self.log.propagate = False
        self.log.setLevel(logging.DEBUG)
        handler = logging.Handler()
        handler.emit = self.records.append
        self.log.handlers[:] = [handler]


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_start_failed_by_a_full_disk_says_so_in_one_line(tmp_path, capsys, code):
    """An OSError(ENOSPC/EDQUOT) raised while starting (CountersWriter making counters.dat, ...)
    is a known failure: exit status 4, no traceback in the log, a last line saying the disk is
    full. Failed before the fix: 'node failed while starting' with the traceback, and a last
    line with the bare OSError (diskfull_trial start-full, 8 KiB free)."""
    import logging

    from aeronpy import cli
    path = os.path.join(str(tmp_path), "counters.dat.1.tmp")
    exc = _raised(OSError(code, os.strerror(code), path))
    records = _Records()
    assert cli._failed_at_start(_config(str(tmp_path)), exc, records.log) == cli.EXIT_NODE_FAILED
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the disk is full" in last and str(tmp_path) in last and "counters.dat" in last, last
    assert "free space" in last, last
    assert not [r for r in records.records if r.exc_info and r.levelno >= logging.INFO]
    assert any(os.strerror(code) in e.text for e in nodefiles.read_errors(str(tmp_path)))


def test_control_another_os_error_at_start_keeps_its_traceback(tmp_path, capsys):
    import logging

    from aeronpy import cli
    records = _Records()
    exc = _raised(OSError(errno.EIO, os.strerror(errno.EIO)))
    assert cli._failed_at_start(_config(str(tmp_path)), exc, records.log) == cli.EXIT_NODE_FAILED
    assert "disk is full" not in capsys.readouterr().err
    assert [r for r in records.records if r.exc_info and r.levelno == logging.ERROR]


def _receiver_on_a_full_disk(code: int):
    from types import SimpleNamespace

    from aeronpy.archive import Archive, MemFileSystem
    from aeronpy.cluster.snapshot_transfer import SnapshotReceiver
    from aeronpy.service import Role
    fs = MemFileSystem()
    arc = Archive.open("/d", fs=fs)
    arc.recover()
    fs.fail("create", code)
    hooks = SimpleNamespace(core=SimpleNamespace(term=3, role=Role.FOLLOWER, commit_index=10),
                            archive=arc)
    return fs, arc, SnapshotReceiver(hooks)


def test_a_received_snapshot_whose_file_cannot_be_created_still_stops_the_member():
    """The fix above must not change a RECEIVED snapshot: one whose file cannot be created for
    lack of space stops the member, saying so (docs/operations.md), as one whose bytes cannot
    be written does (the member cannot go on without it)."""
    from aeronpy.archive import ArchiveIOError
    from aeronpy.core.messages import InstallSnapshot
    fs, arc, receiver = _receiver_on_a_full_disk(errno.ENOSPC)
    with pytest.raises(ArchiveIOError) as info:
        receiver.on_chunk(1, InstallSnapshot(3, 50, 2, 0, 4000, False, b"a" * 800))
    assert info.value.errno == errno.ENOSPC and arc.failed
    message = str(info.value)
    assert "the disk is full" in message and "snapshot at index 50" in message
    assert "from member 1" in message
    assert [n for n in fs.listdir("/d") if "snap" in n] == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_data_dir_with_no_inode_left_is_not_a_configuration_error(tmp_path, monkeypatch, code):
    """The configuration check's write probe (a new file) fails with ENOSPC when the file
    system has no inode left (tmpfs nr_inodes, ext4 full inode table): that is a full disk,
    which the start reports with status 4, not a bad data_dir setting (status 2, as it was)."""
    from aeronpy.cluster import config as config_module

    def no_inode(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(config_module.tempfile, "mkstemp", no_inode)
    config_module._probe_data_dir(str(tmp_path))                     # no ConfigError

    def denied(*args, **kwargs):                                      # control: still refused
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))
    monkeypatch.setattr(config_module.tempfile, "mkstemp", denied)
    with pytest.raises(config_module.ConfigError, match="not writable"):
        config_module._probe_data_dir(str(tmp_path))
