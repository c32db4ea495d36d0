"""Members compare their snapshots through the log, so a silent divergence becomes a reported one.

Every member takes an admin snapshot at the same log index, and a deterministic service
serialises the same state there, so the members' snapshot files are byte for byte alike (same
checksum). A service that reads the clock, draws random numbers or iterates a set leaves its
members' states apart with nothing said: their replies come from the leader alone, and the
difference shows only after a failover. So when a leader's own snapshot is recorded, it
appends its checksum (``CLUSTER_ACTION`` ``ACTION_STATE_DIGEST``: snapshot index, checksum);
each member that applies it compares with its own snapshot at that index (now, or when its
own is recorded if it is still being written) and reports a mismatch as a
``StateDivergenceError``: logged, in ``errors.log`` (``aeronpy tool describe`` shows it),
counted in ``state_divergences``. It does not stop the member, which cannot tell whether it
or the leader holds the wrong state (compare all members' ``aeronpy tool recording-log``).
A member without a snapshot at that index (another automatic trigger point, a failed or
purged snapshot, one overtaken by a snapshot installed from the leader) counts
``state_digests_unchecked``. Cost: one small entry per snapshot.
"""
from __future__ import annotations

from typing import Any, Callable

from aeronpy.cluster.container import StateDivergenceError

PENDING_MAX = 16          # digests kept for this member's own snapshot while it is being written


class StateDigests:
    def __init__(self, module: Any, snapshotter: Any, report: Callable[[BaseException], None]):
        self.module = module
        self.snapshotter = snapshotter
        self.report = report
        self.counters = module.counters
        # snapshot index -> [(checksum, log index)...]: only for the snapshot in flight
        self._pending: dict[int, list[tuple[int, int]]] = {}
        module.state_digest_listeners.append(self.on_digest)
        snapshotter.listeners.append(self.on_own_snapshot)
        snapshotter.failure_listeners.append(self.on_own_failure)

    # ---- this member's snapshots --------------------------------------------------------
    def on_own_snapshot(self, info: Any) -> None:
        if self.module.is_leader and self.module.propose_state_digest(info.index, info.checksum):
            self.counters["state_digests_proposed"] += 1
        for pending in self._pending.pop(info.index, ()):
            self._compare(info.index, info.checksum, *pending)

    def on_own_failure(self, index: int, exc: BaseException) -> None:
        self.counters["state_digests_unchecked"] += len(self._pending.pop(index, ()))

    def _drop_stale(self, inflight_index: int) -> None:
        """Digests kept for a snapshot no longer in flight: one overtaken by a snapshot
        installed from the leader is dropped by Snapshotter.poll with no listener told, and
        they would hold their place for good (PENDING_MAX of them stopped every comparison)."""
        for snapshot_index in [k for k in self._pending if k != inflight_index]:
            self.counters["state_digests_unchecked"] += len(self._pending.pop(snapshot_index))

    # ---- a leader's digest, applied in log order ----------------------------------------
    def on_digest(self, index: int, snapshot_index: int, checksum: int) -> None:
        own = next((k for k in self.snapshotter.kept if k.index == snapshot_index), None)
        if own is not None:
            self._compare(snapshot_index, own.checksum, checksum, index)
            return
        inflight = self.snapshotter._inflight
        self._drop_stale(-1 if inflight is None else inflight.index)
        waiting = self._pending.setdefault(snapshot_index, []) \
            if inflight is not None and inflight.index == snapshot_index else None
        if waiting is not None and len(waiting) < PENDING_MAX:
            waiting.append((checksum, index))
            return
        self.counters["state_digests_unchecked"] += 1

    def _compare(self, snapshot_index: int, ours: int, theirs: int, index: int) -> None:
        self.counters["state_digests_checked"] += 1
        if ours == theirs:
            return
        self.counters["state_divergences"] += 1
        term = self.module.core.log.term_at(index) if index > self.module.core.log.base_index else 0
        self.report(StateDivergenceError(
            f"this member's snapshot at log index {snapshot_index} has checksum {ours:08x}, the "
            f"leader's (term {term}, digest at index {index}) {theirs:08x}: the services' states "
            "differ between members. A service that is not deterministic (the clock, random "
            "numbers, the order of a set: docs/programming.md, 'Determinism') does this, or a "
            "damaged member. The member goes on; compare every member's `aeronpy tool "
            f"recording-log` at index {snapshot_index} to see which ones differ"))
