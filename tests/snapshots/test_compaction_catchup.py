"""Compaction keeps disk bounded under endless load; lagging members rejoin by install snapshot
(behind the purge point) or by log replay (within the log) while the others keep committing."""
import os
import struct
import threading
import time

from .cluster_helpers import LocalCluster, add, applied_everywhere

PAYLOAD = struct.pack("<q", 1) + bytes(1016)      # 1 KiB messages: the log grows quickly


def _disk_bytes(directory: str) -> int:
    """Bytes of the node's files now; the node runs meanwhile, so a file listed here can be
    purged before its size is read (it then holds no disk space: it counts 0)."""
    total = 0
    for name in os.listdir(directory):
        if name == "errors.log":      # a fixed-size ring (about 1 MiB), not log growth
            continue
        if name.endswith((".seg", ".snap", ".log", ".pos", ".state")):
            try:
                total += os.path.getsize(os.path.join(directory, name))
            except FileNotFoundError:
                pass
    return total


def _load(cluster, count: int, time_limit_s: float, samples: list) -> int:
    sent = 0
    deadline = time.monotonic() + time_limit_s
    with cluster.client() as client:
        while sent < count and time.monotonic() < deadline:
            client.request(PAYLOAD, timeout_s=5.0)
            sent += 1
            if sent % 100 == 0:
                samples.append(max(_disk_bytes(cluster.data_dir(i)) for i in cluster.nodes))
    return sent


SEGMENT = 64 * 1024
THRESHOLD = 32 * 1024


def _bound() -> int:
    # snapshots_to_keep=2: the log after the older kept snapshot spans at most two thresholds,
    # plus what arrives while the next snapshot is still being written in the background (the
    # automatic trigger waits for it: up to one more threshold under load), plus a batch, held in
    # segments of which the first and last are partly outside it.
    return 3 * THRESHOLD + 3 * SEGMENT + 64 * 1024


def test_disk_stays_bounded_under_endless_load(tmp_path):
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=THRESHOLD, segment_bytes=SEGMENT,
                           snapshots_to_keep=2).start()
    samples: list = []
    try:
        assert cluster.leader() is not None
        sent = _load(cluster, 1500, 25.0, samples)
        assert sent >= 600, "too little load to show anything"
        written = sent * len(PAYLOAD)
        assert written > 3 * _bound()
        assert max(samples) <= _bound(), (max(samples), _bound())
        for node in cluster.nodes.values():
            assert node.snapshots.snapshotter.stats.taken >= 5
            assert node.snapshots.snapshotter.stats.purged_segments >= 3
    finally:
        cluster.close()


def test_negative_control_without_snapshots_disk_grows_past_the_bound(tmp_path):
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0, segment_bytes=SEGMENT).start()
    samples: list = []
    try:
        assert cluster.leader() is not None
        sent = _load(cluster, 800, 15.0, samples)
        assert sent * len(PAYLOAD) > 2 * _bound()
        assert max(samples) > _bound()     # the same check fails when nothing is purged
    finally:
        cluster.close()


def _rejoin(tmp_path, behind: int, **config):
    cluster = LocalCluster(str(tmp_path), **config).start()
    try:
        leader = cluster.leader()
        victim = (leader + 1) % 3
        with cluster.client() as client:
            for _ in range(20):
                add(client)
            cluster.stop(victim)
            for _ in range(behind):
                add(client)
            commit_before = cluster.nodes[leader].commit_index
            # keep committing while the victim comes back
            progress = {"adds": 0, "error": None}
            stop = threading.Event()

            def keep_adding():
                try:
                    with cluster.client() as c2:
                        while not stop.is_set() and progress["adds"] < 2000:
                            add(c2)
                            progress["adds"] += 1
                except Exception as exc:       # reported below, never lost with the thread
                    progress["error"] = exc
            t = threading.Thread(target=keep_adding)
            t.start()
            started = time.monotonic()
            cluster.start(victim)
            caught = cluster.wait_for(lambda: cluster.nodes[victim].module.applied_index >= commit_before, 20)
            catch_up_s = time.monotonic() - started
            # the others must keep committing around the rejoin (a short replay can finish
            # before a single add returns, so the window extends a little past it)
            cluster.wait_for(lambda: progress["adds"] >= 20, 5)
            adds_during = progress["adds"]
            stop.set()
            t.join(10)
            assert not t.is_alive() and progress["error"] is None, progress
            assert caught
        # every add of 1 was answered, so each was applied exactly once: the state every member
        # must reach, whoever leads now (an election on a loaded machine may move the leadership)
        total = 20 + behind + progress["adds"]
        expected = f"{total}:{total}"
        converged = cluster.wait_for(lambda: all(s.state_hash() == expected
                                                 for s in cluster.services.values()), 10)
        assert converged, (expected, {i: s.state_hash() for i, s in cluster.services.items()})
        last = max(n.commit_index for n in cluster.nodes.values())
        assert cluster.wait_for(lambda: applied_everywhere(cluster, last), 10)
        installed = cluster.nodes[victim].snapshots.receiver.installed
        # and the rejoined member survives its own restart
        cluster.stop(victim)
        cluster.start(victim)
        assert cluster.wait_for(lambda: cluster.services[victim].state_hash() == expected, 10)
        return installed, adds_during, catch_up_s
    finally:
        cluster.close()


def test_member_behind_the_purge_point_rejoins_by_install_snapshot(tmp_path):
    installed, adds_during, _ = _rejoin(tmp_path, 1500, snapshot_log_bytes=8 * 1024,
                                        segment_bytes=SEGMENT, snapshots_to_keep=1)
    assert installed >= 1
    assert adds_during > 0       # the others kept committing while it caught up


def test_member_slightly_behind_rejoins_by_log_replay(tmp_path):
    installed, adds_during, _ = _rejoin(tmp_path, 300, snapshot_log_bytes=0)
    assert installed == 0
    assert adds_during > 0
