"""Hosting services: the ``Cluster`` facade each service gets, and callback invocation.

**Service exceptions stop the node.** Services are replicated state machines: a callback that
raises on one member may have left that member's state different from its peers'. Rather
than carry on and diverge, the container logs the error, counts it, remembers it, and raises
:class:`ServiceError` out of the apply; from then on the module is FAILED and every further
apply raises the same error, so the node stops. Fix the service and restart the member: it
replays the log (or a snapshot plus the log) and catches up.
"""
from __future__ import annotations

import hashlib
import logging
import struct
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from aeronpy.errors import AeronpyError
from aeronpy.service import ClusteredService, Role

if TYPE_CHECKING:  # pragma: no cover
    from aeronpy.cluster.module import ConsensusModule
    from aeronpy.cluster.sessions import ClientSession

log = logging.getLogger("aeronpy.cluster")


_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


# callbacks that run on one member at its own moment, at no log entry
_LOCAL_CALLBACKS = frozenset(("on_role_change", "on_take_snapshot", "on_terminate"))


class ServiceError(AeronpyError):
    """A service callback raised; the member stops instead of diverging from its peers."""

    def __init__(self, service_id: int, callback: str, cause: BaseException, index: int):
        self.service_id = service_id
        self.callback = callback
        self.cause = cause
        self.index = index
        where = (f"at log index {index}" if callback not in _LOCAL_CALLBACKS else
                 f"(a callback of this member alone, after log index {index})")
        super().__init__(f"service {service_id} raised in {callback} {where}: "
                         f"{type(cause).__name__}: {cause}")


class Cluster:
    """What a service sees of the cluster (docs/programming.md section 2); one per hosted service."""

    __slots__ = ("_module", "service_id")

    def __init__(self, module: "ConsensusModule", service_id: int):
        self._module = module
        self.service_id = service_id

    @property
    def member_id(self) -> int:
        return self._module.member_id

    @property
    def role(self) -> Role:
        return self._module.role

    @property
    def commit_index(self) -> int:
        return self._module.commit_index

    @property
    def time_ns(self) -> int:
        """Cluster time: the timestamp of the entry being (or last) applied."""
        return self._module.cluster_time_ns

    def schedule_timer(self, correlation_id: int, deadline_ns: int) -> bool:
        """Fire ``on_timer_event(correlation_id, ...)`` once cluster time reaches deadline_ns.

        Scheduling an id that is already scheduled moves it. The timer fires through the log,
        at the same position on every member. False (nothing scheduled) when ``max_timers``
        timers are live and this id is not one of them.

        Both values are kept in the log and in snapshots as signed 64-bit integers: an id
        outside that range raises ValueError here, in the callback that passed it (a service
        that takes ids from clients must check them, as it checks any client input); a
        deadline past it is held at the largest one (about the year 2262), so it never fires
        before then, whatever was asked.
        """
        self._module.check_log_order("schedule_timer")
        correlation_id = int(correlation_id)
        if not _I64_MIN <= correlation_id <= _I64_MAX:
            raise ValueError(f"schedule_timer: correlation_id {correlation_id} does not fit a "
                             "signed 64-bit integer (timers are kept in the log and snapshots)")
        deadline_ns = min(max(int(deadline_ns), _I64_MIN), _I64_MAX)
        return self._module._schedule_timer(self.service_id, correlation_id, deadline_ns)

    def cancel_timer(self, correlation_id: int) -> bool:
        """Cancel a scheduled timer; False when none has that id."""
        self._module.check_log_order("cancel_timer")
        correlation_id = int(correlation_id)
        if not _I64_MIN <= correlation_id <= _I64_MAX:
            return False                     # no timer can have it (schedule_timer refuses it)
        return self._module._cancel_timer(self.service_id, correlation_id)

    def offer(self, message) -> int:
        """Append a service message to the log (delivered to this service with session=None).

        > 0 when queued (on every member alike); aeronpy.BACK_PRESSURED when the pending
        queue is full. Raises MessageTooLargeError above the max message size.
        """
        self._module.check_log_order("Cluster.offer")
        return self._module._offer_service_message(self.service_id, message)

    @property
    def client_sessions(self) -> tuple["ClientSession", ...]:
        return self._module._client_sessions()

    def get_client_session(self, session_id: int) -> Optional["ClientSession"]:
        return self._module._get_client_session(session_id)

    def close_client_session(self, session_id: int) -> bool:
        """Close a session (reason SERVICE_ACTION) once the current callback returns."""
        self._module.check_log_order("close_client_session")
        return self._module._close_client_session_by_service(session_id)

    def __repr__(self) -> str:
        return f"Cluster(member_id={self.member_id}, service_id={self.service_id}, role={self.role.name})"


# A term entry's tail (docs/archive-format.md, "The term entry"). SVCSET1: the service list
# alone (written before the settings were checked). SVCSET2: a u32 length, the service list,
# then the leader's replicated-state settings as name=value lines.
_SERVICE_SET_MAGIC = b"SVCSET1\0"
_TERM_ENTRY_MAGIC = b"SVCSET2\0"
_U32 = struct.Struct("<I")


def service_names(services: Sequence[ClusteredService]) -> list:
    """The names members compare, in service id order: ``service_name`` or ``module:qualname``."""
    return [_service_name(s) for s in services]


def renamed_service_hint(theirs: Sequence[str], ours: Sequence[str]) -> str:
    """The advice for a service list that differs only in names: a class renamed or moved is
    another service unless it keeps its old name (``service_name``)."""
    if len(theirs) != len(ours):
        return ""
    pairs = [(old, new) for old, new in zip(theirs, ours) if old != new]
    example = pairs[0] if pairs else ("module:Class", "module:Class")
    return (f". If a service class was renamed or moved (here {example[0]!r} became "
            f"{example[1]!r}?), it is the same service under a new name: give the class the "
            f"attribute service_name = {example[0]!r} and start the members again, nothing "
            "else; never empty a data dir for that")


def service_set_tail(services: Sequence[ClusteredService]) -> bytes:
    """What a leader writes into its term's first entry (and a snapshot into its header): the
    services it hosts (`service_names`), which every member checks it hosts too."""
    return _SERVICE_SET_MAGIC + "\n".join(service_names(services)).encode()


def _service_name(service: ClusteredService) -> str:
    name = getattr(service, "service_name", None)
    if name:
        return str(name)
    cls = type(service)
    return f"{cls.__module__}:{cls.__qualname__}"


def service_set_tag(services: Sequence[ClusteredService]) -> int:
    """A node's CoreConfig.ballot_tag: a 64-bit digest of its service list (never 0), so a
    member refuses its vote to a candidate that hosts other services."""
    digest = int.from_bytes(hashlib.blake2b(service_set_tail(services), digest_size=8).digest(),
                            "little", signed=True)
    return digest or 1


def service_set_of(tail) -> Optional[list]:
    """The service names in a term entry's tail (either layout, `parse_term_entry_tail`) or
    a snapshot header's; None for a tail of another kind (or none: entries written before
    the check, or by a driver that writes none)."""
    return parse_term_entry_tail(tail)[0]


def term_entry_tail(services: Sequence[ClusteredService], settings: Mapping[str, int]) -> bytes:
    """What a node's leader writes into its term's first entry after the timestamp: the
    services it hosts and its values of the settings every member must share
    (ModuleConfig.replicated_settings), which every member applying the entry compares with
    its own (docs/archive-format.md, "The term entry")."""
    names = "\n".join(service_names(services)).encode()
    lines = "\n".join(f"{name}={int(value)}" for name, value in settings.items()).encode()
    return _TERM_ENTRY_MAGIC + _U32.pack(len(names)) + names + lines


def parse_term_entry_tail(tail) -> tuple:
    """``(service names, settings)`` of a term entry's tail. Services: a list, or None for a
    tail of no known layout. Settings: ``{name: value text}``, or None for a tail that carries
    none (the service-list-only layout an earlier version wrote, or no tail). A tail that
    starts with a known magic but does not parse is (None, None): nothing to compare."""
    tail = bytes(tail)
    if tail.startswith(_SERVICE_SET_MAGIC):
        return _names(tail[len(_SERVICE_SET_MAGIC):]), None
    if not tail.startswith(_TERM_ENTRY_MAGIC):
        return None, None
    at = len(_TERM_ENTRY_MAGIC)
    if len(tail) < at + _U32.size:
        return None, None
    (length,) = _U32.unpack_from(tail, at)
    at += _U32.size
    if length > len(tail) - at:
        return None, None
    names, rest = _names(tail[at:at + length]), tail[at + length:]
    settings = {}
    for line in rest.decode("utf-8", "replace").split("\n") if rest else ():
        name, sep, value = line.partition("=")
        if sep:
            settings[name] = value
    return names, settings


def _names(body: bytes) -> list:
    return body.decode("utf-8", "replace").split("\n") if body else []


class ServiceSetError(AeronpyError):
    """This member hosts other services (or the same in another order) than the leader whose
    term entry it applies: their states diverge. Reported (log, errors.log, counter), not
    raised: the member cannot tell whether it or the leader is the misconfigured one."""


class StateDivergenceError(AeronpyError):
    """This member's snapshot at a log index differs from the leader's at the same index (their
    checksums, state_digests.py): the services' states have come apart, typically through a
    service that is not deterministic. Reported (log, errors.log, counter), not raised: the
    member cannot tell whether it or the leader holds the wrong state."""


class ConfigMismatchError(AeronpyError):
    """The leader whose term entry this member applies runs with other values of settings
    every member must share (ModuleConfig.replicated_settings): their states diverge where
    those settings decide. Reported (log, errors.log, counter), not raised: the member cannot
    tell whether it or the leader is the misconfigured one (or a rolling change is under way)."""


def check_services(services: Any) -> list:
    """``services`` as a list, checked where services enter (a node, the container): a list of
    instances of ``ClusteredService`` subclasses (DESIGN.md 1.1: "subclass it").

    A class where an instance belongs, a lone service instead of a list, or any other object
    raises ``TypeError`` naming it, instead of a node that fails at start in ``on_start`` (or
    at the first callback the object lacks). An empty list raises ``ValueError``."""
    if isinstance(services, ClusteredService):
        name = type(services).__name__
        raise TypeError(f"services: got one {name} instance, expected a list of services: "
                        f"services=[{name}()]")
    if isinstance(services, type) and issubclass(services, ClusteredService):
        raise TypeError(f"services: got the class {services.__module__}.{services.__qualname__}, "
                        f"expected a list of instances: services=[{services.__name__}()]")
    if isinstance(services, (str, bytes)) or not hasattr(services, "__iter__"):
        raise TypeError(f"services: got {type(services).__name__} {services!r:.80}, expected a "
                        "list of instances of aeronpy.ClusteredService subclasses")
    services = list(services)
    if not services:
        raise ValueError("services: a node hosts at least one ClusteredService")
    for i, service in enumerate(services):
        if isinstance(service, ClusteredService):
            continue
        if isinstance(service, type) and issubclass(service, ClusteredService):
            raise TypeError(f"services[{i}] is the class {service.__module__}."
                            f"{service.__qualname__}, not an instance: pass "
                            f"{service.__name__}() (each member hosts its own instance)")
        what = (f"the class {service.__module__}.{service.__qualname__}"
                if isinstance(service, type) else f"{type(service).__name__} {service!r:.80}")
        raise TypeError(f"services[{i}] is {what}: expected an instance of a subclass of "
                        "aeronpy.ClusteredService")
    return services


class ServiceContainer:
    """Calls service callbacks; turns an exception into a FAILED container and ServiceError."""

    def __init__(self, services: Sequence[ClusteredService]):
        self.services = check_services(services)
        self.failure: Optional[ServiceError] = None
        self.errors = 0
        self.current_index = 0

    def __len__(self) -> int:
        return len(self.services)

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def invoke(self, service_id: int, callback: str, *args: Any) -> None:
        if self.failure is not None:
            raise self.failure
        try:
            getattr(self.services[service_id], callback)(*args)
        except Exception as exc:  # noqa: BLE001 - any service bug stops the node (module docs)
            self.fail(service_id, callback, exc)

    def fail(self, service_id: int, callback: str, exc: Exception) -> None:
        """Record that a callback raised ``exc``, and raise the ServiceError that stops the node."""
        self.errors += 1
        self.failure = ServiceError(service_id, callback, exc, self.current_index)
        log.error("%s; %s", self.failure,
                  "the member was closing anyway" if callback == "on_terminate"
                  else "this member stops rather than diverge", exc_info=exc)
        raise self.failure from exc

    def broadcast(self, callback: str, *args: Any) -> None:
        for service_id in range(len(self.services)):
            self.invoke(service_id, callback, *args)
