"""Snapshot benchmarks: log pause and throughput of a large-state snapshot, catch-up speed.

    python bench/snapshot_bench.py [--state-mib 256] [--install-mib 64] [--entries 20000]
    python bench/snapshot_bench.py --quick     # small sizes, each part bounded: a smoke run

Every wait in it is bounded and fails with a message naming what did not happen (exit 1);
sizes too small for a part to measure what it claims are refused (exit 2).

Real nodes in this process on loopback UDP and real files (file_sync "none" for the log; the
snapshot itself is always fsynced). Baselines measured in the same run: writing+fsyncing the
same bytes with plain Python file calls, and the leader's own ingest rate.
"""
from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aeronpy.service import ClusteredService  # noqa: E402
from tests.snapshots.cluster_helpers import LocalCluster  # noqa: E402

_MIB = 1 << 20
# The least that gives each part something to measure: a state to snapshot (BlobService holds
# whole KiB; 0 MiB would be an empty snapshot), a snapshot to install, entries to replay.
MIN_STATE_MIB = 1
MIN_INSTALL_MIB = 1
MIN_ENTRIES = 100
QUICK = {"state_mib": 8, "install_mib": 4, "entries": 1000}


class WaitTimeout(RuntimeError):
    """A bounded wait of the benchmark expired: the figure it waited for cannot be measured."""


def _wait(cluster, predicate, timeout_s: float, what: str, detail=None) -> None:
    """``cluster.wait_for(predicate, timeout_s)``, raising WaitTimeout("... did not ...") if it
    expires; ``detail()`` adds the state seen at that moment to the message."""
    if not cluster.wait_for(predicate, timeout_s):
        extra = ""
        if detail is not None:
            try:
                extra = f" ({detail()})"
            except Exception as exc:       # the message matters more than the detail
                extra = f" (state unreadable: {exc!r})"
        raise WaitTimeout(f"{what} within {timeout_s:g} s{extra}")


class BlobService(ClusteredService):
    """Holds ``size`` bytes of state; each message flips one byte (deterministic)."""

    def __init__(self, size: int = 0):
        self.state = bytearray(os.urandom(1024)) * (size // 1024) if size else bytearray()
        self.applied = 0

    def on_start(self, cluster, snapshot):
        if snapshot is not None:
            self.state = bytearray(snapshot.read())

    def on_session_message(self, session, timestamp_ns, message):
        self.applied += 1
        if self.state:
            i = (self.applied * 7919) % len(self.state)
            self.state[i] ^= 1
        if session is not None:
            session.offer(struct.pack("<q", self.applied))

    def on_take_snapshot(self, writer):
        writer.write(memoryview(self.state))


def baseline_write(size: int, directory: str) -> float:
    data = bytearray(os.urandom(1024)) * (size // 1024)
    path = os.path.join(directory, "baseline.bin")
    t = time.perf_counter()
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - t
    os.remove(path)
    return elapsed


def bench_large_snapshot(size: int, directory: str) -> dict:
    cluster = LocalCluster(directory, count=1, service_factory=lambda: BlobService(size),
                           snapshot_log_bytes=0)
    cluster.start()
    try:
        cluster.leader()
        node = cluster.nodes[0]
        with cluster.client() as client:
            client.request(b"x" * 8, timeout_s=5)
            # measure request latency while the snapshot is written in the background
            from aeronpy.cluster import admin
            t0 = time.perf_counter()
            admin_result = {}
            import threading
            th = threading.Thread(target=lambda: admin_result.update(admin.snapshot(cluster.data_dir(0), 120)))
            th.start()
            lat = []
            while th.is_alive():
                a = time.perf_counter()
                client.request(b"y" * 8, timeout_s=30)
                lat.append(time.perf_counter() - a)
            th.join()
            total_wall = time.perf_counter() - t0
        stats = node.snapshots.snapshotter.stats
        # the tool sees the snapshot once its file is recorded; the duty cycle notes its time
        # a moment later (Snapshotter.poll): wait for that, or the figures read 0
        deadline = time.monotonic() + 10
        while stats.taken == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        if stats.taken == 0:
            raise SystemExit(f"the snapshot was not taken: {admin_result}")
        return {"bytes": stats.last_bytes, "pause_s": stats.last_pause_ns / 1e9,
                "total_s": stats.last_total_ns / 1e9, "admin_wall_s": total_wall,
                "requests_during": len(lat), "max_request_s": max(lat) if lat else 0.0}
    finally:
        cluster.close()


def bench_catch_up(entries: int, directory: str) -> dict:
    cluster = LocalCluster(directory, service_factory=BlobService, snapshot_log_bytes=0)
    cluster.start()
    try:
        leader = cluster.leader()
        victim = (leader + 1) % 3
        cluster.stop(victim)
        with cluster.client() as client:
            t = time.perf_counter()
            outstanding = sent = 0
            while sent < entries:
                if outstanding < 256 and client.offer(b"z" * 32) > 0:
                    sent += 1
                    outstanding += 1
                outstanding -= client.poll_egress(lambda c, p: None)
            target = cluster.nodes[leader].commit_index
            while cluster.nodes[leader].module.applied_index < sent:
                client.poll_egress(lambda c, p: None)
            ingest_s = time.perf_counter() - t
            target = cluster.nodes[leader].commit_index
        t = time.perf_counter()
        cluster.start(victim)
        _wait(cluster, lambda: cluster.nodes[victim].module.applied_index >= target, 120,
              f"catch-up: the restarted member {victim} did not apply up to index {target}",
              lambda: f"it applied {cluster.nodes[victim].module.applied_index}")
        catch_up_s = time.perf_counter() - t
        return {"entries": target, "ingest_per_s": sent / ingest_s, "catch_up_s": catch_up_s,
                "catch_up_per_s": target / catch_up_s}
    finally:
        cluster.close()


# The install part must make the leader unable to serve the stopped member from its log: a
# leader catches a follower up from its archive on disk, which drops only whole segments below
# a snapshot. So the log there uses the smallest segments and gets several of them before the
# snapshot; with 64 MiB segments and a few small entries no install ever happened.
INSTALL_SEGMENT_BYTES = 64 * 1024
INSTALL_FILL_ENTRIES, INSTALL_FILL_BYTES = 300, 1024      # ~5 segments of log


def bench_install(size: int, directory: str) -> dict:
    cluster = LocalCluster(directory, service_factory=lambda: BlobService(size),
                           snapshot_log_bytes=0, snapshots_to_keep=1,
                           segment_bytes=INSTALL_SEGMENT_BYTES)
    cluster.start()
    try:
        leader = cluster.leader()
        if leader is None:
            raise WaitTimeout("install: no leader elected within 10 s")
        victim = (leader + 1) % 3
        from aeronpy.cluster import admin
        with cluster.client() as client:
            client.request(b"a" * 8, timeout_s=5)
            cluster.stop(victim)
            for _ in range(INSTALL_FILL_ENTRIES):
                client.request(b"b" * INSTALL_FILL_BYTES, timeout_s=5)
            admin.snapshot(cluster.data_dir(leader), 120)
            _wait(cluster, lambda: all(n.snapshots.snapshotter.stats.taken for n in cluster.nodes.values()),
                  120, "install: the running members did not all record the snapshot",
                  lambda: "taken: " + ", ".join(f"member {i} {n.snapshots.snapshotter.stats.taken}"
                                                for i, n in sorted(cluster.nodes.items())))
            for _ in range(5):
                client.request(b"c" * 8, timeout_s=5)
            lead = cluster.nodes[leader]
            snap_index = lead.snapshots.snapshotter.stats.last_index
            stats = lead.snapshots.snapshotter.stats
            _wait(cluster, lambda: lead.core.log.base_index >= snap_index and stats.purged_segments >= 1,
                  60, f"install: the leader (member {leader}) did not drop its log below the snapshot "
                      f"at index {snap_index}, so the stopped member could catch up from the log instead",
                  lambda: f"log base index {lead.core.log.base_index}, segments purged "
                          f"{stats.purged_segments}, role {lead.role.name}")
            size_on_disk = lead.snapshots.snapshotter.stats.last_bytes
            t = time.perf_counter()
            cluster.start(victim)
            _wait(cluster, lambda: cluster.nodes[victim].snapshots.receiver.installed >= 1, 300,
                  f"install: the restarted member {victim} did not install the leader's snapshot",
                  lambda: f"it applied index {cluster.nodes[victim].module.applied_index}, the "
                          f"leader committed {lead.commit_index}")
            install_s = time.perf_counter() - t
            _wait(cluster, lambda: cluster.nodes[victim].module.applied_index >= lead.commit_index, 60,
                  f"install: member {victim} did not catch up with the leader after the install",
                  lambda: f"applied {cluster.nodes[victim].module.applied_index}, leader committed "
                          f"{lead.commit_index}")
            # the others kept committing while the transfer ran: one request's latency now
            a = time.perf_counter()
            try:
                client.request(b"d" * 8, timeout_s=30)
                after_s = time.perf_counter() - a
            except Exception as exc:     # reported, not hidden: the figure says it failed
                after_s = float("nan")
                print(f"request after the install failed: {exc!r}")
        return {"bytes": size_on_disk, "install_s": install_s, "mb_per_s": size_on_disk / _MIB / install_s,
                "request_after_s": after_s}
    finally:
        cluster.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Snapshot benchmarks: a large-state snapshot, catch-up by log replay, "
                    "snapshot install on a member that fell behind.")
    parser.add_argument("--state-mib", type=int, default=256,
                        help=f"state of the large-snapshot part, MiB (default 256, at least {MIN_STATE_MIB})")
    parser.add_argument("--install-mib", type=int, default=64,
                        help=f"state of the install part, MiB (default 64, at least {MIN_INSTALL_MIB})")
    parser.add_argument("--entries", type=int, default=20000,
                        help=f"entries the catch-up part replays (default 20000, at least {MIN_ENTRIES})")
    parser.add_argument("--quick", action="store_true",
                        help=f"small sizes for a short run (seconds; figures are noisy) "
                             f"(--state-mib {QUICK['state_mib']} --install-mib {QUICK['install_mib']} "
                             f"--entries {QUICK['entries']}); overrides those options")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.state_mib, args.install_mib, args.entries = (QUICK["state_mib"], QUICK["install_mib"],
                                                          QUICK["entries"])
    for name, value, least in (("--state-mib", args.state_mib, MIN_STATE_MIB),
                               ("--install-mib", args.install_mib, MIN_INSTALL_MIB),
                               ("--entries", args.entries, MIN_ENTRIES)):
        if value < least:
            parser.error(f"{name} {value}: at least {least}; a smaller part has nothing to "
                         "measure (use --quick for a short run)")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        run(args)
    except WaitTimeout as exc:
        print(f"snapshot_bench: {exc}", file=sys.stderr)
        sys.exit(1)


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as d:
        size = args.state_mib * _MIB
        base = baseline_write(size, d)
        print(f"baseline: write+fsync {args.state_mib} MiB with plain file calls: {base:.3f} s "
              f"({args.state_mib / base:.0f} MB/s)")
        r = bench_large_snapshot(size, os.path.join(d, "large"))
        print(f"snapshot of {r['bytes'] / _MIB:.0f} MiB state: log paused {r['pause_s'] * 1e3:.0f} ms, "
              f"total {r['total_s']:.3f} s ({r['bytes'] / _MIB / r['total_s']:.0f} MB/s; "
              f"{r['total_s'] / base:.2f}x the baseline), {r['requests_during']} requests served "
              f"meanwhile, slowest {r['max_request_s'] * 1e3:.0f} ms")
        c = bench_catch_up(args.entries, os.path.join(d, "catchup"))
        print(f"catch-up by log replay: {c['entries']} entries in {c['catch_up_s']:.3f} s = "
              f"{c['catch_up_per_s']:.0f} entries/s (leader ingest in the same run "
              f"{c['ingest_per_s']:.0f} entries/s; ratio {c['catch_up_per_s'] / c['ingest_per_s']:.1f}x)")
        i = bench_install(args.install_mib * _MIB, os.path.join(d, "install"))
        base_i = baseline_write(args.install_mib * _MIB, d)
        print(f"install snapshot: {i['bytes'] / _MIB:.0f} MiB in {i['install_s']:.3f} s = "
              f"{i['mb_per_s']:.0f} MB/s (plain write+fsync of the same size {args.install_mib / base_i:.0f} MB/s); "
              f"a request right after took {i['request_after_s'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
