"""Append-only segment files holding the log's records (layout: docs/archive-format.md).

A segment is a preallocated, zero-filled file named after the index of its first record. A
record never spans two files: when the next record does not fit, the segment is sealed and a
new one begins (a record larger than a whole segment gets a segment of its own, sized to fit).
Zeroes after the last record mark where writing stopped, so a torn tail is recognised by a
short frame, a bad checksum, or an unexpected index or term.

This module only reads and writes; *when* to sync is the archive's business (`Archive`), and
which handles need syncing is reported through `dirty` / `take_dirty()`.

Open files are bounded: the tail segment stays open for appending, other segments are opened on
demand (reads, syncs, truncation) and kept in a small LRU of at most ``open_segments_max``
handles in all. A node with thousands of segments therefore holds a handful of descriptors. A
handle is never closed while the archive's sync thread may still use it (`pin`), and a segment
written but not yet synced is synced before its handle goes (``before_close``), so durability
never depends on a re-opened descriptor.
"""
from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from .. import _segscan
from .._crc import crc32c
from .fs import FileSystem

RECORD_HEADER_BYTES = _segscan.RECORD_HEADER_BYTES
SEGMENT_HEADER_BYTES = 64
SEGMENT_MAGIC = b"AERPYSEG"
SEGMENT_VERSION = 1
SEGMENT_SUFFIX = ".seg"
DEFAULT_SEGMENT_BYTES = 64 << 20
MIN_SEGMENT_BYTES = 4096
# Segment handles one archive keeps open at most (the tail plus a small LRU of sealed ones);
# only exceeded transiently while the sync thread still holds more than this many.
OPEN_SEGMENTS_MAX = 8

# magic, version, header_bytes, first_index, prev_term, capacity_bytes, reserved, crc32c
_SEGMENT_HEADER = struct.Struct("<8sIIqqq20sI")
_RECORD_HEADER = struct.Struct("<IHHqqII")  # frame_length, type, flags, term, index, reserved, crc

_SCAN_REASONS = {
    _segscan.SCAN_SHORT: "record runs past the end of the file (torn write)",
    _segscan.SCAN_BAD_LENGTH: "record length field is impossible",
    _segscan.SCAN_BAD_CRC: "record checksum mismatch",
    _segscan.SCAN_BAD_INDEX: "record carries an unexpected index",
    _segscan.SCAN_BAD_TERM: "record term is lower than the one before it",
    _segscan.SCAN_BAD_FIELD: "record reserved fields are not zero",
}


def segment_name(first_index: int) -> str:
    return f"{first_index:020d}{SEGMENT_SUFFIX}"


def encode_segment_header(first_index: int, prev_term: int, capacity: int) -> bytes:
    body = _SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, SEGMENT_HEADER_BYTES,
                                first_index, prev_term, capacity, bytes(20), 0)[:-4]
    return body + struct.pack("<I", crc32c(body))


def decode_segment_header(raw) -> tuple | None:
    """(first_index, prev_term, capacity) or None when the header is not a valid one."""
    if len(raw) < SEGMENT_HEADER_BYTES:
        return None
    magic, version, hdr_bytes, first_index, prev_term, capacity, _, crc = \
        _SEGMENT_HEADER.unpack_from(raw, 0)
    if magic != SEGMENT_MAGIC or crc != crc32c(memoryview(raw)[:SEGMENT_HEADER_BYTES - 4]):
        return None
    if version != SEGMENT_VERSION or hdr_bytes != SEGMENT_HEADER_BYTES:
        return None
    return first_index, prev_term, capacity


class Segment:
    """One segment file. ``ends`` holds each record's end offset (the next one's start)."""

    __slots__ = ("path", "first_index", "prev_term", "capacity", "handle", "end", "ends",
                 "last_term")

    def __init__(self, path: str, first_index: int, prev_term: int, capacity: int):
        self.path = path
        self.first_index = first_index
        self.prev_term = prev_term
        self.capacity = capacity
        self.handle = None
        self.end = SEGMENT_HEADER_BYTES
        self.ends = array("q")
        self.last_term = prev_term

    @property
    def count(self) -> int:
        return len(self.ends)

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.ends) - 1

    def record_start(self, index: int) -> int:
        i = index - self.first_index
        return self.ends[i - 1] if i > 0 else SEGMENT_HEADER_BYTES

    def __repr__(self) -> str:
        return f"Segment({self.path}, first={self.first_index}, records={len(self.ends)}, end={self.end})"


@dataclass
class ScanStop:
    """Where recovery found the log's end: the first index it could not read, and why."""
    index: int
    path: str | None
    offset: int | None
    reason: str           # "end" for a clean end, otherwise what was wrong
    debris_end: int = 0   # how far non-zero bytes reach past `offset` in that segment

    @property
    def clean(self) -> bool:
        return self.reason == "end"


class SegmentLog:
    """The segment files of one data directory: append, read by index, truncate, purge."""

    def __init__(self, fs: FileSystem, directory: str, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 open_segments_max: int = OPEN_SEGMENTS_MAX):
        if segment_bytes < MIN_SEGMENT_BYTES:
            raise ValueError(f"segment_bytes must be >= {MIN_SEGMENT_BYTES}, got {segment_bytes}")
        if open_segments_max < 2:
            raise ValueError(f"open_segments_max must be >= 2, got {open_segments_max}")
        self.fs = fs
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.open_segments_max = open_segments_max
        self.segments: list[Segment] = []
        self.base_index = 0        # index before the first record held
        self.base_term = 0
        self.dirty: dict = {}      # id(segment) -> segment written since the last take_dirty()
        self.dir_dirty = False     # a segment file was created or removed since take_dirty()
        self.stale_paths: list = []   # segments below the recovery start, deleted by purge_below
        self._later_files: list = []  # segments past the recovered end, deleted by the cut
        self._open: OrderedDict = OrderedDict()  # id(segment) -> segment with an open handle, LRU first
        self._pinned: dict = {}    # id(segment) -> index its in-flight sync covers; kept open
        # How purge_below deletes a file: at once (default), or handed to the archive's
        # BackgroundRemover, which deletes in the same (oldest first) order
        self.remove_path = fs.remove
        # Set by the archive: ``before_close(handle)`` syncs a dirty segment before its handle
        # is closed (None: nothing to sync, the segment stays in `dirty` and is reopened for
        # the next sync); ``wait_for_syncs()`` waits for the sync thread and `unpin`s, so that
        # pinned handles can be released. Returns False if it could not.
        self.before_close: Callable | None = None
        self.wait_for_syncs: Callable | None = None

    # -- positions ---------------------------------------------------------------------------
    @property
    def last_index(self) -> int:
        return self.segments[-1].last_index if self.segments else self.base_index

    @property
    def last_term(self) -> int:
        return self.segments[-1].last_term if self.segments else self.base_term

    @property
    def first_index(self) -> int:
        return self.segments[0].first_index if self.segments else self.base_index + 1

    def _path(self, first_index: int) -> str:
        return f"{self.directory}/{segment_name(first_index)}"

    def _segment_of(self, index: int) -> Segment:
        firsts = [s.first_index for s in self.segments]
        k = bisect_right(firsts, index) - 1
        if k < 0 or index > self.last_index:
            raise IndexError(f"index {index} not in the archived log [{self.first_index}, {self.last_index}]")
        return self.segments[k]

    # -- the bounded handle table -------------------------------------------------------------
    def _handle(self, seg: Segment):
        """The segment's open handle (opened if needed; most recently used). Does not evict:
        callers holding several handles at once call `trim()` once they are done."""
        if seg.handle is None:
            seg.handle = self.fs.open_file(seg.path)
            self._open[id(seg)] = seg
        else:
            self._open.move_to_end(id(seg))
        return seg.handle

    @property
    def open_handles(self) -> int:
        return len(self._open)

    def _close_handle(self, seg: Segment) -> None:
        self._open.pop(id(seg), None)
        self._pinned.pop(id(seg), None)
        h, seg.handle = seg.handle, None
        if h is not None:
            self.fs.close(h)

    def pin(self, segs, index: int) -> None:
        """Keep these segments' handles open: a sync covering up to ``index`` uses them."""
        for seg in segs:
            if seg.handle is not None:
                self._pinned[id(seg)] = max(index, self._pinned.get(id(seg), 0))

    def unpin(self, synced_index: int) -> None:
        """Syncs up to ``synced_index`` are done: their handles may be closed again."""
        if self._pinned:
            self._pinned = {k: v for k, v in self._pinned.items() if v > synced_index}

    def trim(self) -> None:
        """Close least recently used handles until at most ``open_segments_max`` are open.
        The tail segment and pinned handles stay; a dirty segment is synced first
        (``before_close``). If only pinned handles are left to close, wait for the sync
        thread once (``wait_for_syncs``); if that fails the bound is exceeded for now."""
        waited = False
        while len(self._open) > self.open_segments_max:
            tail = self.segments[-1] if self.segments else None
            victim = next((s for k, s in self._open.items()
                           if s is not tail and k not in self._pinned), None)
            if victim is None:
                if waited or self.wait_for_syncs is None or not self.wait_for_syncs():
                    return
                waited = True
                continue
            if id(victim) in self.dirty and self.before_close is not None:
                self.before_close(victim.handle)
                self.dirty.pop(id(victim), None)
            self._close_handle(victim)

    # -- recovery ----------------------------------------------------------------------------
    def list_segment_files(self) -> list:
        """(first_index, path) of every segment file, in index order."""
        found = []
        for name in self.fs.listdir(self.directory):
            stem = name[: -len(SEGMENT_SUFFIX)]
            if name.endswith(SEGMENT_SUFFIX) and len(stem) == 20 and stem.isdigit():
                found.append((int(stem), f"{self.directory}/{name}"))
        found.sort()
        return found

    def recover(self, start_index: int, start_base: tuple | None, new_log) -> tuple:
        """Read the log back from the segment holding ``start_index`` (the first index
        recovery needs) and return ``(log, stop)``.

        ``new_log(base_index, base_term)`` makes the in-memory log; valid records are
        appended to it in bulk. ``start_base`` is ``(index, term)`` to begin from when no
        segment holds ``start_index`` (the snapshot point). Older segments are not read (they
        lie below the snapshot) and are deleted by the next `purge_below`. The scan stops at
        the first missing, torn or inconsistent record; ``stop`` says where and why. Nothing
        is cut here: `cut_after_recovery` does that once the caller has agreed.
        """
        files = self.list_segment_files()
        k = max(bisect_right([f for f, _ in files], start_index) - 1, 0)
        self.stale_paths = [p for _, p in files[:k]]
        scan = files[k:]
        base_index, base_term = start_base or (0, 0)
        if scan and scan[0][0] <= start_index:
            header = self._read_header(scan[0][1])
            if header is not None and header[0] == scan[0][0]:
                base_index, base_term = scan[0][0] - 1, header[1]
        log = new_log(base_index, base_term)
        self.segments = []
        self.base_index, self.base_term = base_index, base_term
        expected, term = base_index + 1, base_term
        stop, later = None, []
        for n, (first, path) in enumerate(scan):
            if stop is not None:
                later.append(path)
                continue
            if first != expected:
                stop = ScanStop(expected, path, 0, f"no segment holds index {expected} "
                                                    f"(next segment file starts at {first})")
                later.append(path)
                continue
            buf = self.fs.read_file(path)
            header = decode_segment_header(buf)
            if header is None or header[0] != first or header[1] != term:
                stop = ScanStop(expected, path, 0, "segment header is damaged or inconsistent")
                later.append(path)
                continue
            seg = Segment(path, first, header[1], max(header[2], len(buf)))
            status, pos, count, last_term, packed, ends = _segscan.scan_records(
                buf, SEGMENT_HEADER_BYTES, len(buf), expected, term)
            seg.ends.frombytes(ends)
            seg.end, seg.last_term = pos, last_term
            self.segments.append(seg)
            if count:
                log.append_packed(packed, count)
            expected += count
            term = last_term
            debris = _segscan.last_nonzero(buf, pos)
            if status != _segscan.SCAN_END:
                stop = ScanStop(expected, path, pos, _SCAN_REASONS.get(status, f"status {status}"),
                                debris)
            elif debris > pos and (n + 1 >= len(scan) or scan[n + 1][0] != expected):
                # a zero frame with bytes after it: a page lost in the middle of a write
                stop = ScanStop(expected, path, pos, "unreadable bytes after the last record "
                                                     "(torn write)", debris)
        if stop is None:
            last = self.segments[-1] if self.segments else None
            stop = ScanStop(expected, last.path if last else None, last.end if last else None, "end")
        self._later_files = later
        return log, stop

    def _read_header(self, path: str):
        h = self.fs.open_file(path)
        try:
            return decode_segment_header(self.fs.pread(h, SEGMENT_HEADER_BYTES, 0))
        finally:
            self.fs.close(h)

    def cut_after_recovery(self, stop: ScanStop) -> ScanStop:
        """Remove what lies past the recovered end: zero the debris in the last segment read
        and delete later segment files. The caller syncs (`take_dirty`). Returns where the
        log ends now (the last segment kept and the offset of its end), with the reason."""
        if self.segments and stop.path == self.segments[-1].path and stop.debris_end > stop.offset:
            seg = self.segments[-1]
            self.fs.pwrite(self._handle(seg), bytes(stop.debris_end - stop.offset), stop.offset)
            self.dirty[id(seg)] = seg
        for path in self._later_files:
            self.fs.remove(path)
            self.dir_dirty = True
        self._later_files = []
        last = self.segments[-1] if self.segments else None
        return ScanStop(stop.index, last.path if last else None, last.end if last else None,
                        stop.reason, stop.debris_end if last and last.path == stop.path else 0)

    # -- appending ---------------------------------------------------------------------------
    def append(self, records, ends: bytes, first_index: int, count: int, last_term: int) -> None:
        """Write ``count`` encoded records (``_segscan.encode_records`` output) starting at
        ``first_index``: one write per segment touched."""
        segments = self.segments
        if segments and count:
            seg = segments[-1]
            total = len(records)       # == the end of the last record
            if seg.capacity - seg.end >= total and first_index == seg.first_index + len(seg.ends):
                # the common case, one batch that fits the open segment: one write, no search
                self.fs.pwrite(self._handle(seg), records, seg.end)
                seg.ends.frombytes(_segscan.rebase_ends(ends, 0, count, seg.end))
                seg.end += total
                seg.last_term = last_term
                self.dirty[id(seg)] = seg
                return
        if first_index != self.last_index + 1:
            raise ValueError(f"append at {first_index} but the archived log ends at {self.last_index}")
        if count == 0:
            return
        end_of = array("q")
        end_of.frombytes(ends)
        view = memoryview(records)
        pos, i = 0, 0
        while i < count:
            seg = self.segments[-1] if self.segments else None
            room = (seg.capacity - seg.end) if seg is not None else -1
            j = bisect_right(end_of, pos + room, i, count) if room > 0 else i
            if j == i:
                prev_term = self.last_term if i == 0 else self._term_of_record(view, end_of, i - 1)
                self._new_segment(first_index + i, prev_term, end_of[i] - pos)
                continue
            chunk_end = end_of[j - 1]
            self.fs.pwrite(self._handle(seg), view[pos:chunk_end], seg.end)
            seg.ends.frombytes(_segscan.rebase_ends(ends, i, j, seg.end - pos))
            seg.end += chunk_end - pos
            seg.last_term = last_term if j == count else self._term_of_record(view, end_of, j - 1)
            self.dirty[id(seg)] = seg
            pos, i = chunk_end, j

    @staticmethod
    def _term_of_record(view, end_of: array, i: int) -> int:
        return _RECORD_HEADER.unpack_from(view, end_of[i - 1] if i > 0 else 0)[3]

    def _new_segment(self, first_index: int, prev_term: int, first_record_bytes: int) -> Segment:
        capacity = max(self.segment_bytes, SEGMENT_HEADER_BYTES + first_record_bytes)
        path = self._path(first_index)
        h = self.fs.open_file(path, create=True)
        try:
            self.fs.truncate(h, 0)  # a leftover of a cut tail must not leak old bytes
            self.fs.allocate(h, capacity)
            self.fs.pwrite(h, encode_segment_header(first_index, prev_term, capacity), 0)
        except BaseException:
            self.fs.close(h)
            # nothing is in it (past the log's end): left, a restart would read its missing
            # header as damage ("recovery cut the log ... damaged") after a full disk
            try:
                self.fs.remove(path)
            except OSError:
                pass
            raise
        seg = Segment(path, first_index, prev_term, capacity)
        seg.handle = h
        self._open[id(seg)] = seg
        self.segments.append(seg)
        self.dirty[id(seg)] = seg
        self.dir_dirty = True
        self.trim()  # a batch spanning many segments keeps the bound as it goes
        return seg

    def mark_dirty_after(self, index: int) -> None:
        """Count segments holding entries past ``index`` (or none yet) as written since the
        last sync: after a restart, what an earlier process wrote may be only in the page
        cache, and the next sync must cover it too."""
        for seg in self.segments:
            if seg.last_index > index or seg.count == 0:
                self.dirty[id(seg)] = seg
        self.dir_dirty = True

    def take_dirty(self) -> tuple:
        """(segments written since the last call, whether the directory changed); resets both."""
        segs, dir_dirty = list(self.dirty.values()), self.dir_dirty
        self.dirty, self.dir_dirty = {}, False
        return segs, dir_dirty

    # -- reading -----------------------------------------------------------------------------
    def read(self, index: int) -> tuple:
        """(term, type, payload) of the record at ``index``, verified against its checksum."""
        seg = self._segment_of(index)
        start = seg.record_start(index)
        size = seg.ends[index - seg.first_index] - start
        raw = self.fs.pread(self._handle(seg), size, start)
        self.trim()
        flen, rtype, _, term, rindex, _, crc = _RECORD_HEADER.unpack_from(raw, 0)
        if flen != size or rindex != index or crc != _segscan.record_crc32c(raw):
            raise ValueError(f"record {index} in {seg.path} at offset {start} fails verification")
        return term, rtype, bytes(raw[RECORD_HEADER_BYTES:])

    # -- truncating and purging ----------------------------------------------------------------
    def truncate_from(self, index: int) -> None:
        """Drop records ``index``.. (an uncommitted tail), across segment boundaries. The cut
        region is zeroed (ftruncate + re-preallocate) so no old record can reappear."""
        if index > self.last_index:
            return
        if index <= self.base_index:
            raise ValueError(f"cannot truncate from {index}: the archive starts after {self.base_index}")
        # the first segment is emptied rather than deleted: its header keeps the base on disk
        while len(self.segments) > 1 and self.segments[-1].first_index >= index:
            self._remove(self.segments.pop())
        if not self.segments:
            return
        seg = self.segments[-1]
        start = seg.record_start(index)
        prev_term = seg.prev_term if index == seg.first_index else self._term_in(seg, index - 1)
        h = self._handle(seg)
        self.fs.truncate(h, start)
        self.fs.allocate(h, seg.capacity)
        del seg.ends[index - seg.first_index:]
        seg.end = start
        seg.last_term = prev_term
        self.dirty[id(seg)] = seg

    def _term_in(self, seg: Segment, index: int) -> int:
        raw = self.fs.pread(self._handle(seg), RECORD_HEADER_BYTES, seg.record_start(index))
        return _RECORD_HEADER.unpack_from(raw, 0)[3]

    def _remove(self, seg: Segment) -> None:
        self._close_handle(seg)
        self.dirty.pop(id(seg), None)
        self.fs.remove(seg.path)
        self.dir_dirty = True
        if not self.segments:  # removed the first one: the log is empty at its base
            self.base_index, self.base_term = seg.first_index - 1, seg.prev_term

    def purge_touches_pinned(self, index: int) -> bool:
        """Whether ``purge_below(index)`` would close a handle an in-flight sync uses."""
        if not self._pinned:
            return False
        segs = self.segments
        return any(id(segs[i]) in self._pinned for i in range(len(segs) - 1)
                   if segs[i + 1].first_index <= index)

    def purge_below(self, index: int) -> int:
        """Delete whole segments whose records all lie below ``index`` (the last segment is
        always kept), through ``remove_path``. Returns how many files it deleted (or handed
        over for deletion)."""
        removed = 0
        remove = self.remove_path
        for path in self.stale_paths:
            remove(path)
            self.dir_dirty = True
            removed += 1
        self.stale_paths = []
        while len(self.segments) > 1 and self.segments[1].first_index <= index:
            seg = self.segments.pop(0)
            self._close_handle(seg)
            self.dirty.pop(id(seg), None)
            remove(seg.path)
            self.dir_dirty = True
            removed += 1
        if removed and self.segments:
            first = self.segments[0]
            self.base_index, self.base_term = first.first_index - 1, first.prev_term
        return removed

    def reset_at(self, index: int, term: int) -> None:
        """Forget every segment (all lie below a durable snapshot at ``index``): the next
        append starts a new segment at ``index + 1``. The caller syncs the directory."""
        for seg in self.segments:
            self._close_handle(seg)
            self.fs.remove(seg.path)
        for path in self.stale_paths:
            self.fs.remove(path)
        self.segments, self.stale_paths, self.dirty = [], [], {}
        self.dir_dirty = True
        self.base_index, self.base_term = index, term

    def close(self) -> None:
        """Close every handle (the archive has synced or given up on what was written)."""
        for seg in list(self._open.values()):
            self._close_handle(seg)
        for seg in self.segments:  # none should be left; belt and braces
            if seg.handle is not None:
                self._close_handle(seg)
