"""A data dir prepared for a member that has never run (``aeronpy tool new-member DATA_DIR``).

A member started on an empty data dir cannot tell a first start from a lost disk, so it counts
as rejoining (RaftCore.rejoining): it withholds its vote from members with a non-empty log
until it has caught up with a leader. That protects what a lost disk had acknowledged, and
costs availability when the member really is new: a member of a new cluster started after the
others elected (two of them in a cluster of five block every election while the first leader
is down), or one that did not vote for a first leader that failed before anyone heard it.

The operator knows which it is. ``prepare_new_member`` makes the (empty or missing) data dir
with one file, ``new-member``, and the node's first start that succeeds starts unmarked and
takes that file away (``take_new_member_mark``). It is one-shot: the node removes the file,
durably, before its first duty cycle, so before it may vote or acknowledge anything, and a
member that later loses its disk comes back marked. Never run it for a member that ran
before (docs/operations.md).
"""
from __future__ import annotations

import json
import os
import time

from aeronpy.archive.fs import OsFileSystem
from aeronpy.errors import AeronpyError, ConfigError

NEW_MEMBER_FILE = "new-member"
_FS = OsFileSystem()


class NewMemberError(AeronpyError, ValueError):
    """The data dir cannot be prepared (it holds something already, or is not a directory)."""


def prepare_new_member(data_dir: str) -> dict:
    """Make ``data_dir`` (missing or empty) a new member's: it holds ``new-member`` only."""
    if os.path.lexists(data_dir) and not os.path.isdir(data_dir):
        raise NewMemberError(f"{data_dir} is not a directory")
    if os.path.isdir(data_dir):
        held = sorted(os.listdir(data_dir))
        if held:
            raise NewMemberError(
                f"{data_dir} is not empty ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}): "
                "only the data dir of a member that has never run can be prepared as new")
    else:
        os.makedirs(data_dir)
        _FS.sync_dir(os.path.dirname(os.path.abspath(data_dir)))
    path = os.path.join(data_dir, NEW_MEMBER_FILE)
    with open(path, "x", encoding="utf-8") as f:
        f.write(json.dumps({"prepared_unix_s": int(time.time()),
                            "by": "aeronpy tool new-member"}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    _FS.sync_dir(data_dir)
    return {"data_dir": data_dir, "prepared": True,
            "next": "start the member on it once; it votes from its first start"}


def take_new_member_mark(data_dir: str) -> bool:
    """At the end of a node's start: whether ``new-member`` was there. It is removed (and the
    removal synced) before this returns, so it counts for one start only."""
    path = os.path.join(data_dir, NEW_MEMBER_FILE)
    try:
        os.remove(path)
    except FileNotFoundError:
        return False
    except OSError as exc:              # a directory in its place, no permission
        raise ConfigError("data_dir", f"{path} cannot be removed ({exc.strerror}): remove it by "
                          "hand; the member then starts as a rejoining one") from exc
    _FS.sync_dir(data_dir)
    return True
