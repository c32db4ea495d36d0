"""The slow-sync shim (aeronpy/testing/slowsync.c, built by aeronpy.testing.slowdisk, which the
soak's --slow-disks uses too) with the trial's error type: gcc missing or a failed build is the
trial's missing prerequisite (exit status 2). :meth:`SlowSyncShim.set` changes a running
member's disk speed."""
from __future__ import annotations

import os
from typing import Optional

from aeronpy.testing import slowdisk
from loss_trial import shim as compiled_shim

SOURCE = slowdisk.SOURCE


def build(out_dir: str, compiler: Optional[str] = None) -> str:
    """Compile slowsync.c into ``out_dir``; the shared object's path."""
    return compiled_shim.build(SOURCE, os.path.join(out_dir, "slowsync.so"), "the slow-sync shim",
                               ("-ldl", "-lpthread"), compiler)


class SlowSyncShim(slowdisk.SlowSyncShim):
    """The built shim and one control file per member, one statistics file per member's run."""

    build = staticmethod(build)
