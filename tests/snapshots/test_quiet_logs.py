"""Small truths a second new-user review asked for: a planned hand-over is not logged as a lost
leadership, and a backup writes segments of the cluster's segment_bytes."""
import logging
import os

from aeronpy.cluster.backup import ClusterBackup

from .cluster_helpers import LocalCluster, add


def test_a_planned_hand_over_is_info_not_a_lost_leadership(tmp_path, caplog):
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0, log_level="INFO").start()
    try:
        leader = cluster.leader()
        with cluster.client() as client:
            add(client)
        with caplog.at_level(logging.INFO, logger="aeronpy"):
            cluster.nodes.pop(leader).close(transfer_timeout_ms=2000)
        messages = [(r.levelno, r.getMessage()) for r in caplog.records
                    if "leadership of term" in r.getMessage()]
        assert messages and all(level == logging.INFO and "handed over" in text
                                for level, text in messages), messages
    finally:
        cluster.close()


def test_a_backup_writes_the_clusters_segment_size(tmp_path):
    segment = 64 * 1024
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0, segment_bytes=segment).start()
    try:
        with cluster.client() as client:
            for _ in range(3):
                add(client)
        backup = ClusterBackup(cluster.endpoints.split(","), str(tmp_path / "b"),
                               segment_bytes=segment)
        try:
            assert backup.do_work() > 0
        finally:
            backup.close()
        sizes = [os.path.getsize(tmp_path / "b" / n) for n in os.listdir(tmp_path / "b")
                 if n.endswith(".seg")]
        assert sizes and max(sizes) <= segment, sizes
    finally:
        cluster.close()
