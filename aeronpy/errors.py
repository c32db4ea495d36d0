"""Exceptions raised by aeronpy's public API."""


class AeronpyError(Exception):
    """Base class of every error aeronpy raises on purpose."""


class ConfigError(AeronpyError, ValueError):
    """Bad configuration; the message names the offending key."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


class ClusterTimeoutError(AeronpyError, TimeoutError):
    """A request got no reply in time. It may still be applied later, never twice."""


class NotConnectedError(AeronpyError, ConnectionError):
    """The client has no session with the cluster (yet, or any more)."""


class ClusterClosedError(AeronpyError):
    """The client or its session was closed."""


class AuthenticationError(NotConnectedError):
    """The cluster's authenticator rejected the client's credentials."""


class ClusterStateError(AeronpyError, RuntimeError):
    """A service changed replicated cluster state (a timer, a service message, a session's
    reply or close) from a callback that runs outside log order on one member only
    (``on_role_change``, ``on_take_snapshot``, ``on_terminate``, or ``on_start`` given a
    snapshot): done there, it would make that member's state differ from its peers'."""

    @classmethod
    def outside_log_order(cls, what: str, callback: str) -> "ClusterStateError":
        return cls(f"{what} from {callback}: a change to replicated state may only be made while "
                   "applying a log entry (on_session_open/close/message, on_timer_event, or "
                   "on_start without a snapshot), where every member makes it at the same point")


class MessageRejectedError(AeronpyError, ValueError):
    """The cluster refused a message without applying it (it consumed its place in the
    session, so later messages flow on): too large, or for a service the cluster lacks."""


class MessageTooLargeError(MessageRejectedError):
    """A payload is larger than the configured maximum message size."""
