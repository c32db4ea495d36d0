"""Cost of publishing one counter value, against a plain dict store in the same run.

Run: PYTHONPATH=. python bench/ops_counters_bench.py
"""
import tempfile
import timeit

import numpy as np

from aeronpy.cluster.counters import CountersWriter, SlotId
d = tempfile.mkdtemp()
w = CountersWriter(d, member_id=0, cluster_id=1)
v = w.values; i = int(SlotId.COMMIT_INDEX); h = w.slot("commit_index")
arr = np.frombuffer(w._map, dtype=np.int64, count=len(w.names), offset=w._values_offset)
py = {"commit_index": 0}
n = 2_000_000
res = {}
for name, stmt, g in [("dict store (baseline)", "py['commit_index'] = 5", {"py": py}),
                      ("values[i] = v (memoryview)", "v[i] = 5", {"v": v, "i": i}),
                      ("numpy view arr[i] = v", "a[i] = 5", {"a": arr, "i": i}),
                      ("slot handle .set(v)", "h.set(5)", {"h": h}),
                      ("touch()", "w.touch()", {"w": w}),
                      ("observe_duty_cycle(ns)", "w.observe_duty_cycle(5)", {"w": w})]:
    res[name] = min(timeit.repeat(stmt, globals=g, number=n, repeat=3)) / n * 1e9
base = res["dict store (baseline)"]
for k, ns in res.items():
    print(f"{k:30s} {ns:6.1f} ns  {ns/base:4.2f}x baseline")
del arr
w.close()
