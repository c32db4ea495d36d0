"""An LD_PRELOAD shim compiled with gcc at run time (clock_trial's clockshift.c, slowdisk_trial's
slowsync.c): a missing gcc or a failed build is a missing prerequisite (exit status 2). The
compiling is aeronpy.testing.slowdisk.compile_shim's (the soak builds slowsync.c too)."""
from __future__ import annotations

from typing import Optional, Sequence

from aeronpy.testing import slowdisk
from loss_trial.harness import MissingPrerequisite


class ShimUnavailable(MissingPrerequisite):
    """gcc is missing, the shim does not build, or it does not do what it should."""


def build(source: str, target: str, what: str, libraries: Sequence[str] = ("-ldl",),
          compiler: Optional[str] = None) -> str:
    """Compile ``source`` into the shared object ``target`` (its path returned); ``what`` names
    the shim in the messages."""
    try:
        return slowdisk.compile_shim(source, target, what, libraries, compiler)
    except slowdisk.ShimUnavailable as e:
        raise ShimUnavailable(str(e)) from None
