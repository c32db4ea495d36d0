"""The LD_PRELOAD shim (slowsync.c) built with gcc at run time, and its per-member control and
statistics files: :meth:`SlowSyncShim.set` changes a running member's disk speed."""
from __future__ import annotations

import os
from typing import Dict, List, Optional

from loss_trial import shim as compiled_shim
from slowdisk_trial.metrics import parse_shim_stats
from slowdisk_trial.plan import FAST, Slowness

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slowsync.c")


def build(out_dir: str, compiler: Optional[str] = None) -> str:
    """Compile slowsync.c into ``out_dir``; the shared object's path."""
    return compiled_shim.build(SOURCE, os.path.join(out_dir, "slowsync.so"), "the slow-sync shim",
                               ("-ldl", "-lpthread"), compiler)


class SlowSyncShim:
    """The built shim and one control and one statistics file per member, under ``work_dir``."""

    def __init__(self, work_dir: str, members: int, seed: int) -> None:
        self.dir = os.path.join(work_dir, "shim")
        os.makedirs(self.dir, exist_ok=True)
        self.library = build(self.dir)
        self.members, self.seed = members, seed
        self.current: Dict[int, Slowness] = {}
        for member in range(members):
            self.set(member, FAST)

    def control_path(self, member: int) -> str:
        return os.path.join(self.dir, f"control-{member}")

    def stats_path(self, member: int) -> str:
        return os.path.join(self.dir, f"stats-{member}")

    def wrap(self, member: int, argv: List[str]) -> List[str]:
        """ProcessCluster's ``wrap_command``: the member runs with the shim preloaded."""
        return ["env", f"LD_PRELOAD={self.library}", f"SLOWSYNC_FILE={self.control_path(member)}",
                f"SLOWSYNC_STATS={self.stats_path(member)}", f"SLOWSYNC_SEED={self.seed + member}", *argv]

    def set(self, member: int, slowness: Slowness) -> None:
        """Replace the control file whole (the shim re-reads it within 10 ms, never half written)."""
        path = self.control_path(member)
        with open(path + ".tmp", "w") as f:
            f.write(slowness.control_line())
        os.replace(path + ".tmp", path)
        self.current[member] = slowness

    def all_fast(self) -> None:
        for member in range(self.members):
            self.set(member, FAST)

    def stats(self, member: int) -> Optional[Dict[str, int]]:
        try:
            with open(self.stats_path(member)) as f:
                return parse_shim_stats(f.read())
        except OSError:
            return None

    def all_stats(self) -> Dict[int, Optional[Dict[str, int]]]:
        return {m: self.stats(m) for m in range(self.members)}
