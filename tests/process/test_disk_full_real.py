"""A real full disk under real node processes: each member's data dir on a tmpfs of its own
(8 MiB), filled by a ballast file beside the data dir. Needs root (mount); skipped otherwise,
or when the mount fails. bench/diskfull_trial runs the long version (leader, two members,
snapshots, ext4).

docs/operations.md ("A full disk"): a member whose data dir fills stops with status 4 and
`the disk is full while ...`; once space is freed and it is restarted, it recovers (cutting
what it was writing) and catches up; the others go on meanwhile."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import time

import pytest

from aeronpy import ClusterClient
from aeronpy.cluster.counters import CountersReader
from aeronpy.errors import ClusterTimeoutError, NotConnectedError
from aeronpy.testing.process_cluster import ProcessCluster

from .helpers import COUNTER_SERVICE, add, counters, settled, wait_until

DISK_BYTES = 8 * 1024 * 1024
BASE_PORT = 40900           # this file's ports: 40900 .. 40922
CONFIG = {"segment_bytes": 64 * 1024, "file_sync": "data", "election_timeout_ms": 1000}


class _TmpfsCluster(ProcessCluster):
    """Member ``m`` keeps its data dir on ``disk_dirs[m]``/data."""

    def __init__(self, disk_dirs, **kwargs):
        self.disk_dirs = disk_dirs
        super().__init__(**kwargs)

    def data_dir(self, member: int) -> str:
        return os.path.join(self.disk_dirs[member], "data")


# bench/diskfull_trial/disks.py (stdlib only) loaded by path, nothing of bench/ on sys.path:
# the trial's ballast filler
_spec = importlib.util.spec_from_file_location(
    "diskfull_trial_disks", os.path.join(os.path.dirname(__file__), "..", "..", "bench", "diskfull_trial", "disks.py"))
_bench_disks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench_disks)


def _fill(disk: str, keep_bytes: int = 0) -> None:
    """A ballast file beside the data dir takes every free byte (the last partial pages too),
    or all but ``keep_bytes``."""
    _bench_disks.fill_ballast(os.path.join(disk, "ballast"), keep_bytes)


@pytest.fixture
def disks(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a tmpfs per member to fill a real disk")
    mounted = []
    try:
        for m in range(3):
            point = tmp_path / f"disk{m}"
            point.mkdir()
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(point)],
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                pytest.skip(f"mount -t tmpfs failed: {r.stderr.strip() or r.returncode}")
            mounted.append(str(point))
            (point / "data").mkdir()
        yield mounted
    finally:
        for point in mounted:
            if subprocess.run(["umount", point], capture_output=True, timeout=30).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)


@pytest.fixture
def cluster(disks, tmp_path):
    hash_dir = tmp_path / "hashes"
    hash_dir.mkdir()
    ports = [{"consensus_port": BASE_PORT + 10 * i, "ingress_port": BASE_PORT + 10 * i + 1,
              "admin_port": BASE_PORT + 10 * i + 2} for i in range(3)]
    pc = _TmpfsCluster(disks, members=3, services=(COUNTER_SERVICE,), base_dir=str(tmp_path / "cluster"),
                       config=CONFIG, env={"AERONPY_HASH_DIR": str(hash_dir)}, ports=ports)
    pc.hash_dir = str(hash_dir)
    try:
        pc.start()
        assert pc.leader(timeout_s=20) is not None, pc.tail_log(0)
        pc.check_running(wait_up_s=10)
        yield pc
    finally:
        pc.close(remove=False)        # before the disks' unmount (the fixture order)


def _send_until(client, done, max_requests: int, within_s: float) -> int:
    """Adds of 1 until ``done()`` (bounded by count and time); returns how many were answered."""
    acked, deadline = 0, time.monotonic() + within_s
    for _ in range(max_requests):
        if done() or time.monotonic() > deadline:
            break
        try:
            add(client, 1, timeout_s=2.0)
            acked += 1
        except (ClusterTimeoutError, NotConnectedError):
            pass
    return acked


def _finals(pc) -> dict:
    for m in range(3):
        pc.kill(m, signal.SIGTERM, wait_s=30)
    finals = {}
    for m in range(3):
        with open(os.path.join(pc.hash_dir, f"member-{m}.json")) as f:
            finals[m] = json.load(f)
    return finals


def test_a_follower_whose_disk_fills_stops_with_4_and_catches_up_once_space_is_back(cluster):
    pc = cluster
    leader = pc.leader(timeout_s=10)
    follower = (leader + 1) % 3
    client = ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    try:
        acked = _send_until(client, lambda: False, 50, 20.0)
        _fill(pc.disk_dirs[follower])
        # every add is appended to its log: the preallocated segment fills, the next one cannot
        acked += _send_until(client, lambda: not pc.alive(follower), 5000, 30.0)
        assert pc.procs[follower].poll() == 4, pc.tail_log(follower)
        log = pc.tail_log(follower, 20)
        assert "the disk is full while appending entries" in log and "Traceback" not in log, log
        assert CountersReader(pc.data_dir(follower)).status().state == "failed"
        acked += _send_until(client, lambda: False, 50, 20.0)          # the others go on
        os.remove(os.path.join(pc.disk_dirs[follower], "ballast"))
        pc.start_member(follower)
        acked += _send_until(client, lambda: False, 20, 10.0)
        assert wait_until(lambda: settled(pc, range(3)), 30), [counters(pc, m) for m in range(3)]
        assert pc.alive(follower), pc.tail_log(follower)
    finally:
        client.close()
    finals = _finals(pc)
    assert len({f["state_hash"] for f in finals.values()}) == 1, finals
    assert finals[0]["total"] >= acked > 100


# What fails first depends on the room left (tmpfs pages): 0 B, node.pid; 4 KiB, the data
# dir's write probe; 8 KiB, counters.dat.
@pytest.mark.parametrize("free_bytes", [0, 4096, 8192])
def test_a_member_started_on_a_full_disk_exits_4_saying_so(cluster, free_bytes):
    """A member started on a (nearly) full disk exits 4 with a last line saying the disk is
    full, no traceback, and the failure in errors.log. Each case failed before its fix (strict
    xfails): 0 B free, PidFile.acquire let a bare OSError(ENOSPC) out, a traceback in the log
    and nothing in errors.log; 4 KiB, Archive._check_data_dir's write probe made it a
    configuration error, exit status 2; 8 KiB, CountersWriter._create_file's bare OSError, a
    traceback in the log."""
    pc = cluster
    leader = pc.leader(timeout_s=10)
    follower = (leader + 1) % 3
    assert pc.kill(follower, signal.SIGTERM, wait_s=30) == 0
    _fill(pc.disk_dirs[follower], free_bytes)
    pc.start_member(follower)
    try:
        code = pc.procs[follower].wait(timeout=30)
    except subprocess.TimeoutExpired:
        code = None
    log = pc.tail_log(follower, 30)
    last = log.splitlines()[-1] if log else ""
    assert code == 4, log
    assert ("disk is full" in last or "node.pid" in last) and "Traceback" not in log, log
    from aeronpy.cluster.nodefiles import read_errors
    assert any("No space" in e.text or "disk is full" in e.text for e in read_errors(pc.data_dir(follower)))
    # it stopped cleanly before: its counters.dat (no room for a new one) now says it failed
    with CountersReader(pc.data_dir(follower)) as reader:
        assert reader.status().state == "failed", reader.status()
