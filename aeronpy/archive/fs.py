"""The file layer under the archive: real files (`OsFileSystem`) or an in-memory disk model
(`MemFileSystem`) with the same semantics, so the deterministic simulator drives the very same
recovery code that runs in production.

The API is deliberately small. Paths are plain strings; a file is opened once and addressed by
the handle `open_file` returns. Every method either does all it was asked or raises `OSError`
(with an ``errno``) -- a short write is retried inside, never returned. `OsFileSystem` opens
and reads regular files only: a FIFO, device or directory in a file's place raises
`NotARegularFileError` (an `OSError` and an `AeronpyError`) naming it, never blocks.

=====================  =======================================================================
``open_file(p, c)``    open ``p`` read/write (``c=True``: create it if missing) -> handle
``close(h)``           close a handle
``pwrite(h, b, off)``  write all of ``b`` at ``off`` (extends the file if needed)
``pread(h, n, off)``   read up to ``n`` bytes at ``off``
``size(h)``            current file size
``allocate(h, n)``     make the file ``n`` bytes long, new bytes zero (preallocation)
``truncate(h, n)``     cut the file to ``n`` bytes
``fdatasync(h)``       make the file's data (and its size) durable
``fsync(h)``           make data and all metadata durable
``sync_dir(d)``        make directory entries (creates, renames, removals) in ``d`` durable
``read_file(p, m)``    whole contents of ``p`` as a ``bytearray`` (for recovery scans); with
                       ``m``, ValueError for a file larger than ``m`` bytes, nothing read
``listdir(d)``         names in ``d``
``exists(p)``          whether ``p`` exists
``makedirs(d)``        create ``d`` and parents if missing
``rename(a, b)``       atomically replace ``b`` with ``a``
``remove(p)``          delete ``p``
``map_shared(h, n)``   a writable shared memory map of the first ``n`` bytes (allocated first)
                       for stores without a syscall, or None where not offered
``boot_id()``          16 bytes naming this boot of the OS (None where unknown): the page
                       cache survives a process crash but not a reboot, so what was written
                       under one boot id is still there while that id lasts
=====================  =======================================================================

`MemFileSystem` models a disk under a page cache. Every file has the bytes the OS would show
(``written``) and the bytes on the platter (``durable``); directories likewise keep the entries
the OS shows and the entries known to be on disk:

- `crash()` is a process crash (kill -9): the OS survives, so everything written survives.
  Open handles die. The boot id stays.
- `power_fail(rng)` is a machine crash: each file keeps its synced bytes plus a random prefix of
  its unsynced writes (in order), the next unsynced write possibly torn at a random byte; each
  directory keeps its synced entries plus a random prefix of its unsynced operations (a file
  created or renamed without `sync_dir` may vanish; a file not reachable from a durable entry is
  gone). The boot id changes. ``fdatasync`` and ``fsync`` have the same effect here: the only
  metadata the archive relies on is the file size, which both make durable.
- `capacity_bytes` (disk full) and `fail(op, errno)` (one-shot injected ENOSPC/EIO) let tests
  exercise the archive's error handling.
- `open_handles` counts live handles as the kernel counts descriptors, and `max_open_files`
  (like ``ulimit -n``) makes `open_file` fail with EMFILE past it, so a handle leak shows up in
  the simulator as it would in production.
"""
from __future__ import annotations

import errno
import os
import random
import stat
import sys
from typing import Any

from ..errors import AeronpyError

__all__ = ["FileSystem", "OsFileSystem", "MemFileSystem", "NotARegularFileError", "open_regular",
           "read_regular", "check_regular_if_present", "file_kind"]


# --------------------------------------------------------------------------------------------
# Special files. A FIFO, a device (a link to /dev/zero), a socket or a directory where a data
# dir file (or the config) belongs must not hang a node or a tool: opening a FIFO for reading
# blocks until a writer comes (SIGTERM cannot end that wait: Python retries the open after the
# handler ran), reading /dev/zero never ends. Every file aeronpy reads or writes in place is
# opened with `open_regular`: O_NONBLOCK (the open itself never waits), then fstat, and
# anything but a regular file is refused with `NotARegularFileError` naming it.

_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_NOCTTY = getattr(os, "O_NOCTTY", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


class NotARegularFileError(AeronpyError, OSError):
    """A path that must be a regular file is a directory, FIFO, device or socket. The message
    says which file, what it is, and what to do (``hint``)."""

    def __init__(self, path: str, kind: str, hint: str | None = None):
        self.path, self.kind = path, kind
        self.message = (f"{path} is {kind}, not a regular file: "
                        f"{hint or 'move it aside or remove it (aeronpy keeps a regular file there)'}")
        OSError.__init__(self, errno.EINVAL, self.message)
        self.filename = path

    def __str__(self) -> str:
        return self.message


def file_kind(path: str, mode: int | None = None) -> str:
    """What ``path`` is, for a message: "a directory", "a FIFO (named pipe)", ..., with the
    link target for a symbolic link."""
    if mode is None:
        mode = os.stat(path).st_mode
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            break
    else:
        name = "a special file"
    try:
        if os.path.islink(path):
            return f"a symbolic link to {os.path.realpath(path)} ({name})"
    except (OSError, ValueError):
        pass
    return name


def _refusal(path: str, hint: str | None) -> NotARegularFileError | None:
    """The refusal for ``path`` when it exists and is not a regular file, else None."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    return NotARegularFileError(path, file_kind(path, mode), hint)


def check_regular_if_present(path: str, hint: str | None = None) -> None:
    """Raise `NotARegularFileError` when ``path`` exists and is not a regular file (before
    replacing it, deleting it or handing it to code that would block on it)."""
    refusal = _refusal(path, hint)
    if refusal is not None:
        raise refusal


def open_regular(path: str, flags: int = os.O_RDONLY, mode: int = 0o644,
                 hint: str | None = None) -> int:
    """``os.open(path, flags, mode)`` that never blocks on a FIFO and returns a descriptor of
    a regular file only: anything else raises `NotARegularFileError` (an `OSError`), without
    waiting for a FIFO's other end. The descriptor is blocking again on return."""
    path = os.fspath(path)
    try:
        fd = os.open(path, flags | _O_NONBLOCK | _O_NOCTTY | _O_BINARY, mode)
    except OSError:
        # EISDIR (a directory opened for writing), ENXIO (a FIFO with no reader opened for
        # writing), ...: say what is in the way when it is not a regular file
        refusal = _refusal(path, hint)
        if refusal is not None:
            raise refusal from None
        raise
    try:
        st_mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(st_mode):
            raise NotARegularFileError(path, file_kind(path, st_mode), hint)
        if _O_NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str, max_bytes: int | None = None, hint: str | None = None,
                 what: str = "file") -> bytearray:
    """The contents of the regular file ``path`` (`open_regular`), at most its size when
    opened: a file growing meanwhile is not followed. With ``max_bytes``, a larger file raises
    `ValueError` naming it, and nothing is read."""
    fd = open_regular(path, os.O_RDONLY, hint=hint)
    with open(fd, "rb", buffering=0) as f:
        size = os.fstat(fd).st_size
        if max_bytes is not None and size > max_bytes:
            raise ValueError(f"{path} is {size} bytes, more than a {what} can be "
                             f"({max_bytes} bytes at most)")
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
    del view
    if got < size:
        del buf[got:]
    return buf


def write_replace(fs: "FileSystem", directory: str, name: str, data, *, tmp_suffix: str = ".tmp",
                  sync_directory: bool = True) -> None:
    """Atomically replace ``directory/name`` with ``data``, durable on return: a temporary
    file written and fsynced, renamed over the old one, the directory synced (unless
    ``sync_directory`` is false: a caller that must know whether the rename was done syncs
    the directory itself)."""
    path = f"{directory}/{name}"
    tmp = path + tmp_suffix
    h = fs.open_file(tmp, create=True)
    try:
        fs.truncate(h, 0)
        fs.pwrite(h, data, 0)
        fs.fsync(h)
    finally:
        fs.close(h)
    fs.rename(tmp, path)
    if sync_directory:
        fs.sync_dir(directory)


class FileSystem:
    """The interface both implementations provide (see the module docstring)."""

    def open_file(self, path: str, create: bool = False) -> Any: raise NotImplementedError
    def close(self, handle: Any) -> None: raise NotImplementedError
    def pwrite(self, handle: Any, data, offset: int) -> None: raise NotImplementedError
    def pread(self, handle: Any, size: int, offset: int) -> bytes: raise NotImplementedError
    def size(self, handle: Any) -> int: raise NotImplementedError
    def allocate(self, handle: Any, size: int) -> None: raise NotImplementedError
    def truncate(self, handle: Any, size: int) -> None: raise NotImplementedError
    def fdatasync(self, handle: Any) -> None: raise NotImplementedError
    def fsync(self, handle: Any) -> None: raise NotImplementedError
    def sync_dir(self, path: str) -> None: raise NotImplementedError
    def read_file(self, path: str, max_bytes: int | None = None) -> bytearray:
        raise NotImplementedError
    def listdir(self, path: str) -> list: raise NotImplementedError
    def exists(self, path: str) -> bool: raise NotImplementedError
    def makedirs(self, path: str) -> None: raise NotImplementedError
    def rename(self, src: str, dst: str) -> None: raise NotImplementedError
    def remove(self, path: str) -> None: raise NotImplementedError
    def boot_id(self) -> bytes | None: return None
    def map_shared(self, handle: Any, size: int) -> Any: return None
    def unlinked(self, handle: Any) -> bool: return False


# --------------------------------------------------------------------------------------------
class OsFileSystem(FileSystem):
    """Real files through ``os``: the syscalls release the GIL, so a syncer thread overlaps
    with the duty cycle."""

    def open_file(self, path: str, create: bool = False) -> int:
        """A regular file only: a FIFO, device or directory in its place raises
        `NotARegularFileError` naming it (never blocks, never reads without end)."""
        return open_regular(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)

    def close(self, handle: int) -> None:
        os.close(handle)

    def pwrite(self, handle: int, data, offset: int) -> None:
        done = os.pwrite(handle, data, offset)
        size = data.nbytes if type(data) is memoryview else len(data)
        if done == size:
            return                 # nearly always: the whole buffer in one call
        view = memoryview(data).cast("B")
        size = len(view)           # in bytes, whatever ``data`` is
        while done < size:
            n = os.pwrite(handle, view[done:], offset + done)
            if n <= 0:  # pragma: no cover - the kernel raises ENOSPC instead
                raise OSError(errno.EIO, "pwrite wrote nothing")
            done += n

    def pread(self, handle: int, size: int, offset: int) -> bytes:
        return os.pread(handle, size, offset)

    def size(self, handle: int) -> int:
        return os.fstat(handle).st_size

    def allocate(self, handle: int, size: int) -> None:
        current = os.fstat(handle).st_size
        if size <= current:
            return
        fallocate = getattr(os, "posix_fallocate", None)
        if fallocate is not None:
            try:
                fallocate(handle, current, size - current)
                return
            except OSError as exc:  # filesystems without fallocate: fall back to a sparse extend
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", -1)):
                    raise
        os.ftruncate(handle, size)

    def truncate(self, handle: int, size: int) -> None:
        os.ftruncate(handle, size)

    def fdatasync(self, handle: int) -> None:
        (getattr(os, "fdatasync", None) or os.fsync)(handle)

    def fsync(self, handle: int) -> None:
        os.fsync(handle)

    def sync_dir(self, path: str) -> None:
        if sys.platform == "win32":  # pragma: no cover - NTFS has no directory fsync
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_file(self, path: str, max_bytes: int | None = None) -> bytearray:
        """At most the file's size when opened; anything but a regular file raises
        `NotARegularFileError` naming it. With ``max_bytes``, a larger file raises
        `ValueError` and nothing is read (a control file of fixed size is never loaded whole
        whatever it grew to)."""
        return read_regular(path, max_bytes=max_bytes)

    def listdir(self, path: str) -> list:
        return os.listdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        os.remove(path)

    def boot_id(self) -> bytes | None:
        return _os_boot_id()

    def unlinked(self, handle: int) -> bool:
        """The open file has no name any more (deleted under us)."""
        return os.fstat(handle).st_nlink == 0

    def map_shared(self, handle: int, size: int):
        """The file's first ``size`` bytes mapped shared, after allocating them (so a store
        never meets a hole a full disk cannot fill: that would be SIGBUS, not an error)."""
        self.allocate(handle, size)
        if os.fstat(handle).st_blocks * 512 < size:      # a sparse extend: no real blocks
            return None
        import mmap
        return mmap.mmap(handle, size)


_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
_boot_id_cache: list = []


def _os_boot_id() -> bytes | None:
    """Linux's boot id as 16 bytes (read once per process); None on other systems."""
    if not _boot_id_cache:
        value = None
        try:
            with open(_BOOT_ID_PATH, "rb") as f:
                text = f.read(64).strip().replace(b"-", b"")
            if len(text) == 32:
                value = bytes.fromhex(text.decode("ascii"))
        except (OSError, ValueError):
            pass
        _boot_id_cache.append(value)
    return _boot_id_cache[0]


# --------------------------------------------------------------------------------------------
class _MemInode:
    __slots__ = ("written", "durable", "pending")

    def __init__(self):
        self.written = bytearray()   # what the OS shows
        self.durable = bytearray()   # what is on the platter
        self.pending: list = []      # unsynced operations in order: ("w", off, bytes) | ("z", size)


class _MemHandle:
    __slots__ = ("inode", "epoch", "path", "closed")

    def __init__(self, inode: _MemInode, epoch: int, path: str):
        self.inode, self.epoch, self.path, self.closed = inode, epoch, path, False


def _apply(buf: bytearray, op: tuple) -> None:
    if op[0] == "w":
        _, off, data = op
        if off > len(buf):
            buf.extend(bytes(off - len(buf)))
        buf[off:off + len(data)] = data
    else:
        size = op[1]
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(bytes(size - len(buf)))


class MemFileSystem(FileSystem):
    """An in-memory disk with page-cache semantics (see the module docstring).

    Single-threaded by design (the simulator drives it from one thread). ``capacity_bytes``
    bounds the sum of file sizes: a write or allocation past it fails with ENOSPC after
    writing what fits, as a real disk does.
    """

    def __init__(self, capacity_bytes: int | None = None, max_open_files: int | None = None):
        self.capacity_bytes = capacity_bytes
        self.max_open_files = max_open_files
        self._live_handles: set = set()       # id(handle) of handles open in this epoch
        self.open_handles_peak = 0
        self._epoch = 0
        self._dirs: dict = {"/": {}}          # dir -> {name: inode | None for subdir}
        self._durable_dirs: dict = {"/": {}}
        self._dir_pending: dict = {"/": []}   # dir -> unsynced ops: ("set"|"del"|"mv", ...)
        self._faults: list = []               # [op, errno, skip, torn]
        self.sync_calls = 0
        self._boots = 0                       # power failures so far: names the boot

    def unlinked(self, handle) -> bool:
        inode = handle.inode
        return not any(node is inode for names in self._dirs.values() for node in names.values())

    # -- fault injection ---------------------------------------------------------------------
    def fail(self, op: str, err: int = errno.EIO, skip: int = 0, torn: bool = True) -> None:
        """Make the (``skip``+1)-th next ``op`` call fail once with ``err``. ``op`` is one of
        ``write`` (pwrite/allocate/truncate), ``sync`` (fdatasync/fsync/sync_dir), ``create``,
        ``rename``. A failing write with ``torn`` first writes half its bytes."""
        if op not in ("write", "sync", "create", "rename"):
            raise ValueError(f"unknown op {op!r}")
        self._faults.append([op, err, skip, torn])

    def _check_fault(self, op: str):
        for fault in self._faults:
            if fault[0] == op:
                if fault[2] > 0:
                    fault[2] -= 1
                    return None
                self._faults.remove(fault)
                return fault
        return None

    # -- crash models ------------------------------------------------------------------------
    @property
    def open_handles(self) -> int:
        return len(self._live_handles)

    def crash(self) -> None:
        """Process crash: everything written survives; open handles die."""
        self._epoch += 1
        self._live_handles.clear()

    def power_fail(self, rng: random.Random) -> None:
        """Machine crash: keep synced state plus a random in-order prefix of what was not
        synced, the next unsynced write possibly torn at a random byte."""
        self._epoch += 1
        self._boots += 1
        self._live_handles.clear()
        for d in list(self._dirs):
            entries = dict(self._durable_dirs.get(d, {}))
            pending = self._dir_pending.get(d, [])
            for op in pending[: rng.randint(0, len(pending))]:
                _apply_dir(entries, op)
            self._dirs[d] = entries
            self._durable_dirs[d] = dict(entries)
            self._dir_pending[d] = []
        for inode in self._all_inodes():
            buf = bytearray(inode.durable)
            keep = rng.randint(0, len(inode.pending))
            for op in inode.pending[:keep]:
                _apply(buf, op)
            if keep < len(inode.pending):
                op = inode.pending[keep]
                if op[0] == "w" and len(op[2]) > 1 and rng.random() < 0.5:
                    _apply(buf, ("w", op[1], op[2][: rng.randrange(1, len(op[2]))]))
            inode.written = buf
            inode.durable = bytearray(buf)
            inode.pending = []

    def boot_id(self) -> bytes:
        return b"memboot:" + self._boots.to_bytes(8, "little")

    def _all_inodes(self):
        seen = {}
        for entries in self._dirs.values():
            for inode in entries.values():
                if isinstance(inode, _MemInode):
                    seen[id(inode)] = inode
        return list(seen.values())

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _split(path: str) -> tuple:
        path = os.path.normpath(path)
        if not path.startswith("/"):
            path = "/" + path
        return os.path.dirname(path) or "/", os.path.basename(path)

    def _dir(self, d: str) -> dict:
        d = os.path.normpath(d) if d != "/" else d
        if d not in self._dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", d)
        return self._dirs[d]

    def _dir_op(self, d: str, op: tuple) -> None:
        _apply_dir(self._dirs[d], op)
        self._dir_pending[d].append(op)

    def _live(self, h: _MemHandle) -> _MemInode:
        if h.closed or h.epoch != self._epoch:
            raise OSError(errno.EBADF, "stale or closed handle", h.path)
        return h.inode

    def _used_bytes(self) -> int:
        return sum(len(i.written) for i in self._all_inodes())

    def _room(self, growth: int) -> int:
        if self.capacity_bytes is None:
            return growth
        return max(0, min(growth, self.capacity_bytes - self._used_bytes()))

    # -- the FileSystem interface ------------------------------------------------------------
    def open_file(self, path: str, create: bool = False) -> _MemHandle:
        d, name = self._split(path)
        entries = self._dir(d)
        inode = entries.get(name)
        if inode is None and name in entries:
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        if inode is None:
            if not create:
                raise FileNotFoundError(errno.ENOENT, "no such file", path)
            fault = self._check_fault("create")
            if fault:
                raise OSError(fault[1], os.strerror(fault[1]), path)
        if self.max_open_files is not None and len(self._live_handles) >= self.max_open_files:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE), path)
        if inode is None:
            inode = _MemInode()
            self._dir_op(d, ("set", name, inode))
        handle = _MemHandle(inode, self._epoch, path)
        self._live_handles.add(id(handle))
        self.open_handles_peak = max(self.open_handles_peak, len(self._live_handles))
        return handle

    def close(self, handle: _MemHandle) -> None:
        handle.closed = True
        self._live_handles.discard(id(handle))

    def pwrite(self, handle: _MemHandle, data, offset: int) -> None:
        inode = self._live(handle)
        data = bytes(data)
        growth = max(0, offset + len(data) - len(inode.written))
        fault = self._check_fault("write")
        room = self._room(growth)
        if fault or room < growth:
            err = fault[1] if fault else errno.ENOSPC
            fits = len(data) - (growth - room)
            if fault:
                fits = len(data) // 2 if fault[3] else 0
            if fits > 0:
                op = ("w", offset, data[:fits])
                _apply(inode.written, op)
                inode.pending.append(op)
            raise OSError(err, os.strerror(err), handle.path)
        op = ("w", offset, data)
        _apply(inode.written, op)
        inode.pending.append(op)

    def pread(self, handle: _MemHandle, size: int, offset: int) -> bytes:
        inode = self._live(handle)
        return bytes(inode.written[offset:offset + size])

    def size(self, handle: _MemHandle) -> int:
        return len(self._live(handle).written)

    def allocate(self, handle: _MemHandle, size: int) -> None:
        inode = self._live(handle)
        if size <= len(inode.written):
            return
        fault = self._check_fault("write")
        if fault:
            raise OSError(fault[1], os.strerror(fault[1]), handle.path)
        if self._room(size - len(inode.written)) < size - len(inode.written):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), handle.path)
        op = ("z", size)
        _apply(inode.written, op)
        inode.pending.append(op)

    def truncate(self, handle: _MemHandle, size: int) -> None:
        inode = self._live(handle)
        fault = self._check_fault("write")
        if fault:
            raise OSError(fault[1], os.strerror(fault[1]), handle.path)
        op = ("z", size)
        _apply(inode.written, op)
        inode.pending.append(op)

    def fdatasync(self, handle: _MemHandle) -> None:
        inode = self._live(handle)
        fault = self._check_fault("sync")
        self.sync_calls += 1
        if fault:
            raise OSError(fault[1], os.strerror(fault[1]), handle.path)
        inode.durable = bytearray(inode.written)
        inode.pending = []

    fsync = fdatasync

    def sync_dir(self, path: str) -> None:
        path = os.path.normpath(path)
        entries = self._dir(path)
        fault = self._check_fault("sync")
        self.sync_calls += 1
        if fault:
            raise OSError(fault[1], os.strerror(fault[1]), path)
        self._durable_dirs[path] = dict(entries)
        self._dir_pending[path] = []

    def read_file(self, path: str, max_bytes: int | None = None) -> bytearray:
        d, name = self._split(path)
        inode = self._dir(d).get(name)
        if not isinstance(inode, _MemInode):
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        if max_bytes is not None and len(inode.written) > max_bytes:
            raise ValueError(f"{path} is {len(inode.written)} bytes, more than {max_bytes}")
        return bytearray(inode.written)

    def listdir(self, path: str) -> list:
        return list(self._dir(os.path.normpath(path)))

    def exists(self, path: str) -> bool:
        path = os.path.normpath(path)
        if path in self._dirs:
            return True
        d, name = self._split(path)
        return d in self._dirs and name in self._dirs[d]

    def makedirs(self, path: str) -> None:
        path = os.path.normpath(path)
        if not path.startswith("/"):
            path = "/" + path
        if path in self._dirs:
            return
        parent, name = self._split(path)
        self.makedirs(parent)
        if isinstance(self._dirs[parent].get(name), _MemInode):
            raise NotADirectoryError(errno.ENOTDIR, "a file is in the way", path)
        self._dirs[path] = {}
        self._durable_dirs[path] = {}
        self._dir_pending[path] = []
        # Directories themselves are made durable at once: the archive creates its data dir
        # before anything else and the model gains nothing from losing it.
        self._dirs[parent][name] = None
        self._durable_dirs[parent][name] = None

    def rename(self, src: str, dst: str) -> None:
        sd, sname = self._split(src)
        dd, dname = self._split(dst)
        inode = self._dir(sd).get(sname)
        if not isinstance(inode, _MemInode):
            raise FileNotFoundError(errno.ENOENT, "no such file", src)
        self._dir(dd)
        fault = self._check_fault("rename")
        if fault:
            raise OSError(fault[1], os.strerror(fault[1]), src)
        if sd == dd:  # atomic within one directory, as rename(2) on a journaling file system
            self._dir_op(sd, ("mv", sname, dname))
        else:
            self._dir_op(dd, ("set", dname, inode))
            self._dir_op(sd, ("del", sname))

    def remove(self, path: str) -> None:
        d, name = self._split(path)
        if not isinstance(self._dir(d).get(name), _MemInode):
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        self._dir_op(d, ("del", name))


def _apply_dir(entries: dict, op: tuple) -> None:
    kind = op[0]
    if kind == "set":
        entries[op[1]] = op[2]
    elif kind == "del":
        entries.pop(op[1], None)
    else:  # "mv"
        if op[1] in entries:
            entries[op[2]] = entries.pop(op[1])
