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


class MessageRejectedError(AeronpyError, ValueError):
    """The cluster refused a message without applying it (it consumed its place in the
    session, so later messages flow on): too large, or for a service the cluster lacks."""


class MessageTooLargeError(MessageRejectedError):
    """A payload is larger than the configured maximum message size."""
