"""Slow disks for real member processes: the LD_PRELOAD shim ``slowsync.c`` (shipped beside
this module), compiled with gcc at run time, makes fsync, fdatasync, msync(MS_SYNC) and
sync_file_range sleep before the real call, as a disk shared with noisy neighbours would.

Each member reads its own control file (one line, :meth:`Slowness.control_line`), re-read
within 10 ms, so :meth:`SlowSyncShim.set` changes a running member's disk speed; the file is
the member's, not its process's, so a restarted member keeps the speed it had. Used by the
soak's ``--slow-disks`` (:mod:`aeronpy.testing.soak`) and by ``bench/slowdisk_trial``.
gcc is needed only when a shim is built (:class:`ShimUnavailable` otherwise).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Dict, List, NamedTuple, Optional, Sequence

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slowsync.c")
SHIM_FIELDS = ("calls", "slowed", "injected_ns", "real_ns", "real_max_ns")


class ShimUnavailable(RuntimeError):
    """gcc is missing, or the shim's source is missing or does not build."""


class Slowness(NamedTuple):
    """One setting of the shim (slowsync.c): each affected sync call sleeps ``delay_us`` plus a
    uniform 0..``jitter_us``; every ``every_n``-th call is affected (``random``: each call with
    chance 1/every_n)."""
    delay_us: int = 0
    every_n: int = 1
    jitter_us: int = 0
    random: bool = False

    def control_line(self) -> str:
        """The control file's one line (the format slowsync.c reads)."""
        return f"{self.delay_us} {self.every_n} {self.jitter_us} {1 if self.random else 0}\n"

    def describe(self) -> str:
        if self.delay_us <= 0:
            return "fast"
        span = (f"{self.delay_us / 1000:g} ms" if not self.jitter_us
                else f"{self.delay_us / 1000:g}-{(self.delay_us + self.jitter_us) / 1000:g} ms")
        if self.every_n == 1:
            return f"every sync {span}"
        return f"{'1 in' if self.random else 'every'} {self.every_n} syncs {span}"


FAST = Slowness()


def parse_control_line(text: str) -> Slowness:
    """The inverse of control_line, as lenient as the shim: an empty or unreadable line is fast,
    missing fields keep their defaults, a non-positive every_n counts as 1."""
    fields = text.split()
    try:
        values = [int(f) for f in fields[:4]]
    except ValueError:
        return FAST
    if not values:
        return FAST
    values += [0, 1, 0, 0][len(values):]
    delay, every, jitter, rnd = values
    return Slowness(max(delay, 0), every if every > 0 else 1, max(jitter, 0), rnd != 0)


def parse_shim_stats(text: str) -> Optional[Dict[str, int]]:
    """The shim's statistics line (slowsync.c ``record``); None if torn or empty."""
    fields = text.split()
    if len(fields) < len(SHIM_FIELDS):
        return None
    try:
        return dict(zip(SHIM_FIELDS, (int(f) for f in fields[:len(SHIM_FIELDS)])))
    except ValueError:
        return None


def compile_shim(source: str, target: str, what: str, libraries: Sequence[str] = ("-ldl",),
                 compiler: Optional[str] = None) -> str:
    """Compile the C ``source`` into the shared object ``target`` (its path returned); ``what``
    names the shim in the messages. :class:`ShimUnavailable` when gcc is missing or fails."""
    gcc = compiler or shutil.which("gcc")
    if gcc is None:
        raise ShimUnavailable(f"gcc not found on PATH: {what} ({os.path.basename(source)}) is compiled at "
                              "run time; install gcc (apt-get install gcc)")
    if not os.path.exists(source):
        raise ShimUnavailable(f"{what}: its source {source} is missing (an install without the package's "
                              "C files?)")
    done = subprocess.run([gcc, "-O2", "-Wall", "-shared", "-fPIC", "-o", target, source, *libraries],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not os.path.exists(target):
        raise ShimUnavailable(f"gcc could not build {what} ({source}): {(done.stdout + done.stderr).strip()[-600:]}")
    return target


def build(out_dir: str, compiler: Optional[str] = None) -> str:
    """Compile slowsync.c into ``out_dir``; the shared object's path."""
    return compile_shim(SOURCE, os.path.join(out_dir, "slowsync.so"), "the slow-sync shim",
                        ("-ldl", "-lpthread"), compiler)


def add_stats(totals: Dict[str, int], stats: Optional[Dict[str, int]]) -> Dict[str, int]:
    """``totals`` with one process's statistics added (``real_max_ns``: the larger)."""
    for k, v in (stats or {}).items():
        totals[k] = max(totals.get(k, 0), v) if k == "real_max_ns" else totals.get(k, 0) + v
    return totals


class SlowSyncShim:
    """The built shim and, under ``work_dir/shim``, one control file per member and one
    statistics file per start of a member (the shim counts from zero in each process)."""

    build = staticmethod(build)      # a subclass may build it otherwise (bench's error types)

    def __init__(self, work_dir: str, members: int, seed: int) -> None:
        self.dir = os.path.join(work_dir, "shim")
        os.makedirs(self.dir, exist_ok=True)
        self.library = self.build(self.dir)
        self.members, self.seed = members, seed
        self.current: Dict[int, Slowness] = {}
        self.starts: Dict[int, int] = {m: 0 for m in range(members)}
        for member in range(members):
            self.set(member, FAST)

    def control_path(self, member: int) -> str:
        return os.path.join(self.dir, f"control-{member}")

    def stats_path(self, member: int, start: Optional[int] = None) -> str:
        """The statistics file of the member's ``start``-th run (default: its latest)."""
        return os.path.join(self.dir, f"stats-{member}.{self.starts[member] if start is None else start}")

    def wrap(self, member: int, argv: List[str]) -> List[str]:
        """ProcessCluster's ``wrap_command`` (called at each start): the member runs with the
        shim preloaded, its control file and a fresh statistics file."""
        self.starts[member] += 1
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

    def stats(self, member: int, start: Optional[int] = None) -> Optional[Dict[str, int]]:
        """The statistics of the member's latest run (or its ``start``-th); None if none yet."""
        try:
            with open(self.stats_path(member, start)) as f:
                return parse_shim_stats(f.read())
        except OSError:
            return None

    def all_stats(self) -> Dict[int, Optional[Dict[str, int]]]:
        return {m: self.stats(m) for m in range(self.members)}

    def total_stats(self, member: int) -> Dict[str, int]:
        """The member's statistics summed over all its runs."""
        totals: Dict[str, int] = {}
        for start in range(1, self.starts[member] + 1):
            add_stats(totals, self.stats(member, start))
        return totals
