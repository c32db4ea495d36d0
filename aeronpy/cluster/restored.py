"""The restore marker (``DATA_DIR/restored.json``): where a log restored from a backup ends.

``aeronpy backup --restore-to`` writes it into each member data dir it fills. The term entries
up to that index were written by the old cluster's leaders and carry the old cluster's member
list (ids and ports), so a restored member does not compare that one setting in them with its
own: a new cluster on other ports would report every old term start it replays as a
``ConfigMismatchError`` that says nothing about the running cluster. Every other check of a
term entry (services, the other shared settings) still runs. Entries past the index, written
by the new cluster's leaders, are compared as usual.

A missing marker means no restore (0). A marker that cannot be read or parsed is reported by
the caller and treated as missing: the old term entries are then reported, as before the
marker existed, which is noise and never a wrong state.
"""
from __future__ import annotations

import json
import os
from typing import Optional

from aeronpy.archive.fs import OsFileSystem, read_regular

RESTORED_MARKER_FILE = "restored.json"
_MARKER_MAX_BYTES = 4096


def write_restored_marker(data_dir: str, log_end: int, source: str) -> None:
    """Write the marker (through a synced temporary file renamed over it)."""
    path = os.path.join(data_dir, RESTORED_MARKER_FILE)
    tmp = path + ".tmp"
    text = json.dumps({"restored_log_end": int(log_end), "from": source[:1024]})
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    OsFileSystem().sync_dir(data_dir)      # the rename itself survives a power loss


def read_restored_log_end(data_dir: str) -> tuple[int, Optional[str]]:
    """(the restored log's end index, None), (0, None) without a marker, or (0, why) for a
    marker that cannot be used."""
    path = os.path.join(data_dir, RESTORED_MARKER_FILE)
    if not os.path.lexists(path):
        return 0, None
    try:
        value = json.loads(bytes(read_regular(path, _MARKER_MAX_BYTES, what="restore marker"))
                           .decode("utf-8"))["restored_log_end"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        return 0, f"{path} is unreadable ({exc})"
    if type(value) is not int or value < 0:
        return 0, f"{path} holds restored_log_end {value!r}, not an index"
    return value, None
