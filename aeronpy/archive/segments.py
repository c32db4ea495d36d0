"""Append-only segment files holding the log's records (layout: docs/archive-format.md).

A segment is a preallocated, zero-filled file named after the index of its first record. A
record never spans two files: when the next record does not fit, the segment is sealed and a
new one begins (a record larger than a whole segment gets a segment of its own, sized to fit).
Zeroes after the last record mark where writing stopped, so a torn tail is recognised by a
short frame, a bad checksum, or an unexpected index or term.

This module only reads and writes; *when* to sync is the archive's business (`Archive`), and
which handles need syncing is reported through `dirty` / `take_dirty()`.
"""
from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from dataclasses import dataclass

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

    def __init__(self, fs: FileSystem, directory: str, segment_bytes: int = DEFAULT_SEGMENT_BYTES):
        if segment_bytes < MIN_SEGMENT_BYTES:
            raise ValueError(f"segment_bytes must be >= {MIN_SEGMENT_BYTES}, got {segment_bytes}")
        self.fs = fs
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.segments: list[Segment] = []
        self.base_index = 0        # index before the first record held
        self.base_term = 0
        self.dirty: dict = {}      # id(segment) -> segment written since the last take_dirty()
        self.dir_dirty = False     # a segment file was created or removed since take_dirty()
        self.stale_paths: list = []   # segments below the recovery start, deleted by purge_below
        self.sealed_open: list = []   # sealed segments whose handle is still open
        self._later_files: list = []  # segments past the recovered end, deleted by the cut

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

    def _handle(self, seg: Segment):
        if seg.handle is None:
            seg.handle = self.fs.open_file(seg.path)
        return seg.handle

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
            raise
        seg = Segment(path, first_index, prev_term, capacity)
        seg.handle = h
        if self.segments:
            self.sealed_open.append(self.segments[-1])
        self.segments.append(seg)
        self.dirty[id(seg)] = seg
        self.dir_dirty = True
        return seg

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
        if seg.handle is not None:
            self.fs.close(seg.handle)
            seg.handle = None
        self.dirty.pop(id(seg), None)
        self.fs.remove(seg.path)
        self.dir_dirty = True
        if not self.segments:  # removed the first one: the log is empty at its base
            self.base_index, self.base_term = seg.first_index - 1, seg.prev_term

    def purge_below(self, index: int) -> int:
        """Delete whole segments whose records all lie below ``index`` (the last segment is
        always kept). Returns how many files were deleted."""
        removed = 0
        for path in self.stale_paths:
            self.fs.remove(path)
            self.dir_dirty = True
            removed += 1
        self.stale_paths = []
        while len(self.segments) > 1 and self.segments[1].first_index <= index:
            seg = self.segments.pop(0)
            if seg.handle is not None:
                self.fs.close(seg.handle)
                seg.handle = None
            self.dirty.pop(id(seg), None)
            self.fs.remove(seg.path)
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
            if seg.handle is not None:
                self.fs.close(seg.handle)
                seg.handle = None
            self.fs.remove(seg.path)
        for path in self.stale_paths:
            self.fs.remove(path)
        self.segments, self.stale_paths, self.sealed_open, self.dirty = [], [], [], {}
        self.dir_dirty = True
        self.base_index, self.base_term = index, term

    def close_sealed(self, durable_index: int) -> None:
        """Close handles of sealed segments that are wholly durable (reads reopen them)."""
        keep = []
        for seg in self.sealed_open:
            if seg.handle is not None and seg.last_index <= durable_index and id(seg) not in self.dirty \
                    and seg is not (self.segments[-1] if self.segments else None):
                self.fs.close(seg.handle)
                seg.handle = None
            elif seg.handle is not None:
                keep.append(seg)
        self.sealed_open = keep

    def close(self) -> None:
        for seg in self.segments:
            if seg.handle is not None:
                self.fs.close(seg.handle)
                seg.handle = None
