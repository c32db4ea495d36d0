"""Archive benchmarks: append throughput per file_sync level against a plain-Python baseline
measured in the same run, and recovery time of a log of 1,000,000 32-byte entries.

    python bench/archive_bench.py [--dir DIR] [--quick]

The baseline writes the very bytes the archive writes (the encoded records, one os.write per
batch, plus os.fdatasync / os.fsync per batch for data / full) to a plain file: the cost of
durability itself, without framing, checksums, segments or bookkeeping. Ratios are what to
read: the machine is shared and noisy.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aeronpy import _segscan  # noqa: E402
from aeronpy._logindex import LogIndex  # noqa: E402
from aeronpy.archive import Archive  # noqa: E402

BATCH = 256   # entries per duty cycle (one append_from call, one group commit)


def build_log(n: int, size: int) -> LogIndex:
    log = LogIndex()
    payload = bytes(range(256)) * (size // 256 + 1)
    blob = bytearray()
    import struct
    header = struct.pack("<IHHq", size, 16, 0, 1)
    one = header + payload[:size]
    for _ in range(n):
        blob += one
    log.append_packed(bytes(blob), n)
    return log


def bench_archive(root: str, log: LogIndex, level: str, sync_each: bool = False) -> float:
    """``sync_each``: block on arc.sync() after every batch (one sync per batch, as the
    baseline) instead of the background syncer's group commit across batches."""
    path = tempfile.mkdtemp(dir=root)
    arc = Archive.open(path, file_sync=level)
    arc.recover()
    n = log.last_index
    t0 = time.perf_counter()
    for lo in range(1, n + 1, BATCH):
        hi = min(lo + BATCH, n + 1)
        arc.append_from(log, lo, hi)
        if sync_each:
            arc.sync()
        else:
            arc.request_sync()
            arc.poll_synced()
    deadline = time.monotonic() + 120
    while arc.poll_synced() < n and time.monotonic() < deadline:
        time.sleep(0.0001)
    elapsed = time.perf_counter() - t0
    assert arc.poll_synced() == n
    arc.close()
    shutil.rmtree(path)
    return elapsed


def bench_baseline(root: str, log: LogIndex, level: str) -> float:
    """Plain os.write of the same record bytes, one write (+ sync) per batch."""
    n = log.last_index
    batches = []
    for lo in range(1, n + 1, BATCH):
        hi = min(lo + BATCH, n + 1)
        packed, count = log.pack(lo, hi, log.size_between(lo, hi))
        batches.append(bytes(_segscan.encode_records(packed, count, lo)[0]))
    fd, path = tempfile.mkstemp(dir=root)
    sync = {"none": None, "data": os.fdatasync, "full": os.fsync}[level]
    t0 = time.perf_counter()
    for b in batches:
        os.write(fd, b)
        if sync is not None:
            sync(fd)
    elapsed = time.perf_counter() - t0
    os.close(fd)
    os.remove(path)
    return elapsed


def bench_recovery(root: str, n: int) -> tuple:
    path = tempfile.mkdtemp(dir=root)
    arc = Archive.open(path, file_sync="none")
    arc.recover()
    log = build_log(n, 32)
    for lo in range(1, n + 1, 65536):
        arc.append_from(log, lo, min(lo + 65536, n + 1))
    arc.close()
    del log
    t0 = time.perf_counter()
    arc = Archive.open(path, file_sync="none")
    rec = arc.recover()
    t_recover = time.perf_counter() - t0
    assert rec.log.last_index == n
    # replay into a no-op service: what the node does before joining the cluster
    on_message = (lambda payload: None)
    log = rec.log
    t1 = time.perf_counter()
    payload_at = log.payload_at
    for i in range(1, n + 1):
        on_message(payload_at(i))
    t_replay = time.perf_counter() - t1
    arc.close()
    shutil.rmtree(path)
    return t_recover, t_replay


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    ap.add_argument("--quick", action="store_true", help="smaller runs")
    args = ap.parse_args()
    root = tempfile.mkdtemp(dir=args.dir)
    try:
        scale = 4 if args.quick else 1
        print(f"append throughput, {BATCH} entries per append_from (one group commit)")
        print("level/each: arc.sync() after every batch (same number of syncs as the baseline)")
        print(f"{'entry':>6} {'level':>10} {'archive ent/s':>14} {'MB/s':>7} "
              f"{'baseline ent/s':>15} {'MB/s':>7} {'ratio':>6}")
        for size, n in ((32, 200_000 // scale), (1024, 40_000 // scale)):
            log = build_log(n, size)
            for level, sync_each in (("none", False), ("data", False), ("full", False),
                                     ("data", True), ("full", True)):
                ta = bench_archive(root, log, level, sync_each)
                tb = bench_baseline(root, log, level)
                mb = n * (size + 32) / 1e6   # bytes on disk: 32-byte record header + payload
                label = level + ("/each" if sync_each else "")
                print(f"{size:>5}B {label:>10} {n / ta:>14,.0f} {mb / ta:>7.1f} "
                      f"{n / tb:>15,.0f} {mb / tb:>7.1f} {tb / ta:>6.2f}")
        n = 1_000_000 // scale
        t_rec, t_replay = bench_recovery(root, n)
        print(f"recovery of {n:,} x 32-byte entries: {t_rec:.3f} s "
              f"({n / t_rec:,.0f} entries/s); replay into a no-op service: {t_replay:.3f} s "
              f"({n / t_replay:,.0f} entries/s); total {n / (t_rec + t_replay):,.0f} entries/s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
