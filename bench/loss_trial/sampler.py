"""Every member's counters sampled while a trial runs (pause_trial, slowdisk_trial)."""
from __future__ import annotations

import time
from typing import Dict, Optional

from aeronpy.cluster.counters import CountersReader
from aeronpy.testing.process_cluster import ProcessCluster

SAMPLE_INTERVAL_S = 0.05
KEPT_COUNTERS = ("role", "leadership_term", "leader_id", "commit_index", "append_index", "errors",
                 "elections_held", "sessions_open", "consensus_module_state", "snapshot_count",
                 "max_duty_cycle_ns")


class Sampler:
    """Every member's counters, from readers kept open (re-opened when one fails)."""

    def __init__(self, cluster: ProcessCluster) -> None:
        self.cluster = cluster
        self.readers: Dict[int, Optional[CountersReader]] = {m: None for m in range(cluster.members)}

    def read(self, member: int) -> Optional[Dict[str, int]]:
        reader = self.readers[member]
        try:
            if reader is None or reader.replaced():
                if reader is not None:
                    reader.close()
                reader = self.readers[member] = CountersReader(self.cluster.data_dir(member))
            values = reader.read()
            return {k: values[k] for k in KEPT_COUNTERS if k in values}
        except Exception:
            self.readers[member] = None
            return None

    def snapshot(self) -> Dict[int, Optional[Dict[str, int]]]:
        return {m: self.read(m) for m in self.readers}

    def close(self) -> None:
        for reader in self.readers.values():
            if reader is not None:
                reader.close()


def observe_until(deadline: float, sampler: Sampler, samples: list) -> None:
    """Sample every SAMPLE_INTERVAL_S until ``deadline`` (monotonic), returning at it."""
    while True:
        if time.monotonic() >= deadline:
            return
        samples.append((time.time(), sampler.snapshot()))
        time.sleep(max(0.0, min(SAMPLE_INTERVAL_S, deadline - time.monotonic())))
