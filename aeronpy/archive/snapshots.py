"""Snapshot files: written to a temporary name, checksummed, synced, renamed into place, then
recorded in the recording log. Always synced (regardless of ``file_sync``): once recorded, the
log below a snapshot may be purged, so the snapshot must outlive a power failure.

A snapshot that fails its checksum (or is missing) is skipped on recovery in favour of an older
one; if the log needed after the older one was already purged, recovery says so.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from .._crc import crc32c
from .fs import FileSystem
from .recording_log import RecordingLog, SnapshotEntry

SNAPSHOT_PREFIX = "snapshot-"
SNAPSHOT_SUFFIX = ".snap"
SNAPSHOT_TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class SnapshotInfo:
    """A recorded snapshot that verified: the state after applying entries up to ``index``."""
    index: int
    term: int
    path: str
    checksum: int
    timestamp_ns: int
    size: int


def snapshot_name(index: int, term: int) -> str:
    return f"{SNAPSHOT_PREFIX}{index:020d}-{term}{SNAPSHOT_SUFFIX}"


class SnapshotWriter(io.RawIOBase):
    """A writable binary file for `ClusteredService.on_take_snapshot`; `commit()` publishes it,
    `abort()` (or closing without commit) discards it. Whatever fails on the way (the
    constructor's truncate, a write, the commit's sync or rename) leaves no temporary file
    once the writer is aborted; a constructor that raises has removed it itself."""

    def __init__(self, fs: FileSystem, directory: str, recording_log: RecordingLog,
                 index: int, term: int):
        super().__init__()
        self._fs, self._dir, self._recording_log = fs, directory, recording_log
        self.index, self.term = index, term
        self.name = snapshot_name(index, term)
        self._tmp = f"{directory}/{self.name}{SNAPSHOT_TMP_SUFFIX}"
        self._pos = 0
        self._crc = 0
        self._handle = None
        self._done = True                   # nothing to discard until the file is made
        self._handle = fs.open_file(self._tmp, create=True)
        self._done = False
        try:
            fs.truncate(self._handle, 0)    # a file left by an earlier attempt starts empty
        except BaseException:
            # the file exists now, and the caller gets no writer to abort: discard it here
            # (a full disk failed each snapshot so, leaving a file and a handle each time)
            try:
                self.abort()
            except OSError:
                pass                        # the truncate's error is the one to report
            raise

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self._done:
            raise ValueError("snapshot already committed or aborted")
        view = memoryview(data).cast("B")
        self._fs.pwrite(self._handle, view, self._pos)
        self._crc = crc32c(view, self._crc)
        self._pos += len(view)
        return len(view)

    def read_back(self) -> bytes:
        """Everything written so far (to verify a received snapshot before committing it)."""
        if self._done:
            raise ValueError("snapshot already committed or aborted")
        return bytes(self._fs.read_file(self._tmp))

    def commit(self, timestamp_ns: int = 0) -> SnapshotInfo:
        """Sync, rename into place, sync the directory, record it; returns its info."""
        if self._done:
            raise ValueError("snapshot already committed or aborted")
        self._fs.fsync(self._handle)
        handle, self._handle = self._handle, None
        self._fs.close(handle)
        final = f"{self._dir}/{self.name}"
        self._fs.rename(self._tmp, final)
        # done only once renamed: a failed rename leaves the temporary file to abort()
        self._done = True
        self._fs.sync_dir(self._dir)
        self._recording_log.append_snapshot(
            SnapshotEntry(self.index, self.term, self.name, self._crc, timestamp_ns))
        return SnapshotInfo(self.index, self.term, final, self._crc, timestamp_ns, self._pos)

    def abort(self) -> None:
        if not self._done:
            self._done = True
            handle, self._handle = self._handle, None
            try:
                if handle is not None:          # None: closed by a commit that failed later
                    self._fs.close(handle)
            finally:
                self._fs.remove(self._tmp)

    def close(self) -> None:
        self.abort()
        super().close()


def verify_snapshot(fs: FileSystem, directory: str, entry: SnapshotEntry) -> SnapshotInfo | None:
    """The snapshot's info if its file exists and matches its recorded checksum, else None."""
    path = f"{directory}/{entry.name}"
    if not fs.exists(path):
        return None
    data = fs.read_file(path)
    if crc32c(data) != entry.checksum:
        return None
    return SnapshotInfo(entry.index, entry.term, path, entry.checksum, entry.timestamp_ns, len(data))


def latest_valid_snapshot(fs: FileSystem, directory: str, recording_log: RecordingLog) -> tuple:
    """(newest snapshot that verifies or None, list of recorded snapshots that failed).
    Newest by index, not by position in the recording log: a snapshot taken just before one
    was installed from the leader may be recorded after it."""
    failed = []
    for entry in sorted(recording_log.snapshots(), key=lambda e: e.index, reverse=True):
        info = verify_snapshot(fs, directory, entry)
        if info is not None:
            return info, failed
        failed.append(entry)
    return None, failed


def open_snapshot(fs: FileSystem, info: SnapshotInfo) -> io.BytesIO:
    """A readable binary file over the snapshot's bytes (re-verified)."""
    data = fs.read_file(info.path)
    if crc32c(data) != info.checksum:
        raise ValueError(f"snapshot {info.path} no longer matches its checksum")
    return io.BytesIO(bytes(data))
