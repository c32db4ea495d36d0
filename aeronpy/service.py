"""The service-side API: subclass :class:`ClusteredService` and host it on a node.

Every callback runs on every member, in log order, deterministically. ``timestamp_ns`` is
cluster time: the leader's clock recorded in the log entry, never the local wall clock. On real
nodes it counts ns since the Unix epoch (the leader's wall clock at its start, advanced by its
monotonic clock); under ``SimCluster`` it is virtual time.
"""
from __future__ import annotations

import enum
from typing import Any, BinaryIO, Optional


class Role(enum.IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2


class CloseReason(enum.IntEnum):
    CLIENT_ACTION = 0   # the client closed its session
    SERVICE_ACTION = 1  # a service called cluster.close_client_session()
    TIMEOUT = 2         # no keepalive within session_timeout_ms


class ClusteredService:
    """Base class of an application hosted by the cluster; every callback is a no-op here."""

    def on_start(self, cluster: Any, snapshot: Optional[BinaryIO]) -> None:
        pass

    def on_session_open(self, session: Any, timestamp_ns: int) -> None:
        pass

    def on_session_close(self, session: Any, timestamp_ns: int, reason: CloseReason) -> None:
        pass

    def on_session_message(self, session: Any, timestamp_ns: int, message: memoryview) -> None:
        pass

    def on_timer_event(self, correlation_id: int, timestamp_ns: int) -> None:
        pass

    def on_take_snapshot(self, writer: BinaryIO) -> None:
        pass

    def on_role_change(self, role: Role) -> None:
        pass

    def on_terminate(self, cluster: Any) -> None:
        pass
