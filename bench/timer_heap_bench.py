"""TimerTable under the good-till-time pattern: heap size and cost per operation.

A service that, per message, schedules 100 timers an hour out and cancels them (orders
cancelled before they expire), for 2,000 messages: 0 live timers at the end. Reports the
due-heap's length and the time per schedule+cancel pair, for the working tree's TimerTable
and, with ``--against REV``, the TimerTable of a git revision (e.g. one before the heap was
compacted) loaded from ``git show REV:aeronpy/cluster/timers.py``.

    python bench/timer_heap_bench.py [--messages 2000] [--per-message 100] [--against REV]
"""
from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import time
import types

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aeronpy.cluster.timers import TimerTable  # noqa: E402

T0 = 1_000_000_000
HOUR_NS = 3600 * 1_000_000_000


def table_class_at(rev: str) -> type:
    text = subprocess.run(["git", "show", f"{rev}:aeronpy/cluster/timers.py"], cwd=ROOT,
                          check=True, capture_output=True, text=True).stdout
    module = types.ModuleType(f"timers_at_{rev}")
    exec(compile(text, module.__name__, "exec"), module.__dict__)
    return module.TimerTable


def run(table_cls: type, messages: int, per_message: int) -> dict:
    table = table_cls()
    peak = 0
    start = time.perf_counter()
    for message in range(messages):
        ts = T0 + message * 1_000_000
        for n in range(per_message):
            table.schedule(0, n, ts + HOUR_NS)
            table.cancel(0, n)
        table.schedule(0, 1_000_000 + message, ts + HOUR_NS)     # one resting order each
        peak = max(peak, len(table._heap))
    elapsed = time.perf_counter() - start
    return {"live": len(table), "heap": len(table._heap), "peak_heap": peak,
            "ns_per_pair": elapsed * 1e9 / (messages * per_message)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--per-message", type=int, default=100)
    parser.add_argument("--against", metavar="REV", help="also run the TimerTable of this git revision")
    args = parser.parse_args()
    rows = [("working tree", TimerTable)]
    if args.against:
        rows.append((args.against, table_class_at(args.against)))
    for name, cls in rows:
        r = run(cls, args.messages, args.per_message)
        print(f"{name:>14}: live {r['live']:>7,}  heap {r['heap']:>9,}  peak heap {r['peak_heap']:>9,}"
              f"  {r['ns_per_pair']:6.0f} ns per schedule+cancel")


if __name__ == "__main__":
    main()
