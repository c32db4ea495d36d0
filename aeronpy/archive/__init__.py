"""The archive: a node's durable log, node state, recording log and snapshots.

See docs/archive-format.md for the on-disk format and what each ``file_sync`` level keeps on
kill -9 and on power loss; docs/internal/interfaces.md section 3 for the seam.
"""
from .archive import FILE_SYNC_LEVELS, Archive, Recovered
from .errors import ArchiveCorruptError, ArchiveError, ArchiveIOError, DataDirError
from .fs import FileSystem, MemFileSystem, OsFileSystem
from .node_state import HardState
from .snapshots import SnapshotInfo, SnapshotWriter

__all__ = [
    "Archive", "Recovered", "FILE_SYNC_LEVELS", "ArchiveError", "ArchiveIOError",
    "ArchiveCorruptError", "DataDirError", "FileSystem", "OsFileSystem", "MemFileSystem",
    "HardState", "SnapshotInfo", "SnapshotWriter",
]
