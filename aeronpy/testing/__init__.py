"""Deterministic simulation of a whole cluster for tests (docs/programming.md section 3), and
``ProcessCluster``: a cluster of real node processes on loopback (imported on first use)."""
from typing import TYPE_CHECKING

from aeronpy.testing.invariants import InvariantViolation
from aeronpy.testing.sim import SimCluster

if TYPE_CHECKING:                     # for type checkers; imported lazily at run time
    from aeronpy.testing.process_cluster import ProcessCluster

__all__ = ["SimCluster", "InvariantViolation", "ProcessCluster"]


def __getattr__(name: str):
    if name == "ProcessCluster":      # lazy: it imports subprocess machinery tests may not need
        from aeronpy.testing.process_cluster import ProcessCluster
        return ProcessCluster
    raise AttributeError(f"module 'aeronpy.testing' has no attribute {name!r}")
