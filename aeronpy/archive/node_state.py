"""The node-state file: current term and voted-for, the Raft "hard state" that must be durable
before any vote or term-raising message leaves the node.

Replaced atomically (write a temporary file, fsync it, rename over the old one, fsync the
directory) and always synced whatever ``file_sync`` says: losing a vote can elect two leaders
in one term. Layout (32 bytes, little-endian):

    0  8s  magic "AERPYNST"
    8  u32 version (1)
    12 i32 voted_for (-1: none)
    16 i64 term
    24 u32 reserved (0)
    28 u32 crc32c of bytes [0, 28)
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from .._crc import crc32c
from .errors import ArchiveCorruptError
from .fs import FileSystem, write_replace

NODE_STATE_FILE = "node.state"
_MAGIC = b"AERPYNST"
_VERSION = 1
_LAYOUT = struct.Struct("<8sIiqII")


class HardState(NamedTuple):
    """Raft's persistent state. ``voted_for`` is None when the node has not voted this term."""
    term: int = 0
    voted_for: int | None = None


def encode_node_state(term: int, voted_for: int | None) -> bytes:
    if term < 0:
        raise ValueError(f"term must be >= 0, got {term}")
    vote = -1 if voted_for is None else int(voted_for)
    if vote < -1:
        raise ValueError(f"voted_for must be a member id or None, got {voted_for}")
    body = _LAYOUT.pack(_MAGIC, _VERSION, vote, term, 0, 0)[:-4]
    return body + struct.pack("<I", crc32c(body))


def save_node_state(fs: FileSystem, directory: str, term: int, voted_for: int | None) -> None:
    """Atomically replace the node state; returns once it is durable."""
    write_replace(fs, directory, NODE_STATE_FILE, encode_node_state(term, voted_for))


def load_node_state(fs: FileSystem, directory: str) -> HardState:
    """The saved state; a fresh ``HardState()`` when none was ever saved. A damaged file is
    an `ArchiveCorruptError` (it was synced, so damage is not a torn write)."""
    path = f"{directory}/{NODE_STATE_FILE}"
    if not fs.exists(path):
        return HardState()
    try:
        raw = fs.read_file(path, max_bytes=_LAYOUT.size)
    except ValueError:
        raise ArchiveCorruptError(f"node-state file has more than the {_LAYOUT.size} bytes it "
                                  "should have", path=path, offset=_LAYOUT.size) from None
    if len(raw) != _LAYOUT.size:
        raise ArchiveCorruptError(f"node-state file has {len(raw)} bytes, expected {_LAYOUT.size}",
                                  path=path, offset=0)
    magic, version, vote, term, _, crc = _LAYOUT.unpack(raw)
    if magic != _MAGIC or crc != crc32c(memoryview(raw)[:_LAYOUT.size - 4]):
        raise ArchiveCorruptError("node-state file fails its checksum", path=path, offset=0)
    if version != _VERSION:
        raise ArchiveCorruptError(f"node-state file has unknown version {version}", path=path, offset=8)
    return HardState(term, None if vote == -1 else vote)
