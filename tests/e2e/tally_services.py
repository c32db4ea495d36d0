"""Services of tests/e2e/test_state_divergence.py (imported by node processes as
``e2e.tally_services:...``): ``Tally`` counts its messages (deterministic); ``NoisyTally`` adds
a random amount each time, as a service that draws random numbers would (its members' states
come apart while every client reply, the leader's, looks fine)."""
from __future__ import annotations

import random

from aeronpy.service import ClusteredService


class Tally(ClusteredService):
    noisy = False

    def on_start(self, cluster, snapshot) -> None:
        self.total = int(snapshot.read() or b"0") if snapshot is not None else 0

    def on_session_message(self, session, timestamp_ns, message) -> None:
        self.total += 1 + (random.randrange(1000) if self.noisy else 0)
        if session is not None:
            session.offer(b"ok")

    def on_take_snapshot(self, writer) -> None:
        writer.write(str(self.total).encode())


class NoisyTally(Tally):
    noisy = True
