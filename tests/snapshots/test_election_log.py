"""A member without a quorum canvasses again and again; its log shows the first of those
same-state transitions and, once something else happens, how many followed, instead of a line
each time (89 lines in 27 s in a review)."""
import logging
import time

from .cluster_helpers import LocalCluster


def test_repeated_canvassing_is_logged_once_then_counted(tmp_path, caplog):
    cluster = LocalCluster(str(tmp_path), count=3, log_level="INFO")   # 150 ms election timeout
    with caplog.at_level(logging.INFO, logger="aeronpy"):
        cluster.start(0)                       # alone: no quorum, it canvasses for ever
        time.sleep(1.5)
        repeated = [r for r in caplog.records if "CANVASS -> CANVASS" in r.getMessage()]
        assert len(repeated) == 1, [r.getMessage() for r in repeated]
        cluster.start(1)                       # a quorum: the run ends, and is counted
        assert cluster.leader() is not None
        assert any("CANVASS -> CANVASS repeated" in r.getMessage() for r in caplog.records)
    cluster.close()
