"""Pure consensus core (sans-I/O Raft with canvass). See docs/internal/interfaces.md section 2.

Importing this package must not import ``time``, ``random``, ``socket``, ``os``,
``threading`` or ``select``; tests/core/test_purity.py enforces it.
"""
from aeronpy.core import messages
from aeronpy.core.config import _BUGS, NEW_LEADERSHIP_TERM, NO_VOTE, CoreConfig, HardState
from aeronpy.core.election import ElectionState
from aeronpy.core.raft import RaftCore
from aeronpy.core.ready import Ready
from aeronpy.service import Role

__all__ = ["RaftCore", "CoreConfig", "HardState", "Ready", "Role", "ElectionState", "messages",
           "NEW_LEADERSHIP_TERM", "NO_VOTE", "_BUGS"]
