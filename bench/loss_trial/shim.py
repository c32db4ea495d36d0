"""An LD_PRELOAD shim compiled with gcc at run time (clock_trial's clockshift.c, slowdisk_trial's
slowsync.c): a missing gcc or a failed build is a missing prerequisite (exit status 2)."""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Optional, Sequence

from loss_trial.harness import MissingPrerequisite


class ShimUnavailable(MissingPrerequisite):
    """gcc is missing, the shim does not build, or it does not do what it should."""


def build(source: str, target: str, what: str, libraries: Sequence[str] = ("-ldl",),
          compiler: Optional[str] = None) -> str:
    """Compile ``source`` into the shared object ``target`` (its path returned); ``what`` names
    the shim in the messages."""
    gcc = compiler or shutil.which("gcc")
    if gcc is None:
        raise ShimUnavailable(f"gcc not found on PATH: {what} ({os.path.basename(source)}) is compiled at "
                              "run time; install gcc (apt-get install gcc)")
    done = subprocess.run([gcc, "-O2", "-Wall", "-shared", "-fPIC", "-o", target, source, *libraries],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not os.path.exists(target):
        raise ShimUnavailable(f"gcc could not build {what} ({source}): {(done.stdout + done.stderr).strip()[-600:]}")
    return target
