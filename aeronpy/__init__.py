"""aeronpy: a Raft-replicated cluster for stateful Python services, in the manner of Aeron Cluster.

Public API lives here only; everything else is private to its layer.
"""
from aeronpy._native import load_compiled as _load_compiled

_load_compiled()  # raises ImportError with a clear message if the build is missing

from aeronpy.errors import (  # noqa: E402
    AeronpyError,
    AuthenticationError,
    ClusterClosedError,
    ClusterTimeoutError,
    ConfigError,
    MessageTooLargeError,
    NotConnectedError,
)
from aeronpy.service import CloseReason, ClusteredService, Role  # noqa: E402

__version__ = "0.1.0"

# Aeron-style negative results of ClusterClient.offer()
NOT_CONNECTED = -1
BACK_PRESSURED = -2
CLOSED = -4

__all__ = [
    "AeronpyError", "AuthenticationError", "ClusterClosedError", "ClusterTimeoutError",
    "ConfigError", "MessageTooLargeError", "NotConnectedError",
    "CloseReason", "ClusteredService", "Role",
    "NOT_CONNECTED", "BACK_PRESSURED", "CLOSED",
]
