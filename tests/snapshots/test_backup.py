"""Backup: follow a real (multi-process) cluster under load, kill -9 the whole cluster, restore a
fresh cluster from the backup, and check that every entry committed up to the backup's reported
position is there, and nothing else."""
import os
import struct
import subprocess
import sys
import threading
import time

from aeronpy import ClusterClient
from aeronpy.archive import Archive
from aeronpy.cluster import entries as E
from aeronpy.cluster.backup import ClusterBackup, restore_to
from aeronpy.cluster.snapshotting import decode_snapshot
from aeronpy.testing.process_cluster import ProcessCluster

from .cluster_helpers import LocalCluster

PAYLOAD = struct.pack("<q", 1) + bytes(504)


def _archive_entries(data_dir: str) -> tuple:
    """(snapshot info or None, {index: (term, type, payload)}) of a stopped member or backup."""
    arc = Archive.open(data_dir)
    rec = arc.recover()
    log = rec.log
    entries = {i: (t, ty, bytes(p)) for i, t, ty, p in log.entries(log.first_index, log.last_index + 1)}
    arc.close()
    return rec.snapshot, entries


def _counter_state(snapshot_path: str) -> tuple:
    with open(snapshot_path, "rb") as f:
        contents = decode_snapshot(f.read())
    return struct.unpack("<qq", bytes(contents.service_streams[0])[:16])


def test_backup_follows_a_cluster_and_restores_everything_committed(tmp_path):
    cluster = ProcessCluster(members=3, services=("aeronpy.testing.services:CounterService",),
                             base_dir=str(tmp_path / "cluster"),
                             config={"snapshot_log_bytes": 96 * 1024, "segment_bytes": 64 * 1024,
                                     "snapshots_to_keep": 2, "election_timeout_ms": 200,
                                     "heartbeat_interval_ms": 40, "leader_heartbeat_timeout_ms": 400,
                                     "session_timeout_ms": 5000, "idle_strategy": "sleep"})
    backup = None
    try:
        cluster.start()
        assert cluster.leader(timeout_s=20) is not None, cluster.tail_log(0)
        endpoints = cluster.ingress_endpoints.split(",")
        backup = ClusterBackup(endpoints, str(tmp_path / "backup"))
        stop = threading.Event()
        follower = threading.Thread(target=backup.run, args=(stop,), kwargs={"max_s": 60})
        follower.start()
        acked = 0
        with ClusterClient.connect(cluster.ingress_endpoints, timeout_s=10) as client:
            deadline = time.monotonic() + 20
            while acked < 800 and time.monotonic() < deadline:
                client.request(PAYLOAD, timeout_s=5.0)
                acked += 1
            # the backup catches up with the load, then the whole cluster dies at once
            leader = cluster.leader()
            committed = cluster.read_counters(leader)["commit_index"]
            assert cluster.wait_for(lambda: backup.position >= committed, 10)
        stop.set()
        follower.join(20)
        position = backup.position
        for member in range(3):
            cluster.kill(member)
        backup.close()
        assert acked >= 400 and position > acked
        assert backup.snapshot_index > 0, "the load should have produced cluster snapshots"

        # every committed entry up to the position is in the backup, identical
        b_snapshot, b_entries = _archive_entries(str(tmp_path / "backup"))
        assert b_snapshot is not None and b_snapshot.index <= position
        # recorded with the cluster time its file names, as the members record theirs
        with open(b_snapshot.path, "rb") as f:
            assert b_snapshot.timestamp_ns == decode_snapshot(f.read()).cluster_time_ns > 0
        assert max(b_entries, default=b_snapshot.index) == position
        assert set(b_entries) == set(range(b_snapshot.index + 1, position + 1))
        compared = 0
        for member in range(3):
            m_snapshot, m_entries = _archive_entries(cluster.data_dir(member))
            for index, entry in b_entries.items():
                if index in m_entries:
                    assert m_entries[index] == entry, (member, index)
                    compared += 1
        assert compared >= len(b_entries)
        # the backup keeps the term history a member keeps (recording log, TERM_START)
        arc = Archive.open(str(tmp_path / "backup"))
        starts = arc.recover().term_starts
        arc.close()
        last_term = b_entries[position][0]
        assert starts and starts[-1].term == last_term, starts
        assert starts[-1].index <= min(i for i, e in b_entries.items() if e[0] == last_term)
        # expected service state at the position: the backup's snapshot, plus the messages after it
        total_at_snapshot, applied_at_snapshot = _counter_state(b_snapshot.path)
        messages_after = sum(1 for (_t, ty, _p) in b_entries.values() if ty == E.SESSION_MESSAGE)
        expected_applied = applied_at_snapshot + messages_after
        assert expected_applied >= acked - 1   # all but possibly a last in-flight ack

        # restore a fresh cluster (new ports, new dirs) from the backup
        fresh = LocalCluster(str(tmp_path / "fresh"), snapshot_log_bytes=96 * 1024)
        for member in range(3):
            restore_to(str(tmp_path / "backup"), fresh.data_dir(member))
        fresh.start()
        try:
            assert fresh.leader() is not None
            assert fresh.wait_for(lambda: all(s.applied == expected_applied for s in fresh.services.values()), 10)
            assert len({s.state_hash() for s in fresh.services.values()}) == 1
            with fresh.client() as client:       # and it keeps working
                client.request(PAYLOAD, timeout_s=5.0)
            assert fresh.wait_for(lambda: all(s.applied == expected_applied + 1 for s in fresh.services.values()), 10)
        finally:
            fresh.close()
    finally:
        cluster.close()


def test_backup_cli_restore_copies_a_backup(tmp_path):
    backup_dir = tmp_path / "b"
    backup_dir.mkdir()
    (backup_dir / "00000000000000000001.seg").write_bytes(b"x")
    (backup_dir / "recording.log").write_bytes(b"")
    (backup_dir / "backup.json").write_text("{}")
    out = subprocess.run([sys.executable, "-m", "aeronpy", "backup", "--config", "unused.toml",
                          "--data-dir", str(backup_dir), "--restore-to", str(tmp_path / "m0")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # a backup without node.state (made before the backup saved one) gets a fresh one: a
    # member refuses a log with terms and no node.state (it would have lost its vote)
    assert sorted(os.listdir(tmp_path / "m0")) == ["00000000000000000001.seg", "node.state",
                                                   "recording.log"]
    again = subprocess.run([sys.executable, "-m", "aeronpy", "backup", "--config", "unused.toml",
                            "--data-dir", str(backup_dir), "--restore-to", str(tmp_path / "m0")],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "already holds a log" in again.stderr
