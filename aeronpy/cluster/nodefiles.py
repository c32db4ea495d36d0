"""The node's error log (``DATA_DIR/errors.log``) and pid lock file (``DATA_DIR/node.pid``).

Both live beside ``counters.dat`` and, like it, are readable by ``aeronpy tool`` from another
process, also after the node died. `record_failed_start` leaves the same evidence for a node
that failed before its duty cycle began (a service's ``on_start`` raised, a snapshot that does
not match the services).
"""
from __future__ import annotations

import errno
import os
import re
import struct
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Optional

import mmap

from aeronpy.archive.errors import ArchiveIOError
from aeronpy.archive.fs import NotARegularFileError, open_regular, read_regular
from aeronpy.cluster.counters import CountersUnavailableError, pid_alive
from aeronpy.errors import ConfigError

ERRORS_FILE = "errors.log"
PID_FILE = "node.pid"

# -- error log ----------------------------------------------------------------------------------

_ERR_MAGIC = b"AERONERR"
_ERR_HEADER = struct.Struct("<8sIII4x")   # magic, version, capacity, record_bytes
_ERR_HEADER_BYTES = 64
_ERR_NEXT_SEQ_OFFSET = 32                 # i64: records ever started
_ERR_RECORD = struct.Struct("<qqqI4x")    # first_ns, last_ns, count, text_length
_ERR_RECORD_BYTES = 512
_ERR_TEXT_MAX = _ERR_RECORD_BYTES - _ERR_RECORD.size
# The traceback of each record lives in a region after the ring, one slot per record:
# u32 length | UTF-8 text. Its slot size is at _ERR_DETAIL_BYTES_OFFSET in the header (0 in
# files written before it existed: no tracebacks, and readers of those days ignore the region).
_ERR_DETAIL_BYTES_OFFSET = 40             # u32
_ERR_DETAIL_BYTES = 3584                  # a record and its traceback: 4 KiB
_ERR_DETAIL_LEN = struct.Struct("<I")
_TRACEBACK_FRAMES = 8                     # the last frames of each exception in the chain
_TRACEBACK_LINE_MAX = 300
# A disk-full error names what it was writing when the space ran out, and that carries the
# log index: the entries being appended (`appending entries N..M`), a snapshot's temporary
# file (`snapshot-<index>-<term>.snap.tmp`), the received snapshot's index and sender. A full
# disk fails so at every index (each snapshot of the member's own, each start under a
# supervisor), so the identity of such an error is its text with the numbers left out: one
# entry whose count rises, not one per index filling the ring and pushing older errors out.
_DISK_FULL_TEXT = re.compile(rb"\[Errno (?:%d|%d)\]|the disk is full"
                             % (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)))
_NUMBER = re.compile(rb"\d+")


def _identity(raw: bytes) -> bytes:
    """What makes two records the same error: the text itself, or for a disk-full error
    (errno ENOSPC or EDQUOT, or "the disk is full" in its message) the text with every
    number replaced, so that the index it failed at does not count."""
    if _DISK_FULL_TEXT.search(raw):
        return _NUMBER.sub(b"#", raw)
    return raw


@dataclass(frozen=True)
class ErrorEntry:
    first_ns: int
    last_ns: int
    count: int
    text: str
    detail: str = ""   # the traceback of its first occurrence ("" for a message)


def describe_error(error: "BaseException | str") -> str:
    """One line for the error log: type, message and where it was raised (for an error raised
    ``from`` another, where the first of the chain was: a service's line, not the wrapper's)."""
    if isinstance(error, BaseException):
        text = f"{type(error).__qualname__}: {error}"
        origin, seen = error, {id(error)}
        while origin.__cause__ is not None and origin.__cause__.__traceback__ is not None \
                and id(origin.__cause__) not in seen:
            origin = origin.__cause__
            seen.add(id(origin))
        frames = traceback.extract_tb(origin.__traceback__) if origin.__traceback__ else []
        if frames:
            last = frames[-1]
            place = f" (at {os.path.basename(last.filename)}:{last.lineno} in {last.name})"
            room = _ERR_TEXT_MAX - len(place.encode(errors="replace"))
            if len(text.encode(errors="replace")) > room:    # a long message keeps the place
                text = text.encode(errors="replace")[:room - 3].decode(errors="ignore") + "..."
            text += place
        return text
    return str(error)


def describe_traceback(error: "BaseException | str", max_bytes: int = _ERR_DETAIL_BYTES - 4) -> str:
    """The traceback of ``error`` for the error log, at most ``max_bytes`` of UTF-8: the last
    frames of each exception in its chain (the cause first, as Python prints it); when still
    too long, lines from the middle are cut, so the root cause and the final error stay.
    "" for a message or an exception that was never raised."""
    if not isinstance(error, BaseException):
        return ""
    chained, seen = error, set()
    while chained is not None and chained.__traceback__ is None and id(chained) not in seen:
        seen.add(id(chained))
        chained = chained.__cause__ or chained.__context__
    if chained is None or chained.__traceback__ is None:
        return ""
    te = traceback.TracebackException.from_exception(error, limit=-_TRACEBACK_FRAMES)
    lines = "".join(te.format()).rstrip("\n").split("\n")
    lines = [ln if len(ln) <= _TRACEBACK_LINE_MAX else ln[:_TRACEBACK_LINE_MAX - 3] + "..."
             for ln in lines]
    text = "\n".join(lines)
    if len(text.encode(errors="replace")) <= max_bytes:
        return text
    budget = max_bytes - 40                  # room for the marker line
    head: list = []
    tail: list = []
    used, i, j, from_end = 0, 0, len(lines) - 1, True
    while i <= j:
        line = lines[j] if from_end else lines[i]
        cost = len(line.encode(errors="replace")) + 1
        if used + cost > budget:
            break
        used += cost
        if from_end:
            tail.insert(0, line)
            j -= 1
        else:
            head.append(line)
            i += 1
        from_end = not from_end
    text = "\n".join(head + [f"  ... ({j - i + 1} lines cut) ..."] + tail)
    return text.encode(errors="replace")[:max_bytes].decode(errors="ignore")


def _allocate(fd: int, size: int) -> None:
    """Give the file's first ``size`` bytes real blocks (ENOSPC now, not SIGBUS later):
    posix_fallocate where the filesystem has it, else zeros written over what reads as a
    hole (a filesystem may still keep written zeros as a hole; the best it offers)."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", -1)):
                raise
    if os.fstat(fd).st_blocks * 512 >= size:
        return
    chunk, page = 1 << 16, 4096
    for at in range(0, size, chunk):
        block = os.pread(fd, min(chunk, size - at), at)
        for off in range(0, len(block), page):     # a page at a time: a chunk holding the
            piece = block[off:off + page]          # header is mostly hole all the same
            if not any(piece):
                os.pwrite(fd, piece, at + off)
    os.fsync(fd)


class ErrorLog:
    """A bounded ring of distinct errors in ``DATA_DIR/errors.log``, kept across restarts.

    As Aeron's distinct error log: an error already in the ring bumps its count and last-seen
    time instead of taking a new record, so an error storm cannot wipe out the first cause.
    ``capacity`` records of 512 bytes (the one-line summary), each with a 3.5 KiB slot for the
    traceback of its first occurrence (`describe_traceback`); the oldest is overwritten when
    full. Records are written count-last, so a concurrent reader skips (count 0) a record being
    written. A log written before tracebacks were kept is extended in place, its records kept.
    Disk-full errors that differ only in their numbers (the log index they failed at) are one
    error (`_identity`): their record shows the latest one's text, and the traceback (with
    the index) of the first.
    """

    def __init__(self, data_dir: "str | os.PathLike", capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.path = os.path.join(os.fspath(data_dir), ERRORS_FILE)
        self.capacity = capacity
        ring = _ERR_HEADER_BYTES + capacity * _ERR_RECORD_BYTES
        size = ring + capacity * _ERR_DETAIL_BYTES
        self._details_at = ring
        os.makedirs(os.fspath(data_dir), exist_ok=True)
        existing = self._existing_layout(ring)   # a FIFO, device or directory: refused
        if existing is None:
            head = bytearray(_ERR_HEADER_BYTES)
            _ERR_HEADER.pack_into(head, 0, _ERR_MAGIC, 1, capacity, _ERR_RECORD_BYTES)
            _ERR_DETAIL_LEN.pack_into(head, _ERR_DETAIL_BYTES_OFFSET, _ERR_DETAIL_BYTES)
            tmp = f"{self.path}.{os.getpid()}.tmp"
            try:
                with open(tmp, "wb") as f:
                    f.write(head)
                    f.truncate(size)          # zeros: no records, no tracebacks
                os.replace(tmp, self.path)
            except BaseException:
                _remove_quietly(tmp)
                raise
        elif existing == 0:               # written before tracebacks were kept: extend it
            with os.fdopen(open_regular(self.path, os.O_RDWR), "r+b") as f:
                f.truncate(size)
                f.seek(_ERR_DETAIL_BYTES_OFFSET)
                f.write(_ERR_DETAIL_LEN.pack(_ERR_DETAIL_BYTES))
        self._file = os.fdopen(open_regular(self.path, os.O_RDWR), "r+b")
        try:
            # every page allocated before it is mapped: a store into a hole the disk has no
            # room for is SIGBUS, and the member died of it unrecorded at its first error on
            # a full disk (the file was sparse: written 4 KiB, truncated to its size)
            _allocate(self._file.fileno(), size)
            self._map = mmap.mmap(self._file.fileno(), size)
        except BaseException:
            self._file.close()
            raise
        self._next_seq = memoryview(self._map)[_ERR_NEXT_SEQ_OFFSET:_ERR_NEXT_SEQ_OFFSET + 8].cast("q")
        self._recent: dict = self._records_in_file()   # identity -> seq of its record
        self._lock = threading.Lock()

    def _records_in_file(self) -> dict:
        """identity (`_identity`) -> seq of the records already in the ring (a log kept from
        an earlier run): an error seen again after a restart bumps its record, as within one
        run, so a member that fails the same way at every start keeps one entry, not one per
        start. Where an identity is in the ring twice (written before this was done), the
        newer record counts."""
        m, next_seq, recent = self._map, self._next_seq[0], {}
        for seq in range(max(0, next_seq - self.capacity), max(0, next_seq)):
            at = _ERR_HEADER_BYTES + (seq % self.capacity) * _ERR_RECORD_BYTES
            _first, _last, count, length = _ERR_RECORD.unpack_from(m, at)
            if count > 0 and length <= _ERR_TEXT_MAX:
                recent[_identity(bytes(m[at + _ERR_RECORD.size:at + _ERR_RECORD.size + length]))] = seq
        return recent

    def _existing_layout(self, ring: int) -> Optional[int]:
        """The traceback slot size of an existing log of this capacity that can be kept
        (0: one from before tracebacks were kept, to extend), or None: make a new one."""
        try:
            with os.fdopen(open_regular(self.path), "rb") as f:
                head = f.read(_ERR_HEADER_BYTES)
                file_size = os.fstat(f.fileno()).st_size
        except NotARegularFileError:
            raise                         # never replaced, and never read: it could block
        except OSError:
            return None
        if len(head) < _ERR_HEADER_BYTES or \
                _ERR_HEADER.unpack_from(head) != (_ERR_MAGIC, 1, self.capacity, _ERR_RECORD_BYTES):
            return None
        (detail_bytes,) = _ERR_DETAIL_LEN.unpack_from(head, _ERR_DETAIL_BYTES_OFFSET)
        if detail_bytes == 0 and file_size == ring:
            return 0
        if detail_bytes == _ERR_DETAIL_BYTES and file_size == ring + self.capacity * detail_bytes:
            return detail_bytes
        return None

    def record(self, error: "BaseException | str", now_ns: Optional[int] = None,
               detail: Optional[str] = None) -> None:
        """Record an exception (its summary line and, the first time, its traceback) or a
        message; ``detail`` replaces the traceback. Never raises for a closed log."""
        text = describe_error(error)
        raw = text.encode(errors="replace")[:_ERR_TEXT_MAX].decode(errors="ignore").encode()
        now_ns = time.time_ns() if now_ns is None else now_ns
        key = _identity(raw)
        with self._lock:
            if self._map is None:
                return
            m, seq = self._map, self._next_seq[0]
            old = self._recent.get(key)
            if old is not None and old > seq - 1 - self.capacity and old < seq:
                at = _ERR_HEADER_BYTES + (old % self.capacity) * _ERR_RECORD_BYTES
                (count,) = struct.unpack_from("<q", m, at + 16)
                text_at = at + _ERR_RECORD.size
                (length,) = struct.unpack_from("<I", m, at + 24)
                if m[text_at:text_at + length] != raw:
                    # the same disk-full error at another index: the record shows the latest
                    # text (the first one's stays in its traceback), rewritten as a new
                    # record is, so a concurrent reader skips it meanwhile (count 0)
                    struct.pack_into("<q", m, at + 16, 0)
                    m[text_at:text_at + len(raw)] = raw
                    struct.pack_into("<I", m, at + 24, len(raw))
                struct.pack_into("<q", m, at + 8, now_ns)
                struct.pack_into("<q", m, at + 16, count + 1)
                return
            at = _ERR_HEADER_BYTES + (seq % self.capacity) * _ERR_RECORD_BYTES
            struct.pack_into("<q", m, at + 16, 0)                     # invalidate first
            m[at + _ERR_RECORD.size:at + _ERR_RECORD.size + len(raw)] = raw
            tb = describe_traceback(error) if detail is None else detail
            tb_raw = tb.encode(errors="replace")[:_ERR_DETAIL_BYTES - _ERR_DETAIL_LEN.size]
            tb_raw = tb_raw.decode(errors="ignore").encode()
            d_at = self._details_at + (seq % self.capacity) * _ERR_DETAIL_BYTES
            _ERR_DETAIL_LEN.pack_into(m, d_at, len(tb_raw))
            m[d_at + _ERR_DETAIL_LEN.size:d_at + _ERR_DETAIL_LEN.size + len(tb_raw)] = tb_raw
            _ERR_RECORD.pack_into(m, at, now_ns, now_ns, 0, len(raw))
            struct.pack_into("<q", m, at + 16, 1)                     # publish
            self._next_seq[0] = seq + 1
            self._recent[key] = seq
            if len(self._recent) > 4 * self.capacity:
                self._recent = {k: s for k, s in self._recent.items() if s > seq - self.capacity}

    def close(self) -> None:
        with self._lock:
            if self._map is not None:
                self._next_seq.release()
                self._map.close()
                self._file.close()
                self._map = None


def read_errors(data_dir: "str | os.PathLike") -> list:
    """The error log's entries, oldest first; [] when there is no log. An ``errors.log`` that
    is not a regular file (a FIFO, a link to a device, a directory) raises
    `NotARegularFileError` naming it: it is never read."""
    path = os.path.join(os.fspath(data_dir), ERRORS_FILE)
    try:
        data = read_regular(path)
    except FileNotFoundError:
        return []
    if len(data) < _ERR_HEADER_BYTES:
        raise CountersUnavailableError(f"{path} is too short to be an error log")
    magic, version, capacity, record_bytes = _ERR_HEADER.unpack_from(data, 0)
    if magic != _ERR_MAGIC or version != 1 or record_bytes != _ERR_RECORD_BYTES \
            or len(data) < _ERR_HEADER_BYTES + capacity * record_bytes:
        raise CountersUnavailableError(f"{path} is not an aeronpy error log")
    (next_seq,) = struct.unpack_from("<q", data, _ERR_NEXT_SEQ_OFFSET)
    (detail_bytes,) = _ERR_DETAIL_LEN.unpack_from(data, _ERR_DETAIL_BYTES_OFFSET)
    details_at = _ERR_HEADER_BYTES + capacity * record_bytes
    if detail_bytes < _ERR_DETAIL_LEN.size or len(data) < details_at + capacity * detail_bytes:
        detail_bytes = 0                  # a log from before tracebacks were kept
    entries = []
    for seq in range(max(0, next_seq - capacity), next_seq):
        at = _ERR_HEADER_BYTES + (seq % capacity) * record_bytes
        first, last, count, length = _ERR_RECORD.unpack_from(data, at)
        if count <= 0 or length > _ERR_TEXT_MAX:
            continue
        text = data[at + _ERR_RECORD.size:at + _ERR_RECORD.size + length].decode(errors="replace")
        detail = ""
        if detail_bytes:
            d_at = details_at + (seq % capacity) * detail_bytes
            (d_len,) = _ERR_DETAIL_LEN.unpack_from(data, d_at)
            if d_len <= detail_bytes - _ERR_DETAIL_LEN.size:
                start = d_at + _ERR_DETAIL_LEN.size
                detail = data[start:start + d_len].decode(errors="replace")
        entries.append(ErrorEntry(first, last, count, text, detail))
    return entries


# -- pid / lock file ----------------------------------------------------------------------------

try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None


_PID_FILE_MAX_BYTES = 64
_DISK_FULL_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def read_pid(data_dir: "str | os.PathLike") -> Optional[int]:
    """The pid in ``DATA_DIR/node.pid``, or None when there is none (or no regular file is
    there: a FIFO or device is never read)."""
    try:
        fd = open_regular(os.path.join(os.fspath(data_dir), PID_FILE))
        try:
            text = os.read(fd, _PID_FILE_MAX_BYTES)
        finally:
            os.close(fd)
        return int(text.strip() or 0) or None
    except (OSError, ValueError):
        return None


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class PidFile:
    """``DATA_DIR/node.pid``: the running node's pid, and a lock so two nodes never share a dir.

    Two nodes writing one archive would corrupt it, so `acquire` refuses with a ConfigError
    naming ``data_dir``. The lock is an OS file lock (flock) held for the node's lifetime, so it
    is released even by kill -9; without flock (Windows) a live pid in the file refuses.
    """

    def __init__(self, data_dir: "str | os.PathLike") -> None:
        self.data_dir = os.fspath(data_dir)
        self.path = os.path.join(self.data_dir, PID_FILE)
        self._file = None

    def acquire(self, write_pid: bool = True) -> "PidFile":
        """Take the data dir's lock and (``write_pid``) write this process's pid into the file.

        A pid write refused by the disk (full) raises `ArchiveIOError` naming the file; the
        lock is not kept. ``write_pid=False`` takes the lock only (`record_failed_start`: the
        data dir of a start that failed, perhaps on a full disk)."""
        os.makedirs(self.data_dir, exist_ok=True)
        # a FIFO, device or directory there is refused (NotARegularFileError), never opened
        # in a way that could block or written through
        f = os.fdopen(open_regular(self.path, os.O_RDWR | os.O_CREAT, 0o644), "r+")
        try:
            if _fcntl is not None:
                try:
                    _fcntl.flock(f.fileno(), _fcntl.LOCK_EX | _fcntl.LOCK_NB)
                except BlockingIOError:
                    raise ConfigError("data_dir", f"{self.data_dir} is in use by a running node "
                                                  f"(pid {read_pid(self.data_dir)})") from None
            else:
                other = read_pid(self.data_dir)
                if other and other != os.getpid() and pid_alive(other) is not False:
                    raise ConfigError("data_dir", f"{self.data_dir} is in use by pid {other}")
            if write_pid:
                self._write_pid(f.fileno())
        except BaseException:
            try:
                f.close()      # nothing buffered: the pid goes through the descriptor
            except OSError:
                pass
            raise
        self._file = f
        return self

    def _write_pid(self, fd: int) -> None:
        # through the descriptor, not the text layer: a refused write is met here, once,
        # and not again by a flush at close
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            if exc.errno in _DISK_FULL_ERRNOS:
                hint = "the disk is full: free space and start the node again"
            else:
                hint = "fix the data dir's disk and start the node again"
            raise ArchiveIOError(f"cannot write the node's pid to {self.path} ({exc}): {hint}",
                                 exc.errno) from exc

    def release(self) -> None:
        if self._file is not None:
            try:
                os.unlink(self.path)   # while still locked, so no other node's file is removed
            except OSError:
                pass
            self._file.close()
            self._file = None


# -- a node that failed before it ran -----------------------------------------------------------

def record_failed_start(config, error: BaseException, *, extra_slots=(), enum_names=None) -> bool:
    """Leave what a node that failed while starting (``ClusterNode(...)`` raised: a service's
    ``on_start``, a snapshot that does not match the services) could not: the error and its
    traceback in ``errors.log``, and a ``counters.dat`` of this run whose
    ``consensus_module_state`` is FAILED. That file is not marked closed, so once the process
    has exited readers report the node as not running and never as stopped cleanly.

    Only in a data dir this process owns: its pid in ``node.pid`` (the node took the lock
    before failing), or one whose lock it can take now. Returns whether the error is in
    ``errors.log``: False, writing nothing, for a data dir another running node holds (or
    that cannot be written); a ``counters.dat`` that cannot be written (a directory in its
    place, say) does not keep the error out of ``errors.log``. With no room for a new
    ``counters.dat`` (a full disk), the one there is marked FAILED in place."""
    from aeronpy.cluster.counters import (ConsensusModuleState, CountersWriter, SlotId,
                                          mark_failed_in_place)

    data_dir = os.fspath(config.data_dir)
    lock = None
    if read_pid(data_dir) != os.getpid():
        try:
            # the lock only: a pid write could be what the disk refused (full)
            lock = PidFile(data_dir).acquire(write_pid=False)
        except (ConfigError, OSError):
            return False
    recorded = False
    try:
        try:
            errors = ErrorLog(data_dir)
            try:
                errors.record(error)
                recorded = True
            finally:
                errors.close()
        except OSError:
            pass
        try:
            writer = CountersWriter.for_config(config, extra_slots=extra_slots,
                                               enum_names=enum_names)
            writer.values[int(SlotId.CONSENSUS_MODULE_STATE)] = int(ConsensusModuleState.FAILED)
            writer.values[int(SlotId.ERRORS)] = 1
            writer.touch()
            # Deliberately not writer.close(): that marks the file "closed cleanly". The
            # mapping goes with the writer object; what was stored stays in the file.
            del writer
        except OSError:
            # no room for a new file (a full disk): the earlier run's, overwritten in place,
            # so it does not go on saying "stopped cleanly"
            try:
                mark_failed_in_place(data_dir)
            except OSError:
                pass
    finally:
        if lock is not None:
            lock.release()
    return recorded
