"""Snapshot and restore on real nodes: same index and byte-identical service state everywhere;
a crash between writing and recording falls back cleanly; a corrupt newest snapshot is skipped
for the previous one with a warning."""
import logging
import os


from aeronpy.cluster import admin
from aeronpy.cluster.snapshotting import decode_snapshot
from aeronpy.testing.services import KeyValueService

from .cluster_helpers import LocalCluster, add, applied_everywhere




def _kv(client, key, value):
    import json
    return json.loads(client.request(json.dumps({"op": "write", "key": key, "value": value}).encode(),
                                     timeout_s=5.0))


def _snapshot_files(data_dir):
    return sorted(n for n in os.listdir(data_dir) if n.endswith(".snap"))


def test_admin_snapshot_is_taken_at_one_index_and_restores_identical_state(tmp_path):
    cluster = LocalCluster(str(tmp_path), service_factory=KeyValueService, snapshot_log_bytes=0).start()
    try:
        leader = cluster.leader()
        assert leader is not None
        with cluster.client() as client:
            for i in range(200):
                _kv(client, f"k{i % 37}", i)
            result = admin.snapshot(cluster.data_dir((leader + 1) % 3))   # ask a follower
            assert result["recorded"], result
            index = result["requested_at_index"]
            assert cluster.wait_for(lambda: all(n.snapshots.snapshotter.stats.taken for n in
                                                cluster.nodes.values()), 10)
            for i in range(200, 260):
                _kv(client, f"k{i % 37}", i)
        last = cluster.nodes[leader].commit_index
        assert cluster.wait_for(lambda: applied_everywhere(cluster, last), 10)
        hashes_before = {i: s.state_hash() for i, s in cluster.services.items()}
        assert len(set(hashes_before.values())) == 1
        # every member snapshotted at the same index, and the service streams are byte-identical
        streams = set()
        for i in cluster.nodes:
            files = _snapshot_files(cluster.data_dir(i))
            assert files == [f"snapshot-{index:020d}-{cluster.nodes[i].core.log.term_at(last)}.snap"] \
                or files[0].startswith(f"snapshot-{index:020d}-")
            with open(os.path.join(cluster.data_dir(i), files[0]), "rb") as f:
                contents = decode_snapshot(f.read())
            assert contents.index == index
            streams.add(bytes(contents.service_streams[0]))
        assert len(streams) == 1
    finally:
        cluster.close()
    restarted = LocalCluster(str(tmp_path), service_factory=KeyValueService, members=cluster.members,
                             snapshot_log_bytes=0).start()
    try:
        assert restarted.wait_for(lambda: all(n.module.applied_index >= last for n in restarted.nodes.values()), 10)
        assert {i: s.state_hash() for i, s in restarted.services.items()} == hashes_before
        for node in restarted.nodes.values():
            assert node.core.log.base_index == index     # recovered from the snapshot, then the log
    finally:
        restarted.close()


def test_crash_between_snapshot_write_and_record_falls_back(tmp_path, monkeypatch):
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0).start()
    try:
        leader = cluster.leader()
        victim = (leader + 1) % 3
        with cluster.client() as client:
            for _ in range(50):
                add(client)
            assert admin.snapshot(cluster.data_dir(leader))["recorded"]
            assert cluster.wait_for(lambda: all(n.snapshots.snapshotter.stats.taken == 1
                                                for n in cluster.nodes.values()), 10)
            # the victim's next snapshot dies after its file is in place but before it is recorded
            recording_log = cluster.nodes[victim].archive._recording_log

            def crash(entry):
                raise OSError("simulated crash before the record")
            monkeypatch.setattr(recording_log, "append_snapshot", crash)
            for _ in range(50):
                add(client)
            assert admin.snapshot(cluster.data_dir(leader))["recorded"]
            assert cluster.wait_for(lambda: cluster.nodes[victim].snapshots.snapshotter.stats.failed == 1, 10)
            for _ in range(20):
                total = add(client)
        # 120 adds of 1, each applied once: the state every member must reach, whoever leads
        # now (an election on a loaded machine may have moved the leadership)
        assert total == 120
        expected = f"{total}:{total}"
        assert cluster.wait_for(lambda: all(s.state_hash() == expected
                                            for s in cluster.services.values()), 10)
        last = max(n.commit_index for n in cluster.nodes.values())
        assert cluster.wait_for(lambda: applied_everywhere(cluster, last), 10)
        unrecorded = _snapshot_files(cluster.data_dir(victim))
        assert len(unrecorded) == 2          # the new file exists, but the recording log lacks it
        cluster.stop(victim)
        plan = admin.recovery_plan(cluster.data_dir(victim))
        assert plan["snapshot"]["file"] == unrecorded[0]     # the recorded one, not the orphan
        assert plan["replay_to"] >= last - 1
        cluster.start(victim)
        assert cluster.wait_for(lambda: cluster.services[victim].state_hash() == expected, 10)
        # the replay passed the orphan's snapshot entry again: the member took that snapshot
        # again (same index) and recorded it this time
        orphan_index = int(unrecorded[1].split("-")[1])
        assert cluster.wait_for(lambda: cluster.nodes[victim].snapshots.snapshotter.stats.taken == 1, 10)
        recorded = [e["index"] for e in admin.recording_log(cluster.data_dir(victim))["entries"]
                    if e["type"] == "SNAPSHOT"]
        assert recorded == [int(unrecorded[0].split("-")[1]), orphan_index], recorded
    finally:
        cluster.close()


def test_corrupt_newest_snapshot_falls_back_to_previous_with_warning(tmp_path, caplog):
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0, snapshots_to_keep=2).start()
    try:
        leader = cluster.leader()
        victim = (leader + 2) % 3
        with cluster.client() as client:
            for round_ in range(2):
                for _ in range(40):
                    add(client)
                assert admin.snapshot(cluster.data_dir(leader))["recorded"]
            assert cluster.wait_for(lambda: cluster.nodes[victim].snapshots.snapshotter.stats.taken == 2, 10)
            for _ in range(10):
                add(client)
        last = cluster.nodes[leader].commit_index
        assert cluster.wait_for(lambda: applied_everywhere(cluster, last), 10)
        expected = cluster.services[leader].state_hash()
        cluster.stop(victim)
        files = _snapshot_files(cluster.data_dir(victim))
        assert len(files) == 2
        newest = os.path.join(cluster.data_dir(victim), files[-1])
        with open(newest, "r+b") as f:
            f.seek(20)
            byte = f.read(1)
            f.seek(20)
            f.write(bytes([byte[0] ^ 0xFF]))
        plan = admin.recovery_plan(cluster.data_dir(victim))
        assert plan["snapshot"]["file"] == files[0] and plan["skipped_snapshots"][0]["name"] == files[1]
        with caplog.at_level(logging.WARNING):
            cluster.start(victim)
        assert any("skipped" in r.getMessage() for r in caplog.records), caplog.text
        assert cluster.nodes[victim].core.log.base_index == int(files[0].split("-")[1])
        assert cluster.wait_for(lambda: cluster.services[victim].state_hash() == expected, 10)
    finally:
        cluster.close()
