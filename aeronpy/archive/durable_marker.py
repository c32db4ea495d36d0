"""``durable.pos``: how far the log is known to have been synced, and the highest index known
to be committed.

Recovery uses the durable index to tell a torn tail (beyond it: cut silently) from corruption
(inside it: refuse to start). It is rewritten after every sync without a sync of its own (that
would double the cost of every group commit); it is synced when the syncer is idle, when it is
lowered (a truncation: a stale higher value on disk would turn a legal truncation into a false
corruption alarm), and on close. It never runs ahead of the synced log: it is written after the
data sync returns. Two 32-byte slots, written alternately, each with a sequence number and a
CRC; the valid slot with the higher sequence wins, so a torn marker write falls back to the
previous value instead of losing it:

    0  u32 magic 0x44505950 ("PYPD")
    4  u32 crc32c of bytes [8, 32)
    8  u64 sequence
    16 i64 durable_index
    24 i64 commit_index      (highest index known committed, at most durable_index)
"""
from __future__ import annotations

import struct

from .._crc import crc32c
from .fs import FileSystem

DURABLE_MARKER_FILE = "durable.pos"
_MAGIC = 0x44505950
_SLOT = struct.Struct("<IIQqq")
_SLOT_OFFSETS = (0, 512)


class DurableMarker:
    """Reads and writes ``durable.pos`` in a data directory."""

    def __init__(self, fs: FileSystem, directory: str):
        self.fs = fs
        self.path = f"{directory}/{DURABLE_MARKER_FILE}"
        self.directory = directory
        self.handle = None
        self.sequence = 0
        self.durable_index = 0
        self.commit_index = 0
        self.valid = True        # False when the file existed but no slot could be read
        self.unsynced = False

    def load(self) -> None:
        """Read the newest valid slot (missing file: zeroes)."""
        if not self.fs.exists(self.path):
            return
        raw = self.fs.read_file(self.path)
        best = None
        for off in _SLOT_OFFSETS:
            if len(raw) < off + _SLOT.size:
                continue
            magic, crc, seq, durable, commit = _SLOT.unpack_from(raw, off)
            if magic == _MAGIC and crc == crc32c(memoryview(raw)[off + 8:off + _SLOT.size]):
                if best is None or seq > best[0]:
                    best = (seq, durable, commit)
        if best is None:
            self.valid = False
            return
        self.sequence, self.durable_index, self.commit_index = best

    def open(self) -> None:
        """Open for writing, creating the file (synced, with its directory entry) if missing."""
        if self.handle is not None:
            return
        fresh = not self.fs.exists(self.path)
        self.handle = self.fs.open_file(self.path, create=True)
        if fresh:
            self.write(self.durable_index, self.commit_index, sync=True)
            self.fs.sync_dir(self.directory)

    def write(self, durable_index: int, commit_index: int, sync: bool) -> None:
        self.sequence += 1
        commit_index = min(commit_index, durable_index)
        body = struct.pack("<Qqq", self.sequence, durable_index, commit_index)
        slot = struct.pack("<II", _MAGIC, crc32c(body)) + body
        self.fs.pwrite(self.handle, slot, _SLOT_OFFSETS[self.sequence % 2])
        self.durable_index, self.commit_index = durable_index, commit_index
        self.unsynced = True
        if sync:
            self.sync()

    def sync(self) -> None:
        if self.unsynced:
            self.fs.fdatasync(self.handle)
            self.unsynced = False

    def close(self) -> None:
        if self.handle is not None:
            self.fs.close(self.handle)
            self.handle = None
