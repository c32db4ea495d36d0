"""Errors the archive raises on purpose. Each message says what happened, where, and what to do."""
from __future__ import annotations

from ..errors import AeronpyError, ConfigError


class ArchiveError(AeronpyError):
    """Base class of archive errors."""


class ArchiveIOError(ArchiveError, OSError):
    """A write or sync failed (disk full, I/O error). The archive refuses every further write:
    what was durable before stays intact, nothing is written past the failure."""

    def __init__(self, message: str, errno_code: int | None = None):
        ArchiveError.__init__(self, message)
        self.errno = errno_code
        self.message = message

    def __str__(self) -> str:
        return self.message


class ArchiveCorruptError(ArchiveError):
    """Data the node had made durable fails its checksum (or a control file is damaged).

    The node must not start from it: silently cutting would forget entries it acknowledged.
    The way out is to wipe the data directory and let the member catch up from the cluster.
    """

    WAY_OUT = ("Way out: stop this member, move its data directory aside (or delete it) and "
               "restart it empty; it catches up from the cluster (see docs/archive-format.md, "
               "'Corruption').")

    def __init__(self, what: str, path: str | None = None, offset: int | None = None,
                 index: int | None = None):
        self.path, self.offset, self.index = path, offset, index
        where = []
        if path is not None:
            where.append(f"file {path}")
        if offset is not None:
            where.append(f"offset {offset}")
        if index is not None:
            where.append(f"index {index}")
        at = f" ({', '.join(where)})" if where else ""
        super().__init__(f"archive corrupt: {what}{at}. {self.WAY_OUT}")


class DataDirError(ConfigError, ArchiveError):
    """The data directory cannot be used (missing parent, not a directory, not writable)."""

    def __init__(self, path: str, reason: str):
        self.path = path
        super().__init__("data_dir", f"{path!r} cannot be used: {reason}")
