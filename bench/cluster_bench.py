"""The cluster benchmark, aeronpy next to PySyncObj (script wrapper of :mod:`aeronpy.bench`).

    python bench/cluster_bench.py                      # 5 s per part, 32 and 256 bytes
    python bench/cluster_bench.py --quick              # ~1 s per part, what the tests run
    python bench/cluster_bench.py --plots bench/plots  # + 1024 B throughput and PNG plots
    aeronpy bench ...                                  # the same, from an installed package
"""
from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from aeronpy.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
