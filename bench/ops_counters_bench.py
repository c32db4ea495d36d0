"""Cost of publishing one counter value, against a plain dict store in the same run.

Run: PYTHONPATH=. python bench/ops_counters_bench.py [--number N]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--number", type=int, default=2_000_000,
                   help="stores timed per repeat (default 2,000,000; best of 3 repeats)")
    return p


def run(number: int) -> dict:
    import numpy as np

    from aeronpy.cluster.counters import CountersWriter, SlotId

    d = tempfile.mkdtemp(prefix="aeronpy-counters-bench-")
    try:
        w = CountersWriter(d, member_id=0, cluster_id=1)
        try:
            v = w.values
            i = int(SlotId.COMMIT_INDEX)
            h = w.slot("commit_index")
            arr = np.frombuffer(w._map, dtype=np.int64, count=len(w.names), offset=w._values_offset)
            py = {"commit_index": 0}
            res = {}
            for name, stmt, g in [("dict store (baseline)", "py['commit_index'] = 5", {"py": py}),
                                  ("values[i] = v (memoryview)", "v[i] = 5", {"v": v, "i": i}),
                                  ("numpy view arr[i] = v", "a[i] = 5", {"a": arr, "i": i}),
                                  ("slot handle .set(v)", "h.set(5)", {"h": h}),
                                  ("touch()", "w.touch()", {"w": w}),
                                  ("observe_duty_cycle(ns)", "w.observe_duty_cycle(5)", {"w": w})]:
                res[name] = min(timeit.repeat(stmt, globals=g, number=number, repeat=3)) / number * 1e9
            del arr, g
        finally:
            w.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return res


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.number < 1:
        build_parser().error("--number must be at least 1")
    res = run(args.number)
    base = res["dict store (baseline)"]
    for k, ns in res.items():
        print(f"{k:30s} {ns:6.1f} ns  {ns/base:4.2f}x baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
