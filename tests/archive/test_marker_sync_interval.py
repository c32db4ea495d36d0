"""The durable marker is synced when the syncer is idle, at most every MARKER_SYNC_INTERVAL_S
and every MARKER_SYNC_SLOW_FACTOR times the last data sync's duration. The slow-disk trial
found that with 50 ms syncs every batch came more than 0.1 s after the last marker sync, so
each round paid two syncs (p50 202 ms where 103 ms with the marker sync off)."""
from __future__ import annotations

from aeronpy.archive import archive as A


class _Marker:
    def __init__(self):
        self.syncs = 0

    def sync(self):
        self.syncs += 1


def _archive_at(clock: list, last_data_sync_s: float):
    arc = A.Archive.__new__(A.Archive)        # only the fields _idle_sync reads
    arc._syncer = object()                    # a background syncer: the interval applies
    arc._marker = _Marker()
    arc._closed = False
    arc._marker_synced_at = 0.0
    arc._last_data_sync_s = last_data_sync_s
    return arc


def _marker_syncs(monkeypatch, last_data_sync_s: float) -> int:
    """Idle moments 0.12 s apart for 1.2 s: how many marker syncs."""
    clock = [100.0]
    monkeypatch.setattr(A.time, "monotonic", lambda: clock[0])
    arc = _archive_at(clock, last_data_sync_s)
    for _ in range(10):
        clock[0] += 0.12
        arc._idle_sync()
    return arc._marker.syncs


def test_a_fast_disk_syncs_the_marker_at_each_idle_moment_past_the_interval(monkeypatch):
    assert _marker_syncs(monkeypatch, 0.0005) == 10          # the control: as before


def test_a_slow_disk_syncs_the_marker_far_less_often(monkeypatch):
    # 50 ms data syncs: at most every 0.5 s (at 0.12, 0.72 s from the first idle moment), not 10
    assert _marker_syncs(monkeypatch, 0.05) == 2
