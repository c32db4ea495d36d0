"""The node's error log (``DATA_DIR/errors.log``) and pid lock file (``DATA_DIR/node.pid``).

Both live beside ``counters.dat`` and, like it, are readable by ``aeronpy tool`` from another
process, also after the node died.
"""
from __future__ import annotations

import os
import struct
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Optional

import mmap

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


@dataclass(frozen=True)
class ErrorEntry:
    first_ns: int
    last_ns: int
    count: int
    text: str


def describe_error(error: "BaseException | str") -> str:
    """One line for the error log: type, message and where it was raised."""
    if isinstance(error, BaseException):
        text = f"{type(error).__qualname__}: {error}"
        frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ else []
        if frames:
            last = frames[-1]
            text += f" (at {os.path.basename(last.filename)}:{last.lineno} in {last.name})"
        return text
    return str(error)


class ErrorLog:
    """A bounded ring of distinct errors in ``DATA_DIR/errors.log``, kept across restarts.

    As Aeron's distinct error log: an error already in the ring bumps its count and last-seen
    time instead of taking a new record, so an error storm cannot wipe out the first cause.
    ``capacity`` records of 512 bytes; the oldest is overwritten when full. Records are written
    count-last, so a concurrent reader skips (count 0) a record being written.
    """

    def __init__(self, data_dir: "str | os.PathLike", capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.path = os.path.join(os.fspath(data_dir), ERRORS_FILE)
        self.capacity = capacity
        size = _ERR_HEADER_BYTES + capacity * _ERR_RECORD_BYTES
        os.makedirs(os.fspath(data_dir), exist_ok=True)
        if not self._existing_matches(size):
            buf = bytearray(size)
            _ERR_HEADER.pack_into(buf, 0, _ERR_MAGIC, 1, capacity, _ERR_RECORD_BYTES)
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(buf)
            os.replace(tmp, self.path)
        self._file = open(self.path, "r+b")
        self._map = mmap.mmap(self._file.fileno(), size)
        self._next_seq = memoryview(self._map)[_ERR_NEXT_SEQ_OFFSET:_ERR_NEXT_SEQ_OFFSET + 8].cast("q")
        self._recent: dict = {}   # text -> seq of its record
        self._lock = threading.Lock()

    def _existing_matches(self, size: int) -> bool:
        try:
            with open(self.path, "rb") as f:
                head = f.read(_ERR_HEADER.size)
                return (os.fstat(f.fileno()).st_size == size and len(head) == _ERR_HEADER.size
                        and _ERR_HEADER.unpack(head) == (_ERR_MAGIC, 1, self.capacity, _ERR_RECORD_BYTES))
        except OSError:
            return False

    def record(self, error: "BaseException | str", now_ns: Optional[int] = None) -> None:
        """Record an exception or a message; never raises for a closed log."""
        text = describe_error(error)
        raw = text.encode(errors="replace")[:_ERR_TEXT_MAX].decode(errors="ignore").encode()
        now_ns = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            if self._map is None:
                return
            m, seq = self._map, self._next_seq[0]
            old = self._recent.get(raw)
            if old is not None and old > seq - 1 - self.capacity and old < seq:
                at = _ERR_HEADER_BYTES + (old % self.capacity) * _ERR_RECORD_BYTES
                (count,) = struct.unpack_from("<q", m, at + 16)
                struct.pack_into("<q", m, at + 8, now_ns)
                struct.pack_into("<q", m, at + 16, count + 1)
                return
            at = _ERR_HEADER_BYTES + (seq % self.capacity) * _ERR_RECORD_BYTES
            struct.pack_into("<q", m, at + 16, 0)                     # invalidate first
            m[at + _ERR_RECORD.size:at + _ERR_RECORD.size + len(raw)] = raw
            _ERR_RECORD.pack_into(m, at, now_ns, now_ns, 0, len(raw))
            struct.pack_into("<q", m, at + 16, 1)                     # publish
            self._next_seq[0] = seq + 1
            self._recent[raw] = seq
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
    """The error log's entries, oldest first; [] when there is no log."""
    path = os.path.join(os.fspath(data_dir), ERRORS_FILE)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    if len(data) < _ERR_HEADER_BYTES:
        raise CountersUnavailableError(f"{path} is too short to be an error log")
    magic, version, capacity, record_bytes = _ERR_HEADER.unpack_from(data, 0)
    if magic != _ERR_MAGIC or version != 1 or record_bytes != _ERR_RECORD_BYTES \
            or len(data) < _ERR_HEADER_BYTES + capacity * record_bytes:
        raise CountersUnavailableError(f"{path} is not an aeronpy error log")
    (next_seq,) = struct.unpack_from("<q", data, _ERR_NEXT_SEQ_OFFSET)
    entries = []
    for seq in range(max(0, next_seq - capacity), next_seq):
        at = _ERR_HEADER_BYTES + (seq % capacity) * record_bytes
        first, last, count, length = _ERR_RECORD.unpack_from(data, at)
        if count <= 0 or length > _ERR_TEXT_MAX:
            continue
        text = data[at + _ERR_RECORD.size:at + _ERR_RECORD.size + length].decode(errors="replace")
        entries.append(ErrorEntry(first, last, count, text))
    return entries


# -- pid / lock file ----------------------------------------------------------------------------

try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None


def read_pid(data_dir: "str | os.PathLike") -> Optional[int]:
    """The pid in ``DATA_DIR/node.pid``, or None when there is none."""
    try:
        with open(os.path.join(os.fspath(data_dir), PID_FILE)) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


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

    def acquire(self) -> "PidFile":
        os.makedirs(self.data_dir, exist_ok=True)
        f = open(self.path, "a+")
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
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
        except BaseException:
            f.close()
            raise
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            try:
                os.unlink(self.path)   # while still locked, so no other node's file is removed
            except OSError:
                pass
            self._file.close()
            self._file = None
