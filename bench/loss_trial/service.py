"""The service of the loss trial, run by the nodes as ``loss_trial.service:ApplyCountingService``."""
from __future__ import annotations

import json
import os
from typing import Dict

from aeronpy.service import ClusteredService
from aeronpy.testing.services import _write_hash_file

DOUBLE_APPLY_ENV = "LOSS_TRIAL_DOUBLE_APPLY"          # negative control: apply message N twice


class ApplyCountingService(ClusteredService):
    """Counts the applications of each payload and answers with the count ("1" when all is well);
    on terminate writes ``member-<id>.json`` with the counts into ``$AERONPY_HASH_DIR``."""

    def __init__(self) -> None:
        self.applied: Dict[str, int] = {}
        self.applications = 0
        self.double_apply_at = int(os.environ.get(DOUBLE_APPLY_ENV, "0"))

    def on_start(self, cluster, snapshot) -> None:
        if snapshot is not None:
            state = json.loads(snapshot.read().decode())
            self.applied, self.applications = state["applied"], state["applications"]

    def on_session_message(self, session, timestamp_ns, message) -> None:
        payload = bytes(message).decode()
        self.applications += 1
        times = 2 if self.applications == self.double_apply_at else 1
        self.applied[payload] = self.applied.get(payload, 0) + times
        if session is not None:
            session.offer(str(self.applied[payload]).encode())

    def on_take_snapshot(self, writer) -> None:
        writer.write(json.dumps({"applied": self.applied, "applications": self.applications}).encode())

    def on_terminate(self, cluster) -> None:
        _write_hash_file(cluster, f"{len(self.applied)}:{self.applications}", {"applied": self.applied})
