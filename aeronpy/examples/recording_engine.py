"""The matching engine plus a record of its final state, for the demo and process tests.

A member's state can only be compared with another's at the same log position, and the only
moment a separate process can read it without a query protocol is when the member stops. So
on ``on_terminate`` (a clean SIGTERM shutdown) this subclass writes, when the environment
variable ``AERONPY_HASH_DIR`` names a directory:

* ``member-<id>.json``: member id, commit index, state hash and a few counters;
* ``member-<id>.state``: the canonical state bytes (the snapshot format), so the checker can
  rebuild the book with :meth:`MatchingEngine.on_start` and look up every order a client saw.

Without the variable it behaves exactly like :class:`MatchingEngine`.
"""
from __future__ import annotations

import io
import os
from typing import Any

from aeronpy.examples.matching_engine import MatchingEngine
from aeronpy.testing.services import _write_hash_file

HASH_DIR_ENV = "AERONPY_HASH_DIR"


class RecordingMatchingEngine(MatchingEngine):
    """MatchingEngine that records its final state on terminate (see the module docstring)."""

    def on_terminate(self, cluster: Any) -> None:
        directory = os.environ.get(HASH_DIR_ENV)
        if not directory or cluster is None:
            return
        state = self.canonical_state()
        state_name = f"member-{cluster.member_id}.state"
        path = os.path.join(directory, state_name)
        with open(path + ".tmp", "wb") as f:
            f.write(state)
        os.replace(path + ".tmp", path)
        _write_hash_file(cluster, self.state_hash(), {
            "state_file": state_name, "open_orders": len(self.open_orders),
            "requests": self.requests, "fills": self.fills, "volume": self.volume,
            "rejects": self.rejects})


def engine_from_state(state: bytes) -> MatchingEngine:
    """A detached engine holding ``state`` (canonical bytes), for order lookups and hashing."""
    engine = MatchingEngine()
    engine.on_start(None, io.BytesIO(state))
    return engine
