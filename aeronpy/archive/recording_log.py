"""The recording log: where each term started and which snapshots exist, so recovery knows
where to begin (the latest valid snapshot, then the log after it).

Append-only file ``recording.log`` of fixed 128-byte entries (little-endian):

    0   u32 crc32c of bytes [4, 128)
    4   u16 entry_type   1 = TERM_START, 2 = SNAPSHOT
    6   u16 name_length  bytes of `name` used (SNAPSHOT only)
    8   i64 term
    16  i64 index        TERM_START: first index of the term; SNAPSHOT: last index it covers
    24  i64 timestamp_ns cluster time of the snapshot (0 for TERM_START)
    32  u32 checksum     CRC-32C of the snapshot file's bytes (SNAPSHOT only)
    36  u32 reserved     0
    40  88s name         snapshot file name, UTF-8, zero padded

A torn last entry (a crash while appending) is cut on load. A damaged entry *followed by a
valid SNAPSHOT entry* cannot be a torn write (snapshot entries are synced, and a sync covers
every earlier write of the file), so that is an `ArchiveCorruptError`.

TERM_START entries are the member's term history: the node records (term, first index) once
per term its log receives (`Archive.record_term_starts`), unsynced (informational: recovery
needs none). The file grows by 128 bytes per term and per snapshot; once it holds
``COMPACT_SNAPSHOT_RECORDS`` snapshot records, the append of the next one rewrites it with the
live term starts and the records of the snapshots whose files still exist (a synced copy
renamed over it), so a member that snapshots every few seconds for months neither grows the
file and its in-memory list without bound nor scans them at every snapshot.
"""
from __future__ import annotations

import logging
import struct
import threading
from dataclasses import dataclass

from .._crc import crc32c
from .errors import ArchiveCorruptError
from .fs import FileSystem, write_replace

RECORDING_LOG_FILE = "recording.log"
COMPACTING_SUFFIX = ".compacting"     # the rewrite in progress (a crash leaves it: unused)
COMPACT_SNAPSHOT_RECORDS = 256
_log = logging.getLogger(__name__)

ENTRY_BYTES = 128
TERM_START = 1
SNAPSHOT = 2
_ENTRY = struct.Struct("<IHHqqqII88s")
_NAME_MAX = 88


@dataclass(frozen=True)
class TermStart:
    term: int
    index: int


@dataclass(frozen=True)
class SnapshotEntry:
    index: int
    term: int
    name: str
    checksum: int
    timestamp_ns: int


@dataclass(frozen=True)
class RecoveryPlan:
    """What recovery should load: ``snapshot`` (or None), then the log from ``log_start``;
    ``term_starts`` whose index is at most ``log_end`` (the rest were truncated away)."""
    snapshot: SnapshotEntry | None
    log_start: int
    term_starts: tuple


def _encode(entry_type: int, term: int, index: int, timestamp_ns: int = 0, checksum: int = 0,
            name: str = "") -> bytes:
    raw_name = name.encode("utf-8")
    if len(raw_name) > _NAME_MAX:
        raise ValueError(f"snapshot file name longer than {_NAME_MAX} bytes: {name!r}")
    body = _ENTRY.pack(0, entry_type, len(raw_name), term, index, timestamp_ns, checksum, 0, raw_name)[4:]
    return struct.pack("<I", crc32c(body)) + body


def live_term_starts(entries, log_end: int | None = None, term_at=None) -> list:
    """The live term starts among ``entries``: a later entry supersedes earlier ones at or
    after its index, or of a term not below its own (a rewrite after a truncation re-records
    from there); with ``log_end``, only those at or below it (the rest were cut away); with
    ``term_at(index)`` (the log's term there, None where it cannot tell), not those over an
    entry of another term (a truncation, then a crash before the new term's start was
    recorded). A snapshot entry (committed, so final: its index holds its term for good) ends
    the starts it contradicts: a lower term at or after its index, a higher one at or before."""
    live: list = []
    for e in entries:
        if isinstance(e, TermStart):
            while live and (live[-1].index >= e.index or live[-1].term >= e.term):
                live.pop()
            live.append(e)
        elif isinstance(e, SnapshotEntry):
            live = [t for t in live if not ((t.index >= e.index and t.term < e.term)
                                            or (t.index <= e.index and t.term > e.term))]
    if log_end is not None:
        live = [t for t in live if t.index <= log_end]
    if term_at is not None:
        live = [t for t in live if term_at(t.index) in (None, t.term)]
    return live


class RecordingLog:
    """Load, append to, and plan recovery from ``recording.log``."""

    def __init__(self, fs: FileSystem, directory: str):
        self.fs = fs
        self.directory = directory
        self.path = f"{directory}/{RECORDING_LOG_FILE}"
        self.handle = None
        self.entries: list = []   # TermStart | SnapshotEntry, in file order
        self.size = 0
        self.file_size = 0        # bytes in the file (more than size: a tail not cut yet)
        self.damaged_at = None    # offset of a whole entry that failed its checksum, if any
        # Snapshot records come from the snapshot thread, term starts from the duty cycle: an
        # append takes the offset and writes under this lock (held through a snapshot record's
        # sync; a term start waits for it only when a term begins during that sync).
        self._append_lock = threading.Lock()
        self._closed = False      # close() was called: no append reopens the file
        self.snapshot_records = 0  # SnapshotEntry records in ``entries``
        self.compactions = 0
        self.compact_at = COMPACT_SNAPSHOT_RECORDS

    def load(self, cut: bool = True) -> None:
        """Read every entry; cut a torn tail (and sync the cut). With ``cut=False`` the file is
        left as it is until `cut_torn_tail()` (recovery cuts nothing before it has checked
        the rest of the data dir: a refusal to start must leave the evidence in place)."""
        self.entries = []
        self.damaged_at = None
        self.file_size = 0
        if not self.fs.exists(self.path):
            self.size = 0
            return
        raw = self.fs.read_file(self.path)
        parsed, bad_at = [], None
        for off in range(0, len(raw) - len(raw) % ENTRY_BYTES, ENTRY_BYTES):
            entry = self._decode(raw, off)
            if entry is None:
                if bad_at is None:
                    bad_at = off
                continue
            if bad_at is not None and isinstance(entry, SnapshotEntry):
                raise ArchiveCorruptError("recording-log entry fails its checksum before a later "
                                          "snapshot entry", path=self.path, offset=bad_at)
            if bad_at is None:
                parsed.append(entry)
        self.entries = parsed
        self.snapshot_records = sum(isinstance(e, SnapshotEntry) for e in parsed)
        self.size = len(parsed) * ENTRY_BYTES
        self.file_size = len(raw)
        self.damaged_at = bad_at     # a whole entry that fails its checksum (None: none)
        if cut:
            self.cut_torn_tail()

    def cut_torn_tail(self) -> None:
        """Truncate the file after its last valid entry (synced), if anything follows it."""
        if self.file_size != self.size:
            h = self.fs.open_file(self.path)
            try:
                self.fs.truncate(h, self.size)
                self.fs.fdatasync(h)
            finally:
                self.fs.close(h)
            self.file_size = self.size

    @staticmethod
    def _decode(raw, off: int):
        crc, etype, name_len, term, index, ts, checksum, _, name = _ENTRY.unpack_from(raw, off)
        if crc != crc32c(memoryview(raw)[off + 4:off + ENTRY_BYTES]) or name_len > _NAME_MAX:
            return None
        if etype == TERM_START:
            return TermStart(term, index)
        if etype == SNAPSHOT:
            return SnapshotEntry(index, term, name[:name_len].decode("utf-8", "replace"), checksum, ts)
        return None

    def _append(self, raw: bytes, sync: bool, entry) -> None:
        with self._append_lock:
            self._append_locked(raw, sync)
            self.entries.append(entry)
            if isinstance(entry, SnapshotEntry):
                self.snapshot_records += 1
                # not while a damaged tail waits to be cut (the evidence of a refused start);
                # once cut, damaged_at still reports it, and compaction goes on
                if self.snapshot_records >= self.compact_at and self.file_size == self.size:
                    self._compact_locked()

    def _compact_locked(self) -> None:
        """Rewrite the file with the live term starts, then the latest record of each snapshot
        whose file still exists (in file order). Skipped, with a warning, if that would change
        the term history (a history no sound log gives) or the rewrite fails: the file as it
        was stays in use, and the next try comes COMPACT_SNAPSHOT_RECORDS records later."""
        self.compact_at = self.snapshot_records + COMPACT_SNAPSHOT_RECORDS
        live = live_term_starts(self.entries)
        kept = [e for e in self.snapshots() if self.fs.exists(f"{self.directory}/{e.name}")]
        entries = live + kept
        if live_term_starts(entries) != live:
            _log.warning("%s: not compacted: dropping the records of deleted snapshots would "
                         "change the term history", self.path)
            return
        raw = b"".join(_encode(TERM_START, e.term, e.index) if isinstance(e, TermStart) else
                       _encode(SNAPSHOT, e.term, e.index, e.timestamp_ns, e.checksum, e.name)
                       for e in entries)
        try:
            if self.handle is not None:
                self.fs.close(self.handle)
                self.handle = None                 # reopened (whichever file) at the next append
            # the directory is synced below: a failure there must not hide the rename
            write_replace(self.fs, self.directory, RECORDING_LOG_FILE, raw,
                          tmp_suffix=COMPACTING_SUFFIX, sync_directory=False)
        except OSError as exc:
            _log.warning("%s: compaction failed, the file stays as it is: %r", self.path, exc)
            return
        # renamed: the new file is the one appended to from now on, whatever happens next
        self.entries = entries
        self.snapshot_records = len(kept)
        self.compact_at = len(kept) + COMPACT_SNAPSHOT_RECORDS
        self.size = self.file_size = len(raw)
        self.compactions += 1
        try:
            self.fs.sync_dir(self.directory)
        except OSError as exc:        # either file is sound: a crash finds the old or the new
            _log.warning("%s: compacted, but syncing its directory failed: %r", self.path, exc)

    def _append_locked(self, raw: bytes, sync: bool) -> None:
        if self._closed:
            raise OSError(9, f"{self.path} is closed")
        if self.handle is None:
            fresh = not self.fs.exists(self.path)
            self.handle = self.fs.open_file(self.path, create=True)
            if fresh:
                self.fs.sync_dir(self.directory)
        start = self.size
        try:
            self.fs.pwrite(self.handle, raw, start)
            if sync:
                self.fs.fdatasync(self.handle)
        except BaseException:
            # Not recorded: the next entry goes where this one was, so a write the kernel
            # dropped after a failed sync cannot leave a hole in the middle of the log (which
            # the next start would take for damage). Cut back too, as far as the disk lets us.
            try:
                self.fs.truncate(self.handle, start)
            except OSError:
                pass
            raise
        self.size = start + len(raw)
        self.file_size = max(self.file_size, self.size)

    def append_term_start(self, term: int, index: int, sync: bool) -> None:
        self._append(_encode(TERM_START, term, index), sync, TermStart(term, index))

    def append_snapshot(self, entry: SnapshotEntry) -> None:
        """Always synced: recovery and purging trust recorded snapshots."""
        self._append(_encode(SNAPSHOT, entry.term, entry.index, entry.timestamp_ns,
                             entry.checksum, entry.name), True, entry)

    def snapshots(self) -> list:
        """Recorded snapshots, oldest first. A file recorded again (a snapshot taken again at the
        same index and term after the first copy was found damaged, renamed over it) counts
        once, as its latest record: the file holds that record's bytes."""
        latest: dict = {}
        for e in self.entries:
            if isinstance(e, SnapshotEntry):
                latest.pop(e.name, None)
                latest[e.name] = e
        return list(latest.values())

    def term_starts(self) -> list:
        """The live term starts (`live_term_starts`)."""
        return live_term_starts(self.entries)

    def plan(self, snapshot: SnapshotEntry | None, log_end: int | None = None,
             term_at=None) -> RecoveryPlan:
        """The recovery plan given the snapshot chosen (the newest that verifies); ``log_end``
        and ``term_at`` as for `live_term_starts`."""
        starts = tuple(live_term_starts(self.entries, log_end, term_at))
        return RecoveryPlan(snapshot, snapshot.index + 1 if snapshot else 1, starts)

    def close(self, wait_s: float = 5.0) -> None:
        """Close the file; an append still running on another thread (a snapshot record's
        sync that hangs) is waited for at most ``wait_s``, then the handle is left open for
        it rather than closed under it (the descriptor could be reused by then)."""
        self._closed = True
        if not self._append_lock.acquire(timeout=wait_s):
            _log.warning("%s: an append is still running after %.0f s; not closing it under it",
                         self.path, wait_s)
            return
        try:
            if self.handle is not None:
                self.fs.close(self.handle)
                self.handle = None
        finally:
            self._append_lock.release()
