"""The file layer: both implementations agree on ordinary semantics, and MemFileSystem's crash
models keep exactly what they promise."""
from __future__ import annotations

import errno
import random

import pytest

from aeronpy.archive.fs import MemFileSystem, OsFileSystem


@pytest.fixture(params=["os", "mem"])
def fs_and_dir(request, tmp_path):
    if request.param == "os":
        return OsFileSystem(), str(tmp_path)
    fs = MemFileSystem()
    fs.makedirs("/data")
    return fs, "/data"


def test_both_file_systems_agree_on_basic_operations(fs_and_dir):
    fs, d = fs_and_dir
    h = fs.open_file(f"{d}/a", create=True)
    fs.allocate(h, 100)
    assert fs.size(h) == 100 and fs.pread(h, 100, 0) == bytes(100)
    fs.pwrite(h, b"hello", 10)
    fs.pwrite(h, b"world", 200)  # past the end: extends, gap reads as zeroes
    assert fs.size(h) == 205
    assert fs.pread(h, 5, 10) == b"hello" and fs.pread(h, 10, 195) == bytes(5) + b"world"
    fs.truncate(h, 12)
    assert fs.pread(h, 100, 0) == bytes(10) + b"he"
    fs.fdatasync(h)
    fs.fsync(h)
    fs.close(h)
    assert fs.read_file(f"{d}/a") == bytearray(bytes(10) + b"he")
    fs.rename(f"{d}/a", f"{d}/b")
    assert not fs.exists(f"{d}/a") and fs.exists(f"{d}/b")
    assert sorted(fs.listdir(d)) == ["b"]
    fs.sync_dir(d)
    fs.remove(f"{d}/b")
    assert fs.listdir(d) == []
    with pytest.raises(FileNotFoundError):
        fs.open_file(f"{d}/missing")


def test_crash_keeps_everything_written_and_kills_handles():
    fs = MemFileSystem()
    fs.makedirs("/d")
    h = fs.open_file("/d/f", create=True)
    fs.pwrite(h, b"unsynced", 0)
    fs.crash()
    assert fs.read_file("/d/f") == b"unsynced"
    with pytest.raises(OSError) as exc:
        fs.pwrite(h, b"x", 0)
    assert exc.value.errno == errno.EBADF


def test_power_fail_keeps_synced_data_and_a_prefix_of_the_rest():
    outcomes = set()
    for seed in range(200):
        fs = MemFileSystem()
        fs.makedirs("/d")
        h = fs.open_file("/d/f", create=True)
        fs.pwrite(h, b"A" * 8, 0)
        fs.fdatasync(h)
        fs.sync_dir("/d")
        fs.pwrite(h, b"B" * 8, 8)
        fs.pwrite(h, b"C" * 8, 16)
        fs.power_fail(random.Random(seed))
        data = bytes(fs.read_file("/d/f"))
        assert data.startswith(b"A" * 8), "synced data lost"
        rest = data[8:]
        # an in-order prefix of B then C, the boundary write possibly torn
        assert (b"B" * 8 + b"C" * 8).startswith(rest), rest
        outcomes.add(len(rest))
    assert {0, 8, 16} <= outcomes and outcomes - {0, 8, 16}, "expected clean and torn outcomes"


def test_power_fail_can_lose_an_unsynced_create_or_rename():
    lost_create = lost_rename = False
    for seed in range(100):
        fs = MemFileSystem()
        fs.makedirs("/d")
        h = fs.open_file("/d/old", create=True)
        fs.pwrite(h, b"1", 0)
        fs.fsync(h)
        fs.sync_dir("/d")
        n = fs.open_file("/d/new", create=True)
        fs.pwrite(n, b"2", 0)
        fs.fsync(n)                       # data synced, directory entry not
        fs.rename("/d/new", "/d/old")
        fs.power_fail(random.Random(seed))
        names = set(fs.listdir("/d"))
        content = bytes(fs.read_file("/d/old")) if "old" in names else None
        assert names in ({"old"}, {"old", "new"}), names   # rename is atomic: never neither
        lost_rename |= content == b"1"
        lost_create |= "new" not in names and content == b"1"
    assert lost_rename and lost_create


def test_synced_directory_entries_survive_power_failure():
    for seed in range(50):
        fs = MemFileSystem()
        fs.makedirs("/d")
        h = fs.open_file("/d/f", create=True)
        fs.pwrite(h, b"data", 0)
        fs.fdatasync(h)
        fs.sync_dir("/d")
        fs.power_fail(random.Random(seed))
        assert fs.read_file("/d/f") == b"data"


def test_capacity_limit_gives_enospc_after_writing_what_fits():
    fs = MemFileSystem(capacity_bytes=10)
    fs.makedirs("/d")
    h = fs.open_file("/d/f", create=True)
    with pytest.raises(OSError) as exc:
        fs.pwrite(h, b"x" * 15, 0)
    assert exc.value.errno == errno.ENOSPC
    assert fs.size(h) == 10
    with pytest.raises(OSError):
        fs.allocate(h, 20)


def test_injected_faults_fire_once_at_the_chosen_call():
    fs = MemFileSystem()
    fs.makedirs("/d")
    h = fs.open_file("/d/f", create=True)
    fs.fail("write", errno.EIO, skip=1)
    fs.pwrite(h, b"ok", 0)
    with pytest.raises(OSError) as exc:
        fs.pwrite(h, b"torn", 2)
    assert exc.value.errno == errno.EIO
    assert fs.read_file("/d/f") == b"okto"  # a failing write may leave part of its bytes
    fs.pwrite(h, b"fine", 0)
    fs.fail("sync", errno.EIO)
    with pytest.raises(OSError):
        fs.fdatasync(h)
    fs.fdatasync(h)
    with pytest.raises(ValueError):
        fs.fail("bogus")


def test_makedirs_refuses_a_file_in_the_way():
    fs = MemFileSystem()
    fs.makedirs("/d")
    fs.close(fs.open_file("/d/f", create=True))
    with pytest.raises(NotADirectoryError):
        fs.makedirs("/d/f/sub")
