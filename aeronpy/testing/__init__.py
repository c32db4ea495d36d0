"""Deterministic simulation of a whole cluster for tests (DESIGN.md 1.4)."""
from aeronpy.testing.invariants import InvariantViolation
from aeronpy.testing.sim import SimCluster

__all__ = ["SimCluster", "InvariantViolation"]
