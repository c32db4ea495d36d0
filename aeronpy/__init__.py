"""aeronpy: a Raft-replicated cluster for stateful Python services, in the manner of Aeron Cluster.

Public API lives here only; everything else is private to its layer.
"""
from aeronpy._native import load_compiled as _load_compiled

_load_compiled()  # raises ImportError with a clear message if the build is missing

from aeronpy.errors import (  # noqa: E402
    AeronpyError,
    AuthenticationError,
    ClusterClosedError,
    ClusterStateError,
    ClusterTimeoutError,
    ConfigError,
    MessageRejectedError,
    MessageTooLargeError,
    NotConnectedError,
)
from aeronpy.service import CloseReason, ClusteredService, Role  # noqa: E402
from aeronpy.cluster.codes import BACK_PRESSURED, CLOSED, NOT_CONNECTED  # noqa: E402
from aeronpy.cluster.config import MemberConfig, NodeConfig  # noqa: E402
from aeronpy.cluster.container import Cluster, ServiceError  # noqa: E402
from aeronpy.cluster.module_config import Authenticator, SecretAuthenticator  # noqa: E402
from aeronpy.cluster.sessions import ClientSession  # noqa: E402
from aeronpy.client import ClientConfig, ClusterClient  # noqa: E402
from aeronpy.cluster.node import ClusterNode  # noqa: E402

__version__ = "0.1.0"


__all__ = [
    "AeronpyError", "AuthenticationError", "ClusterClosedError", "ClusterStateError", "ClusterTimeoutError",
    "ConfigError", "MessageRejectedError", "MessageTooLargeError", "NotConnectedError",
    "CloseReason", "ClusteredService", "Role", "Cluster", "ClientSession", "ServiceError",
    "NodeConfig", "MemberConfig", "ClusterNode", "ClusterClient", "ClientConfig", "Authenticator",
    "SecretAuthenticator",
    "NOT_CONNECTED", "BACK_PRESSURED", "CLOSED",
]
