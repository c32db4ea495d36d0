"""Build and check the clockshift LD_PRELOAD shim (clockshift.c) in a temporary directory."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from loss_trial import shim as compiled_shim
from loss_trial.shim import ShimUnavailable

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clockshift.c")
SHIFT_ENV = "CLOCKSHIFT_FILE"
CHECK_SHIFT_S = 3600


def write_shift(path: str, offset_s: float) -> None:
    """Set the wall-clock offset of every process whose shim reads ``path`` (within 10 ms);
    written to a temporary file and renamed, so a reader never sees half a number."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{int(round(offset_s * 1e9))}\n")
    os.replace(tmp, path)


def env_prefix(lib: str, shift_file: str) -> list:
    """``env`` arguments that run a command under the shim reading ``shift_file``."""
    return [f"LD_PRELOAD={lib}", f"{SHIFT_ENV}={shift_file}"]


def build(work_dir: str) -> str:
    """Compile the shim into ``work_dir`` and check it moves CLOCK_REALTIME (and only that)
    of a Python child; returns the library's path."""
    lib = compiled_shim.build(SOURCE, os.path.join(work_dir, "clockshift.so"), "the clock shim")
    shift_file = os.path.join(work_dir, "shim-check.shift")
    write_shift(shift_file, CHECK_SHIFT_S)
    probe = "import time; print(time.time_ns(), time.monotonic_ns())"
    env = dict(os.environ, LD_PRELOAD=lib, **{SHIFT_ENV: shift_file})
    before_wall, before_mono = time.time_ns(), time.monotonic_ns()
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    after_mono = time.monotonic_ns()
    try:
        wall, mono = (int(x) for x in out.stdout.split())
    except ValueError:
        raise ShimUnavailable(f"a Python child under the clock shim failed: {(out.stdout + out.stderr)[-600:]}")
    shifted_s = (wall - before_wall) / 1e9
    if not CHECK_SHIFT_S - 30 < shifted_s < CHECK_SHIFT_S + 30 or not before_mono <= mono <= after_mono:
        raise ShimUnavailable(f"the clock shim does not shift CLOCK_REALTIME alone (a child read its wall clock "
                              f"{shifted_s:+.1f} s off, expected +{CHECK_SHIFT_S}; monotonic within the call: "
                              f"{before_mono <= mono <= after_mono}): is LD_PRELOAD honoured?")
    return lib
