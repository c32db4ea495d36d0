"""Deterministic simulation of a whole cluster for tests (docs/programming.md section 3)."""
from aeronpy.testing.invariants import InvariantViolation
from aeronpy.testing.sim import SimCluster

__all__ = ["SimCluster", "InvariantViolation"]
