"""The snapshot-checksum comparison (aeronpy/cluster/state_digests.py) under the swarm's faults:
crashes mid-snapshot, leader changes between a snapshot and its digest, snapshots installed
from the leader, wiped data dirs. Every comparison must agree (a false divergence fails the
run through the checker), and comparisons must happen (else the first claim says nothing)."""
from __future__ import annotations

from collections import Counter

import pytest

from aeronpy.cluster.state_digests import StateDigests
from aeronpy.testing.swarm import run_seed


@pytest.fixture
def comparisons(monkeypatch):
    seen = Counter()
    compare = StateDigests._compare

    def counting(self, snapshot_index, ours, theirs, index):
        seen["compared"] += 1
        seen["differed"] += ours != theirs
        return compare(self, snapshot_index, ours, theirs, index)
    monkeypatch.setattr(StateDigests, "_compare", counting)
    return seen


@pytest.mark.parametrize("wipes", [False, True])
def test_members_agree_on_every_snapshot_under_faults(comparisons, wipes):
    failed = [r for r in (run_seed(seed, state_digests=True, wipes=wipes) for seed in range(60))
              if not r.ok]
    assert failed == [], failed[0].error
    assert comparisons["compared"] >= 100, comparisons
    assert comparisons["differed"] == 0


def test_control_a_differing_checksum_fails_the_run(monkeypatch):
    """The same runs with every member's own checksum read off by one: the checker is told."""
    compare = StateDigests._compare
    monkeypatch.setattr(StateDigests, "_compare",
                        lambda self, snapshot_index, ours, theirs, index:
                        compare(self, snapshot_index, ours + 1, theirs, index))
    results = [run_seed(seed, state_digests=True) for seed in range(10)]
    failed = [r for r in results if not r.ok]
    assert failed and all("snapshot at log index" in r.error for r in failed), results
