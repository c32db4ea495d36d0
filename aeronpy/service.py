"""The service-side API: subclass :class:`ClusteredService` and host it on a node.

Every callback runs on every member, in log order, deterministically. ``timestamp_ns`` is
cluster time: the leader's clock recorded in the log entry, never the local wall clock. On real
nodes it counts ns since the Unix epoch (the leader's wall clock at its start, advanced by its
monotonic clock); under ``SimCluster`` it is virtual time.
"""
from __future__ import annotations

import enum
from typing import TYPE_CHECKING, BinaryIO, Optional

if TYPE_CHECKING:  # pragma: no cover - for annotations only (aeronpy.cluster imports this module)
    from aeronpy._applypath import ClientSession
    from aeronpy.cluster.container import Cluster


class Role(enum.IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2

    def __str__(self) -> str:          # an IntEnum prints its number from Python 3.11
        return self.name


class CloseReason(enum.IntEnum):
    CLIENT_ACTION = 0   # the client closed its session
    SERVICE_ACTION = 1  # a service called cluster.close_client_session()
    TIMEOUT = 2         # no keepalive within session_timeout_ms

    def __str__(self) -> str:
        return self.name


class ClusteredService:
    """Base class of an application hosted by the cluster; every callback is a no-op here.

    The session, message and timer callbacks each apply one committed log entry: they run on
    every member, in log order, with the same arguments, and only they (and ``on_start`` on a
    fresh start) may change replicated state through the ``Cluster`` facade or
    ``ClientSession.offer``. ``on_role_change``, ``on_take_snapshot``, ``on_terminate`` and
    ``on_start`` given a snapshot run on one member at its own moment: a change from them
    raises ``aeronpy.ClusterStateError``. A callback that raises stops the member rather than
    let it diverge (docs/programming.md).

    ``service_name``: what members compare to check they host the same services in the same
    order (term entries and snapshots record it); None means ``module:ClassName``. Set it to
    the old name when you rename or move the class, so the cluster still knows it.
    """

    service_name: Optional[str] = None

    def on_start(self, cluster: Cluster, snapshot: Optional[BinaryIO]) -> None:
        """The node starts (``snapshot`` None: a fresh start, before the first entry) or loads a
        snapshot (a readable binary file with what ``on_take_snapshot`` wrote); set all of the
        service's state here, since it may run again on the same object. ``cluster``: the
        ``Cluster`` facade for this service; keep it."""

    def on_session_open(self, session: ClientSession, timestamp_ns: int) -> None:
        """A client session opened (every hosted service is told)."""

    def on_session_close(self, session: ClientSession, timestamp_ns: int,
                         reason: CloseReason) -> None:
        """A client session closed, for ``reason`` (every hosted service is told)."""

    def on_session_message(self, session: Optional[ClientSession], timestamp_ns: int,
                           message: memoryview) -> None:
        """A client's message for this service (``session`` None: a message this service sent
        itself with ``cluster.offer``). ``message`` is valid only during the call: keep
        ``bytes(message)``, never the view. ``session.offer(reply)`` answers it."""

    def on_timer_event(self, correlation_id: int, timestamp_ns: int) -> None:
        """A timer this service scheduled reached its deadline (cluster time)."""

    def on_take_snapshot(self, writer: BinaryIO) -> None:
        """Write the service's state to ``writer``; ``on_start`` reads it back. Runs on the
        duty cycle, so the log waits for it. The default writes nothing."""

    def on_role_change(self, role: Role) -> None:
        """This member's role changed (local to the member: no replicated state from here)."""

    def on_terminate(self, cluster: Cluster) -> None:
        """The node is closing (not after a crash); local to the member."""
