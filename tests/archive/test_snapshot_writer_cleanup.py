"""A snapshot whose writing fails leaves no temporary file and no open handle behind.

SnapshotWriter creates ``snapshot-<index>-<term>.snap.tmp`` and at once cuts it to 0 bytes (a
file left by an earlier attempt at the same index starts empty). When that truncate failed
(ENOSPC, EIO), the constructor raised with the file created and its handle open: nobody held
the writer, so nothing removed the file or closed the handle; each failed snapshot of a member
on a full disk (a new index each time) left one more of both until the next restart. A
commit whose rename failed left the temporary file too: the writer took itself for done before
the rename, so the caller's abort did nothing. The error must still reach the caller as it
was. Driven by `MemFileSystem.fail` (one-shot injected errors) and its handle count."""
from __future__ import annotations

import errno

import pytest

from aeronpy.archive import MemFileSystem
from aeronpy.cluster.snapshotting import write_snapshot_file

from .test_archive import fill, open_mem


def _archive():
    fs = MemFileSystem()
    arc, rec = open_mem(fs)
    fill(arc, rec.log, 20, 1)
    arc.sync()
    return fs, arc


def _snapshot_files(fs) -> list:
    return [n for n in fs.listdir("/data") if n.startswith("snapshot-")]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_a_failed_truncate_of_the_new_file_leaves_nothing_behind(code):
    fs, arc = _archive()
    handles = fs.open_handles
    fs.fail("write", code)                 # the first write op on the new file: its truncate
    with pytest.raises(OSError) as info:
        arc.begin_snapshot(20, 1)
    assert info.value.errno == code                          # the error, as it was
    assert _snapshot_files(fs) == []                         # no temporary file left
    assert fs.open_handles == handles                        # and its handle closed
    assert not arc.failed
    arc.close()


def test_a_failed_truncate_through_the_snapshot_job_leaves_nothing_behind():
    fs, arc = _archive()
    handles = fs.open_handles
    for index in (18, 19, 20):             # one failed snapshot after another (a full disk)
        fs.fail("write", errno.ENOSPC)
        with pytest.raises(OSError):
            write_snapshot_file(arc, index, 1, 0, [b"state"])
    assert _snapshot_files(fs) == [] and fs.open_handles == handles
    info = write_snapshot_file(arc, 20, 1, 0, [b"state"])    # space again: it works
    assert _snapshot_files(fs) == [info.path.rsplit("/", 1)[1]]
    arc.close()


def test_a_failed_rename_at_commit_leaves_no_temporary_file():
    fs, arc = _archive()
    handles = fs.open_handles
    fs.fail("rename", errno.EIO)
    with pytest.raises(OSError) as info:
        write_snapshot_file(arc, 20, 1, 0, [b"state"])
    assert info.value.errno == errno.EIO
    assert _snapshot_files(fs) == [] and fs.open_handles == handles
    assert arc.latest_valid_snapshot() is None               # nothing recorded
    arc.close()


def test_control_a_failed_write_or_sync_was_already_cleaned_up():
    fs, arc = _archive()
    handles = fs.open_handles
    for op in ("write", "sync"):
        fs.fail(op, errno.EIO, skip=1 if op == "write" else 0)   # its bytes; its fsync
        with pytest.raises(OSError):
            write_snapshot_file(arc, 20, 1, 0, [b"state"])
        assert _snapshot_files(fs) == [] and fs.open_handles == handles, op
    arc.close()
