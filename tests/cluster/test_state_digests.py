"""Members compare snapshot checksums through the log (aeronpy/cluster/state_digests.py).

The unit rules on fakes (propose, compare now or when the member's own snapshot is recorded,
unchecked without one), the entry's encoding, and the module's routing of the entry. The real
processes: tests/process/test_state_divergence.py; the simulator under faults:
tests/sim/test_state_digests_sim.py.
"""
from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest

from aeronpy.cluster import entries as E
from aeronpy.cluster.container import StateDivergenceError
from aeronpy.cluster.state_digests import PENDING_MAX, StateDigests


class FakeModule:
    def __init__(self, leader=False):
        self.counters = Counter()
        self.state_digest_listeners = []
        self.is_leader = leader
        self.proposed = []
        self.core = SimpleNamespace(log=SimpleNamespace(base_index=0, term_at=lambda index: 3))

    def propose_state_digest(self, snapshot_index, checksum):
        self.proposed.append((snapshot_index, checksum))
        return 100 + len(self.proposed)


class FakeSnapshotter:
    def __init__(self):
        self.kept = []
        self._inflight = None
        self.listeners, self.failure_listeners = [], []

    def recorded(self, index, checksum):
        info = SimpleNamespace(index=index, checksum=checksum)
        self.kept.append(info)
        self._inflight = None
        for listener in self.listeners:
            listener(info)

    def writing(self, index):
        self._inflight = SimpleNamespace(index=index)

    def failed(self, index):
        self._inflight = None
        for listener in self.failure_listeners:
            listener(index, OSError("disk full"))


def _digests(leader=False):
    module, snapshotter, reports = FakeModule(leader), FakeSnapshotter(), []
    StateDigests(module, snapshotter, reports.append)
    return module, snapshotter, reports


def _apply_digest(module, index, snapshot_index, checksum):
    for listener in module.state_digest_listeners:
        listener(index, snapshot_index, checksum)


def test_a_leader_appends_the_checksum_of_each_snapshot_it_records():
    module, snapshotter, _ = _digests(leader=True)
    snapshotter.recorded(40, 0xABCD)
    assert module.proposed == [(40, 0xABCD)]
    assert module.counters["state_digests_proposed"] == 1


def test_a_follower_appends_nothing():
    module, snapshotter, _ = _digests(leader=False)
    snapshotter.recorded(40, 0xABCD)
    assert module.proposed == [] and module.counters["state_digests_proposed"] == 0


def test_the_same_checksum_is_checked_and_not_reported():
    module, snapshotter, reports = _digests()
    snapshotter.recorded(40, 0xABCD)
    _apply_digest(module, 41, 40, 0xABCD)
    assert module.counters["state_digests_checked"] == 1
    assert module.counters["state_divergences"] == 0 and reports == []


def test_another_checksum_is_reported_as_a_divergence():
    module, snapshotter, reports = _digests()
    snapshotter.recorded(40, 0x1111)
    _apply_digest(module, 41, 40, 0x2222)
    assert module.counters["state_divergences"] == 1
    (error,) = reports
    assert isinstance(error, StateDivergenceError)
    text = str(error)
    assert "snapshot at log index 40" in text and "00001111" in text and "00002222" in text
    assert "term 3" in text and "Determinism" in text


def test_a_digest_for_a_snapshot_still_being_written_is_compared_once_it_is_recorded():
    module, snapshotter, reports = _digests()
    snapshotter.writing(40)
    _apply_digest(module, 41, 40, 0x2222)
    assert module.counters["state_digests_checked"] == 0
    snapshotter.recorded(40, 0x1111)
    assert module.counters["state_divergences"] == 1 and len(reports) == 1


def test_a_digest_whose_snapshot_then_fails_is_unchecked():
    module, snapshotter, reports = _digests()
    snapshotter.writing(40)
    _apply_digest(module, 41, 40, 0x2222)
    snapshotter.failed(40)
    assert module.counters["state_digests_unchecked"] == 1
    snapshotter.recorded(40, 0x1111)          # a later snapshot at that index: nothing pending
    assert module.counters["state_digests_checked"] == 0 and reports == []


def test_a_digest_without_a_snapshot_at_that_index_is_unchecked():
    module, snapshotter, reports = _digests()
    snapshotter.recorded(30, 0x1111)
    snapshotter.writing(50)
    _apply_digest(module, 41, 40, 0x2222)
    assert module.counters["state_digests_unchecked"] == 1
    assert module.counters["state_digests_checked"] == 0 and reports == []


def test_pending_digests_are_bounded():
    module, snapshotter, _ = _digests()
    snapshotter.writing(40)
    for i in range(PENDING_MAX + 5):
        _apply_digest(module, 41 + i, 40 + (i > 0) * 1000 * i, 1)     # one for 40, the rest elsewhere
    snapshotter.writing(7)
    for i in range(PENDING_MAX + 5):
        _apply_digest(module, 200 + i, 7, i)
    digests = module.state_digest_listeners[0].__self__
    assert len(digests._pending) <= PENDING_MAX


def test_the_entry_round_trips_and_a_short_one_is_refused():
    payload = E.encode_state_digest(123, 40, 0xDEADBEEF)
    entry = E.decode_entry(E.CLUSTER_ACTION, payload)
    assert (entry.timestamp_ns, entry.action, entry.argument, entry.checksum) == \
        (123, E.ACTION_STATE_DIGEST, 40, 0xDEADBEEF)
    with pytest.raises(E.EntryDecodeError):
        E.decode_entry(E.CLUSTER_ACTION, payload[:-1])
    # the other actions read as before, checksum 0
    assert E.decode_entry(E.CLUSTER_ACTION, E.encode_cluster_action(5, E.ACTION_SNAPSHOT, 0)).checksum == 0
    assert E.ACTION_STATE_DIGEST not in E.CLUSTER_ACTIONS    # never proposed by an admin request


def test_a_leaders_digest_reaches_every_members_digest_listeners_not_the_action_listeners():
    from .fakes import FakeWorld
    w = FakeWorld(members=3)
    w.elect(0)
    w.settle()
    digests, actions = {m: [] for m in range(3)}, {m: [] for m in range(3)}
    for m, module in enumerate(w.modules):
        module.state_digest_listeners.append(lambda *a, m=m: digests[m].append(a))
        module.cluster_action_listeners.append(lambda *a, m=m: actions[m].append(a))
    assert w.modules[1].propose_state_digest(7, 99) == 0          # a follower proposes nothing
    index = w.modules[0].propose_state_digest(7, 99)
    assert index > 0
    w.settle()
    assert all(digests[m] == [(index, 7, 99)] for m in range(3)), digests
    assert all(actions[m] == [] for m in range(3))
