"""PySyncObj half of the cluster benchmark (script wrapper).

The implementation is :mod:`aeronpy.testing.pysyncobj_harness` (so ``aeronpy bench`` can run it
from an installed package); this script keeps the original command line and names its node
children after itself:

    python bench/pysyncobj_bench.py                # full run, 32 and 256 bytes
    python bench/pysyncobj_bench.py --quick --json # ~15 s smoke
"""
from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from aeronpy.testing import pysyncobj_harness  # noqa: E402
from aeronpy.testing.pysyncobj_harness import MODES, main, node_main, run  # noqa: E402,F401

pysyncobj_harness.NODE_COMMAND = [sys.executable, os.path.abspath(__file__)]

if __name__ == "__main__":
    sys.exit(main())
