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

Under ``file_sync = "none"`` nothing is synced, so the durable index stays where the last clean
close left it, yet the node acknowledges every entry it has written. Two more slots, at 1024
and 1536, record after every append how far the log was *written*, with the OS's boot id. A
kill -9 keeps the page cache, and with it both the log and this record, so while the boot id is
unchanged recovery may treat damage below the written index as corruption of acknowledged
entries, not as a torn tail. After a reboot the record proves nothing and is ignored:

    0  u32 magic 0x57505950 ("PYPW")
    4  u32 crc32c of bytes [8, 56)
    8  u64 sequence
    16 i64 written_index
    24 i64 commit_index      (at most written_index)
    32 16s boot_id
    48 u64 durable sequence  (of the durable slot current when the note was stored)

Versions before these slots ignore them. Every durable-slot write by a version that keeps the
note stores the note again with the new sequence; a note whose sequence is not the durable
slot's was left behind by a run that did not keep it (an older version run in between, which
may have cut or rewritten the log) and is ignored.
"""
from __future__ import annotations

import struct

from .._crc import crc32c
from .fs import FileSystem

DURABLE_MARKER_FILE = "durable.pos"
_MAGIC = 0x44505950
_SLOT = struct.Struct("<IIQqq")
_SLOT_OFFSETS = (0, 512)
_WRITTEN_MAGIC = 0x57505950
_WRITTEN_SLOT = struct.Struct("<IIQqq16sQ")
_WRITTEN_BODY = struct.Struct("<Qqq16sQ")
_WRITTEN_OFFSETS = (1024, 1536)
_FILE_MAX_BYTES = 4096
_HEAD = struct.Struct("<II")
_MAPPED_BYTES = 2048         # the file's size once the written note is kept (all four slots)


def _newest_slot(raw, offsets, layout: struct.Struct, magic: int):
    """The fields after (magic, crc) of the valid slot with the highest sequence, or None."""
    best = None
    for off in offsets:
        if len(raw) < off + layout.size:
            continue
        fields = layout.unpack_from(raw, off)
        if fields[0] == magic and fields[1] == crc32c(memoryview(raw)[off + 8:off + layout.size]):
            if best is None or fields[2] > best[0]:
                best = fields[2:]
    return best


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
        # the written record (none policy): how far the log was written under which boot
        self.written_sequence = 0
        self.written_index = 0
        self.written_commit = 0
        self.written_boot: bytes | None = None
        self._map = None         # shared mapping for the note; False: the fs offers none
        self._noting = False     # this run keeps the note (re-stored after each durable write)
        self._note_durable_sequence = 0

    def load(self) -> None:
        """Read the newest valid slot (missing file: zeroes)."""
        if not self.fs.exists(self.path):
            return
        try:
            # the slots end well inside 4 KiB: a longer file is not ours as written (and is
            # not loaded whole, whatever it grew to): unreadable, as a damaged one
            raw = self.fs.read_file(self.path, max_bytes=_FILE_MAX_BYTES)
        except ValueError:
            self.valid = False
            return
        written = _newest_slot(raw, _WRITTEN_OFFSETS, _WRITTEN_SLOT, _WRITTEN_MAGIC)
        if written is not None:
            (self.written_sequence, self.written_index, self.written_commit,
             self.written_boot) = written[:4]
            self._note_durable_sequence = written[4]
        best = _newest_slot(raw, _SLOT_OFFSETS, _SLOT, _MAGIC)
        if best is None:
            self.valid = False
            return
        self.sequence, self.durable_index, self.commit_index = best

    def acknowledged(self, boot_id: bytes | None) -> tuple:
        """(index, commit) the log was known written up to in this boot of the OS, from the
        written record; (0, 0) when there is none, the boot id is unknown, or it differs (a
        reboot may have lost unsynced writes, this record among them), or the durable slot
        was written since by a run that kept no note."""
        if boot_id is None or self.written_boot != boot_id \
                or self._note_durable_sequence != self.sequence:
            return 0, 0
        return self.written_index, self.written_commit

    def note_written(self, written_index: int, commit_index: int, boot_id: bytes) -> None:
        """Record, without a sync, that the log is written up to ``written_index`` (call it
        after the log's own write returned, so the record never runs ahead of the log). On
        every append under none, so it stores into a shared mapping of the file where the file
        system offers one (no syscall), else writes."""
        seq = self.written_sequence = self.written_sequence + 1
        if commit_index > written_index:
            commit_index = written_index
        body = _WRITTEN_BODY.pack(seq, written_index, commit_index, boot_id, self.sequence)
        slot = _HEAD.pack(_WRITTEN_MAGIC, crc32c(body)) + body
        offset = _WRITTEN_OFFSETS[seq & 1]
        if self._map is None:
            self._map = self.fs.map_shared(self.handle, _MAPPED_BYTES) or False
        if self._map:
            self._map[offset:offset + _WRITTEN_SLOT.size] = slot
        else:
            self.fs.pwrite(self.handle, slot, offset)
        self.written_index, self.written_commit, self.written_boot = \
            written_index, commit_index, boot_id
        self._note_durable_sequence = self.sequence
        self._noting = True
        self.unsynced = True

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
        if self._noting:                 # the note names the durable slot it goes with
            self.note_written(self.written_index, self.written_commit, self.written_boot)
        if sync:
            self.sync()

    def sync(self) -> None:
        if self.unsynced:
            self.fs.fdatasync(self.handle)
            self.unsynced = False

    def close(self) -> None:
        if self._map:
            self._map.close()
        self._map = None
        if self.handle is not None:
            self.fs.close(self.handle)
            self.handle = None
