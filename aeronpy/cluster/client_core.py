"""The client side of a cluster session, sans-I/O: shared by ``ClusterClient``, the asyncio
client and the simulator's client.

No I/O here: protocol messages come in through :meth:`ClientCore.on_egress` (or, read in
place by the transport, :meth:`ClientCore.on_egress_message`), time through ``now_ns``
arguments, and what to send piles up in :attr:`ClientCore.outgoing` as ``(endpoint,
message)`` for the driver to send (session messages already encoded, with
``encoded_messages=True``).

Exactly-once from the client's side: every message gets the next ``seq`` of the session and
stays in a bounded resend window until the cluster acknowledges it. On a NEW_LEADER event, a
redirect, or when acknowledgements stall, the whole window is sent again; the cluster skips
what it already sequenced and answers what it already applied from its reply cache.

Releasing the window: a SessionAck (sent for messages the service did not answer) releases
every message up to its ``ack_seq``. A response releases only the window's answered prefix,
never a lower message that is still unanswered: responses are not cumulative. Across a
leader change the reply to message 5 can come from the new leader while the reply to message
4 died with the old one (or was dropped by a new leader that could not reach us yet); if the
reply to 5 released 4, nobody would ever ask for 4's reply again and the client would wait
forever. Kept in the window, 4 is re-sent (NEW_LEADER, or the resend timeout) and answered
from the reply cache. For the same reason duplicates are recognised per message (which
responses to ``seq`` were delivered), not as "below the highest ack seen".
"""
from __future__ import annotations

import enum
import logging
import numbers
import operator
import random
from collections import OrderedDict, deque
from dataclasses import dataclass, fields
from typing import Any, Iterable, Optional, Union

from aeronpy._clientpath import ClientSessionBase, record_response, response_key
from aeronpy.cluster import protocol as P
from aeronpy.cluster.module_config import DEFAULT_MAX_MESSAGE_BYTES, parse_ingress_endpoints
from aeronpy.errors import (AeronpyError, AuthenticationError, ClusterClosedError,
                            MessageRejectedError, MessageTooLargeError, NotConnectedError)

_MS = 1_000_000
_REFUSED_REMEMBERED = 4096    # refused correlation ids kept to drop the refusals of re-sends
_TERMS_ASKS = 5               # times a client asks for the session terms an OK did not carry
_log = logging.getLogger("aeronpy.client")


# What a client sends: bytes-like (offer's and request's payload, connect's credentials)
BytesLike = Union[bytes, bytearray, memoryview]
# service ids are an int32 on the wire; the cluster refuses any outside [0, its service count)
# unapplied (MessageRejectedError), negative ones included, so the client refuses those at once
SERVICE_ID_MAX = (1 << 31) - 1
_INT64_MAX = (1 << 63) - 1
_INF = float("inf")


def _seconds(value: object, name: str) -> float:
    """``value`` as seconds: a real number (an int or a float, not a bool), else TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds (an int or a float), got "
                        f"{type(value).__name__} {value!r}")
    return float(value)


def check_timeout(timeout_s: float, name: str = "timeout_s") -> None:
    """A request's timeout must be a positive number of seconds: with 0 or less the message
    would be sent and its wait given up at once (then it may still be applied, unanswered).
    An int or a float passes with a type test and a comparison (``request()`` calls this
    every time); anything else is looked at on the slow path."""
    kind = type(timeout_s)
    if (kind is float or kind is int) and 0 < timeout_s < _INF:
        return
    if not 0 < _seconds(timeout_s, name) < _INF:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {timeout_s!r}")


def check_wait(timeout_s: float, name: str = "timeout_s") -> float:
    """A wait's length in seconds: any finite number (0 or less: do not wait)."""
    seconds = _seconds(timeout_s, name)
    if not -_INF < seconds < _INF:
        raise ValueError(f"{name} must be a finite number of seconds, got {timeout_s!r}")
    return seconds


def check_service_id(service_id: Any) -> int:
    """The ``service_id`` of an offer: an int (or an int-like, such as a numpy integer or an
    IntEnum, taken as its int; never a bool or a float) in [0, SERVICE_ID_MAX]. ``offer()`` and
    ``request()`` test the class and the range inline and call this only when that fails."""
    if type(service_id) is not int:
        if isinstance(service_id, bool) or not hasattr(type(service_id), "__index__"):
            raise TypeError(f"service_id must be an int, got {type(service_id).__name__} "
                            f"{service_id!r}")
        service_id = operator.index(service_id)
    if not 0 <= service_id <= SERVICE_ID_MAX:
        raise ValueError(f"service_id must be in [0, {SERVICE_ID_MAX}] (services are numbered 0, "
                         f"1, ... in the order the nodes host them), got {service_id}")
    return service_id


def check_credentials(credentials: object) -> bytes:
    """Connect's ``credentials`` as bytes: they must be bytes-like (an int would have made that
    many zero bytes, a str has no one encoding)."""
    if not isinstance(credentials, (bytes, bytearray, memoryview)):
        raise TypeError(f"credentials must be bytes-like (bytes, bytearray, memoryview), got "
                        f"{type(credentials).__name__}")
    return bytes(credentials)


def check_config(config: object) -> "ClientConfig":
    """Connect's ``config``: a ClientConfig, or None for the defaults."""
    if config is None:
        return ClientConfig()
    if not isinstance(config, ClientConfig):
        raise TypeError(f"config must be an aeronpy.ClientConfig (or None), got "
                        f"{type(config).__name__}")
    return config


def _check_int(owner: str, name: str, value: Any, low: int, high: int = _INT64_MAX) -> int:
    if type(value) is not int:
        if isinstance(value, bool) or not hasattr(type(value), "__index__"):
            unit = ""
            if name.endswith("_ns") and isinstance(value, float) and abs(value) < 1e9:
                unit = (f"; times are in nanoseconds ({value!r} s would be "
                        f"{int(value * 1_000_000_000):_})")
            raise TypeError(f"{owner}.{name} must be an int, got {type(value).__name__} "
                            f"{value!r}{unit}")
        value = operator.index(value)
    if not low <= value <= high:
        bound = "positive (and below 2**63)" if high == _INT64_MAX else f">= {low} and <= {high}"
        raise ValueError(f"{owner}.{name} must be {bound}, got {value}")
    return value


class ClientState(enum.Enum):
    IDLE = 0
    CONNECTING = 1
    CONNECTED = 2
    CLOSED = 3


@dataclass
class ClientConfig:
    """Client settings; every buffer is bounded by one of them."""
    # offers above the smaller of this and the cluster's (learnt at connect) raise at offer()
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Unacknowledged messages kept for re-sending. Lowered at connect to the cluster's reply cache
    # per session (ModuleConfig.reply_cache_messages, 256 by default) when that is smaller, so a
    # re-sent message that was already applied is always answered with its original reply.
    window_messages: int = 256
    inbox_max: int = 65536               # responses waiting for poll_egress
    connect_attempt_timeout_ns: int = 250 * _MS
    # lowered at connect to a third of the cluster's session timeout when that is shorter
    keepalive_interval_ns: int = 1000 * _MS
    resend_timeout_ns: int = 500 * _MS   # no acknowledgement for this long: re-send the window
    abandoned_max: int = 4096            # correlation ids of timed-out requests remembered
    # how soon unacknowledged data is followed by a stream HEARTBEAT, which exposes a lost
    # lone request (or, from the cluster's side, reply) to the receiver: what one costs
    stream_heartbeat_interval_ns: int = 5 * _MS
    # the newest protocol spoken; a cluster that only speaks an older one is asked again in it
    protocol_version: int = P.CLIENT_PROTOCOL_VERSION

    def __post_init__(self) -> None:
        # checked here, where they enter: a float (a time in seconds) or a str failed later,
        # far from its cause, or was used as it was
        for f in fields(self):
            low, high = 1, _INT64_MAX
            if f.name == "protocol_version":
                low, high = P.OLDEST_CLIENT_PROTOCOL_VERSION, P.CLIENT_PROTOCOL_VERSION
            setattr(self, f.name, _check_int("ClientConfig", f.name, getattr(self, f.name), low, high))


def parse_endpoints(endpoints: Union[str, Iterable[str]]) -> list[str]:
    """"h:p,h:p" or a sequence of "h:p" -> list (order kept, blanks dropped)."""
    if isinstance(endpoints, str):
        endpoints = endpoints.split(",")
    elif isinstance(endpoints, (bytes, bytearray)) or not hasattr(endpoints, "__iter__"):
        raise TypeError("endpoints must be 'host:port,host:port,...' or a sequence of 'host:port' "
                        f"strings, got {type(endpoints).__name__}")
    out = []
    for e in endpoints:
        if not isinstance(e, str):
            raise TypeError("endpoints must be 'host:port' strings, got "
                            f"{type(e).__name__} {e!r} among them")
        if e.strip():
            out.append(e.strip())
    if not out:
        raise ValueError("at least one cluster ingress endpoint is needed")
    return out


# EVENT_ERROR details of a message the cluster refused and consumed: the error a request()
# waiting for it raises, and why it happened
_REJECTIONS = {
    P.DETAIL_MESSAGE_TOO_LARGE: (MessageTooLargeError, "max_message_bytes is larger on this "
                                                       "client than on the cluster"),
    P.DETAIL_UNKNOWN_SERVICE: (MessageRejectedError, "no service has that service_id on the "
                                                     "cluster"),
}


def _session_message(session_id: int, seq: int, correlation_id: int, service_id: int, payload) -> P.SessionMessage:
    return P.SessionMessage(session_id, seq, correlation_id, service_id, bytes(payload))


class ClientCore(ClientSessionBase):
    """The session state machine (see the module docstring). ``offer``,
    ``on_egress_message`` and ``poll``, the steps run once per message, are compiled in the
    base class (``aeronpy._clientpath.ClientSessionBase``), on the attributes set here; the
    return codes of ``offer`` are aeronpy.cluster.codes'.

    ``encoded_messages=True`` (for a transport that sends bytes as they are, such as
    ``UdpClientTransport``): session messages are encoded once, at ``offer``, and the window
    keeps and re-sends those bytes (a SessionMessage holds nothing that changes with the
    leader, so the bytes stay valid); ``take_outgoing`` then holds bytes for them. Otherwise
    they are ``protocol.SessionMessage`` objects."""

    def __init__(self, endpoints, response_endpoint: str, config: Optional[ClientConfig] = None,
                 rng: Optional[random.Random] = None, credentials: bytes = b"", *,
                 encoded_messages: bool = False):
        self.endpoints = parse_endpoints(endpoints)
        self.response_endpoint = response_endpoint
        self.config = check_config(config)
        self.credentials = check_credentials(credentials)
        self._rng = rng or random.Random()
        self.state = ClientState.IDLE
        self._connected_state, self._closed_state = ClientState.CONNECTED, ClientState.CLOSED
        self._max_message_bytes = self.config.max_message_bytes
        self._window_messages = self.config.window_messages
        self._inbox_max = self.config.inbox_max
        self._keepalive_interval_ns = self.config.keepalive_interval_ns
        # why a client goes silent, for the expiry's error (the asyncio client says its own)
        self.silence_advice = ("a client sends its keepalives only inside its calls "
                               "(poll_egress, do_work, request), so call one at least every "
                               "{keepalive_ms} ms while idle (its keepalive interval)")
        # the cluster's session timeout, learnt at connect (protocol 2); 0: not known. A client
        # that sent nothing for this long has lost its session: offer() then returns CLOSED and
        # sends nothing, where the message would have been refused unapplied.
        self._session_expiry_ns = 0
        self.session_terms: dict[str, int] = {}
        self._terms_asks_left = 0           # asks left for the terms an OK did not carry
        self._terms_ask_due_ns = 0
        self.error: Optional[AeronpyError] = None     # why the client closed, if not by close()
        self.session_id = 0
        self.leadership_term = -1
        self.leader_endpoint: Optional[str] = None
        self.members: dict[int, str] = {}
        self.outgoing: list[tuple[str, object]] = []
        self.counters: dict[str, int] = {}
        self._next_correlation_id = 1
        self._next_seq = 1
        # the unacknowledged messages, seqs _window_base, _window_base + 1, ... _next_seq - 1:
        # released only from the front, so a deque and the seq of its first entry
        self._window: deque = deque()
        self._window_base = 1
        # a bound on the window's bytes (0: none): the transport's send buffer to a member,
        # set by ClusterClient (messages are then encoded bytes), so that the stream never
        # refuses a message offer() accepted (1 MiB messages filled an 8 MiB stream at 7)
        self._window_bytes_max = 0
        self._window_bytes = 0
        # a busy client's keepalive to each other member in turn, each at most this long apart
        # (0: none; set by ClusterClient for UDP): a member can send to a client only once it has heard from
        # it, so without it a new leader's NEW_LEADER event did not reach a client that had
        # messages in flight all along, which learnt of the failover only by its 500 ms
        # re-send timeout (kill -9 failovers took 250 or 500 ms, about half each). None of
        # this in SimCluster, whose network lets any member reach any client.
        self._probe_interval_ns = 0
        self._probe_due_ns = 0                # 0: none sent yet (the first round goes to all)
        # the encoded size of the last message offer() refused for the window's bytes (0:
        # none since the last accepted): AsyncClusterClient waits for that much room
        self._bytes_wanted = 0
        # the highest ack_seq of a SessionAck of the newest leadership term heard from (an
        # older leader's ack may lie above a new leader's hold), and whether the last one came
        # below the window's released prefix (held by the leader, or a late duplicate)
        self._acked_upto = 0
        self._acked_term = -1
        self._ack_below_window = False
        self._make_message = None if encoded_messages else _session_message   # None: encode
        self._inbox: deque = deque()
        self._awaiting: set[int] = set()
        self._replies: dict[int, bytes] = {}
        self._abandoned: "OrderedDict[int, None]" = OrderedDict()
        # seq -> the response_key of the response delivered for it (a tuple of keys if it had
        # several), kept for the window and window_messages seqs below it; responses to lower
        # seqs are late duplicates (_answered_floor). Ints: nothing the collector tracks.
        self._answered: dict = {}
        self._answered_floor = 1
        self._errors: dict[int, AeronpyError] = {}
        # refusals of offered (not awaited) messages, for take_rejections(); bounded
        self._rejections: list[tuple[int, MessageRejectedError]] = []
        # ids refused already: the leader refuses each re-send of a message again (the client
        # re-sends its window on a stall or a new leader), which must not be reported twice
        self._refused: "OrderedDict[int, None]" = OrderedDict()
        self._connect_message: Optional[P.SessionConnect] = None
        self._endpoint_index = 0
        self._attempt_deadline_ns = 0
        self._connect_endpoint = ""
        self._last_sent_ns = 0
        self._last_progress_ns = 0

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _send(self, endpoint: str, message: object, now_ns: int) -> None:
        self.outgoing.append((endpoint, message))
        self._last_sent_ns = now_ns

    def take_outgoing(self) -> list[tuple[str, object]]:
        out, self.outgoing = self.outgoing, []
        return out

    @property
    def is_connected(self) -> bool:
        return self.state is ClientState.CONNECTED

    @property
    def unacknowledged(self) -> int:
        return len(self._window)

    # ---- connecting ---------------------------------------------------------------------
    def connect(self, now_ns: int) -> None:
        """Start connecting: a SessionConnect to the first endpoint, then round robin."""
        if self.state is not ClientState.IDLE:
            raise ClusterClosedError("connect() on a client that is connecting, connected or closed")
        self._connect_message = P.SessionConnect(
            self._take_correlation_id(), self._rng.getrandbits(63), self.response_endpoint,
            self.credentials, self.config.protocol_version)
        self.state = ClientState.CONNECTING
        self._send_connect(self.endpoints[0], now_ns)

    def _send_connect(self, endpoint: str, now_ns: int) -> None:
        # the same correlation id and nonce every time: a connect that reached the leader
        # twice still opens a single session
        self._attempt_deadline_ns = now_ns + self.config.connect_attempt_timeout_ns
        self._connect_endpoint = endpoint
        self._send(endpoint, self._connect_message, now_ns)

    def _on_connect_event(self, event, now_ns: int) -> None:
        code = event.code
        if code == P.EVENT_OK:
            self.state = ClientState.CONNECTED
            self.session_id = event.session_id
            self.leadership_term = event.leadership_term
            endpoint, terms = P.parse_session_terms(event.detail)
            if endpoint:
                self.leader_endpoint = endpoint
            self._keep_session_terms(terms)
            self._last_progress_ns = now_ns
            self._last_sent_ns = now_ns
            if not terms and self._connect_message.protocol_version >= 2:
                # an OK with no terms from a cluster of protocol 2: a leader that took over
                # the session's opening from another never heard this client's protocol. The
                # same connect again is answered by the open session's leader, with them
                # (tick() asks again while none came, a few times: the ask can be lost)
                self._terms_asks_left = _TERMS_ASKS
                self._ask_for_terms(now_ns)
        elif code == P.EVENT_ERROR and self._older_protocol_asked(event.detail, now_ns):
            pass
        elif code == P.EVENT_REDIRECT:
            if event.detail:
                self._count("redirects")
                self._send_connect(event.detail, now_ns)
            else:
                # "not the leader, and I know none": an election under way (a single member
                # answers so until it has elected itself). No redirect: tried again at the
                # attempt timeout
                self._count("no_leader_answers")
        elif code == P.EVENT_AUTHENTICATION_REJECTED:
            self._fail(AuthenticationError(f"cluster rejected the credentials: {event.detail}"))
        else:
            self._fail(NotConnectedError(f"cluster refused the session: {event.detail}"))

    def _ask_for_terms(self, now_ns: int) -> None:
        if self._terms_asks_left <= 0 or not self.leader_endpoint:
            return
        self._terms_asks_left -= 1
        self._terms_ask_due_ns = now_ns + self.config.connect_attempt_timeout_ns
        self._count("session_terms_asked")
        self._send(self.leader_endpoint, self._connect_message, now_ns)

    def _older_protocol_asked(self, detail: str, now_ns: int) -> bool:
        """A cluster of an older version refused our protocol: connect again in the older one
        (same correlation id and nonce). True when the refusal was handled so: asked again, or
        a late refusal of a version no longer sent."""
        prefix = "protocol version "
        if not detail.startswith(prefix):
            return False
        refused = detail[len(prefix):].split(" ", 1)[0]
        sent = self._connect_message.protocol_version
        if not refused.isdigit() or int(refused) != sent:
            return refused.isdigit() and int(refused) > sent    # late: that one was given up
        if sent <= P.OLDEST_CLIENT_PROTOCOL_VERSION:
            return False
        self._count("protocol_fallbacks")
        m = self._connect_message
        self._connect_message = P.SessionConnect(m.correlation_id, m.client_nonce, m.response_endpoint,
                                                 m.credentials, sent - 1)
        self._send_connect(self._connect_endpoint, now_ns)
        return True

    def _keep_session_terms(self, terms: dict) -> None:
        """Fit this client to the terms the cluster gave at connect (protocol 2)."""
        self.session_terms = dict(terms)
        timeout_ms = terms.get("session_timeout_ms", 0)
        if timeout_ms > 0:
            self._session_expiry_ns = timeout_ms * _MS
            self._keepalive_interval_ns = min(self.config.keepalive_interval_ns, self._session_expiry_ns // 3)
        cache = terms.get("reply_cache_messages", 0)
        if 0 < cache < self._window_messages:
            _log.warning("send window lowered from %d to %d messages: the cluster keeps the replies "
                         "to a session's latest %d messages (reply_cache_messages), and a re-sent "
                         "message past them would get no reply", self._window_messages, cache, cache)
            self._count("window_lowered_to_reply_cache")
            self._window_messages = cache
        largest = terms.get("max_message_bytes", 0)
        if 0 < largest < self._max_message_bytes:
            self._max_message_bytes = largest

    def _expire(self, now_ns: int, offering: bool = True) -> None:
        """Nothing was sent for the cluster's session timeout: the session is gone (or about to
        be, and the SessionClose sent here ends it). Called by offer() and by tick()
        (``offering`` false). The cluster counts silence from what it last heard (a new leader
        from when it took over), so it may still hold the session a moment longer: giving it
        up here is the safe side, as nothing offered now is sent into a session that may be
        gone."""
        idle_s = (now_ns - self._last_sent_ns) / 1e9
        self._count("sessions_expired")
        self._send(self.leader_endpoint, P.SessionClose(self.session_id, self.leadership_term), now_ns)
        self._fail(ClusterClosedError(
            f"the session expired: this client sent nothing for {idle_s:.1f} s, and the cluster "
            f"closes a session silent for session_timeout_ms ({self._session_expiry_ns // _MS}); "
            + self.silence_advice.format(keepalive_ms=self._keepalive_interval_ns // _MS)
            + ". Connect a new client; "
            + ("the message just offered was not sent, and " if offering else "")
            + "any sent before and not answered may or may not have been applied "
            f"({len(self._window)} were waiting)"))

    def _fail(self, error: AeronpyError) -> None:
        self.state = ClientState.CLOSED
        self.error = error
        self._awaiting.clear()

    # ---- sending ------------------------------------------------------------------------
    def _take_correlation_id(self) -> int:
        correlation_id = self._next_correlation_id
        self._next_correlation_id += 1
        return correlation_id

    def _resend_window(self, now_ns: int, new_leader: bool = False) -> None:
        if (new_leader and self._window_base > 1) or (
                self._ack_below_window and self._window_base - 1 > self._acked_upto and self._window):
            # Where our window starts, ahead of the re-sent window. On a NEW_LEADER event
            # always: that leader holds its acks below each message it answered before it was
            # ready until it reads a re-send of it (a re-send lost on the way must not be
            # released by a later ack), and only this says which of those we released already
            # (by their replies) and will never re-send. On a stall only when we released above
            # the last ack (by replies) and that ack came below what we released: the leader
            # may hold its acks for a message we no longer have. The leader's ack of it clears
            # the flag. Not on every stall: the simulator runs this code, and a message more in
            # every round would change the course of its seeds
            self._count("window_bases_sent")
            self._send(self.leader_endpoint, P.SessionWindow(self.session_id, self.leadership_term,
                                                             self._window_base), now_ns)
        for message in self._window:
            self._send(self.leader_endpoint, message, now_ns)
        self._last_progress_ns = now_ns
        if self._window:
            self._count("window_resends")

    def _release(self, ack_seq: int, now_ns: int, leadership_term: Optional[int] = None) -> None:
        """A SessionAck (of ``leadership_term``; None: the newest heard): every message up to
        ``ack_seq`` is done with."""
        term = self._acked_term if leadership_term is None else leadership_term
        if term > self._acked_term:
            self._acked_term, self._acked_upto = term, ack_seq
            self._ack_below_window = ack_seq < self._window_base - 1
        elif term == self._acked_term:
            if ack_seq > self._acked_upto:
                self._acked_upto = ack_seq
            self._ack_below_window = ack_seq < self._window_base - 1
        # an older term's (late) ack still releases, but says nothing of the current leader's
        # holds: neither the highest ack nor the flag move (_resend_window)
        window = self._window
        count = min(ack_seq - self._window_base + 1, len(window))
        if count > 0:
            if self._window_bytes_max:
                for _ in range(count):
                    self._window_bytes -= len(window.popleft())
            else:
                for _ in range(count):
                    window.popleft()
            self._window_base += count
            self._released(now_ns)

    def _release_answered(self, now_ns: int) -> None:
        """A response arrived: release the window's prefix of answered messages."""
        window = self._window
        answered = self._answered
        base = first = self._window_base
        while window and base in answered:
            released = window.popleft()
            if self._window_bytes_max:
                self._window_bytes -= len(released)
            base += 1
        if base != first:
            self._window_base = base
            self._released(now_ns)

    def _released(self, now_ns: int) -> None:
        self._last_progress_ns = now_ns
        # forget what was delivered for seqs far below the window (bounded record); the
        # floor moves by what was released, so this is O(1) a message
        floor = self._window_base - self._window_messages     # as the compiled path's floor
        old_floor = self._answered_floor
        if floor > old_floor:
            self._answered_floor = floor
            answered = self._answered
            if answered:
                pop = answered.pop
                for seq in range(old_floor, floor):
                    pop(seq, None)

    def close(self, now_ns: int = 0) -> None:
        if self.state is ClientState.CONNECTED:
            self._send(self.leader_endpoint, P.SessionClose(self.session_id, self.leadership_term), now_ns)
        if self.state is not ClientState.CLOSED:
            self.state = ClientState.CLOSED
            self.error = ClusterClosedError("the client was closed")
        self._awaiting.clear()

    # ---- time ---------------------------------------------------------------------------
    def tick(self, now_ns: int) -> None:
        if self.state is ClientState.CONNECTING:
            if now_ns >= self._attempt_deadline_ns:
                self._send_connect(self._next_endpoint(None), now_ns)
        elif self.state is ClientState.CONNECTED:
            if self._session_expiry_ns and now_ns - self._last_sent_ns >= self._session_expiry_ns:
                self._expire(now_ns, offering=False)
                return
            if self._terms_asks_left and not self.session_terms and now_ns >= self._terms_ask_due_ns:
                self._ask_for_terms(now_ns)
            if self._window and now_ns - self._last_progress_ns >= self.config.resend_timeout_ns:
                # the leader we know has acknowledged nothing for resend_timeout_ns: send the
                # window to the next member (a follower redirects to the leader, at the cost of
                # one round trip if it was only slow). A new leader's NEW_LEADER event cannot
                # reach a client that never sent to that member, so an idle client learns of a
                # failover only this way: waiting for a second stall first made the first
                # request after a quiet failover take over 1 s.
                self.leader_endpoint = self._next_endpoint(self.leader_endpoint)
                self._resend_window(now_ns)
            if self._probe_interval_ns and self._window and now_ns >= self._probe_due_ns:
                self._probe_members(now_ns)
            if now_ns - self._last_sent_ns >= self._keepalive_interval_ns:
                keepalive = P.SessionKeepAlive(self.session_id, self.leadership_term)
                self._send(self.leader_endpoint, keepalive, now_ns)
                if not self._window and len(self.endpoints) > 1 and \
                        now_ns - self._last_progress_ns >= self.config.resend_timeout_ns:
                    # idle: the same keepalive to another member, round robin. A follower
                    # answers with a redirect naming the leader. Without it an idle client
                    # whose leader died kept sending its keepalives to the dead member (an empty
                    # window never stalls), the new leader's NEW_LEADER did not reach a client
                    # it had never heard from, and it closed the session at its timeout
                    self._count("leader_probes")
                    self._send(self._next_endpoint(self.leader_endpoint), keepalive, now_ns)

    def next_due_ns(self) -> int:
        """When ``tick`` next has something to do (a connect attempt, a re-send, a keepalive,
        a session expiry, a terms request), or 0 with messages waiting to be sent; 1 << 62
        for none (closed). A driver with nothing else to do may sleep until then
        (``AsyncClusterClient``'s background task); a reply wakes it anyway."""
        if self.outgoing:
            return 0
        state = self.state
        if state is ClientState.CONNECTING:
            return self._attempt_deadline_ns
        if state is not ClientState.CONNECTED:
            return 1 << 62
        last_sent = self._last_sent_ns
        due = last_sent + self._keepalive_interval_ns
        if self._session_expiry_ns and last_sent + self._session_expiry_ns < due:
            due = last_sent + self._session_expiry_ns
        if self._terms_asks_left and not self.session_terms and self._terms_ask_due_ns < due:
            due = self._terms_ask_due_ns
        if self._window:          # re-sent once nothing has progressed for resend_timeout_ns
            resend = self._last_progress_ns + self.config.resend_timeout_ns
            if resend < due:
                due = resend
            if self._probe_interval_ns and self._probe_due_ns < due:
                due = self._probe_due_ns
        return due        # (an idle client's probe of another member goes with a keepalive)

    def has_window_room(self) -> bool:
        """Whether offer() would take a message now as far as the window goes: fewer than
        window_messages in flight, and room in its byte bound for the last message it refused
        for bytes (any message fits an empty window)."""
        window = self._window
        if len(window) >= self._window_messages:
            return False
        wanted = self._bytes_wanted
        return not (wanted and window and self._window_bytes + wanted > self._window_bytes_max)

    def _probe_members(self, now_ns: int) -> None:
        """A keepalive to the next member other than the leader (to each of them the first
        time), outside the session's own sends: it refreshes the leader's view of nothing, and
        a follower's answer (a redirect naming the leader we know) changes nothing here."""
        others = len(self.endpoints) - 1
        if others < 1:
            return
        keepalive = P.SessionKeepAlive(self.session_id, self.leadership_term)
        for _ in range(others if self._probe_due_ns == 0 else 1):
            self.outgoing.append((self._next_endpoint(self.leader_endpoint), keepalive))
            self._count("member_probes")
        # each member once per keepalive interval: the session's, which its terms may lower
        self._probe_due_ns = now_ns + min(self._probe_interval_ns,
                                          max(1, self._keepalive_interval_ns // others))

    def _next_endpoint(self, avoid: Optional[str]) -> str:
        for _ in range(len(self.endpoints)):
            self._endpoint_index = (self._endpoint_index + 1) % len(self.endpoints)
            if self.endpoints[self._endpoint_index] != avoid:
                break
        return self.endpoints[self._endpoint_index]

    # ---- receiving ----------------------------------------------------------------------
    def on_egress(self, message: object, now_ns: int) -> None:
        kind = type(message)
        if kind is P.SessionEvent:
            self._on_session_event(message, now_ns)
        elif self.state is not ClientState.CONNECTED or getattr(message, "session_id", None) != self.session_id:
            self._count("egress_not_for_us")
        elif kind is P.EgressMessage:
            if message.correlation_id != 0 and message.ack_seq >= self._next_seq:
                self._count("egress_bogus_seq")    # a reply to a message never sent
                return
            self._on_response(message)
            if message.correlation_id != 0 and self._window:
                self._on_answer(message.ack_seq, now_ns)
        elif kind is P.SessionAck:
            self._release(message.ack_seq, now_ns, message.leadership_term)
        elif kind is P.NewLeaderEvent:
            self._on_new_leader(message, now_ns)
        else:
            self._count("egress_unexpected")

    def _on_session_event(self, event, now_ns: int) -> None:
        if self.state is ClientState.CONNECTING:
            if event.correlation_id == self._connect_message.correlation_id:
                self._on_connect_event(event, now_ns)
            else:
                self._count("egress_not_for_us")
            return
        if self.state is not ClientState.CONNECTED or event.session_id != self.session_id:
            self._count("egress_not_for_us")
            return
        if event.code == P.EVENT_CLOSED:
            if event.leadership_term < self.leadership_term:
                # from a leader of an older term (one that was stopped and resumed, answering
                # a keepalive probe about a session a newer leader opened): not final
                self._count("stale_closes")
                return
            detail = event.detail
            if detail == "unknown session":   # gone: timed out while this client was quiet
                detail += (" (it was closed, most likely timed out: no call for "
                           "session_timeout_ms; connect a new client, and re-send what was not "
                           "answered, as it may or may not have been applied)")
            self._fail(ClusterClosedError(f"the cluster closed the session: {detail}"))
        elif event.code == P.EVENT_REDIRECT:
            if not event.detail:
                self._count("no_leader_answers")
            elif event.correlation_id == 0 and event.detail == self.leader_endpoint:
                self._count("leader_confirmed")      # a probed member names our leader
            else:
                self._count("redirects")
            if event.detail and event.detail != self.leader_endpoint:
                if event.correlation_id == 0 and event.leadership_term < self.leadership_term:
                    # a keepalive's redirect from a member that lags: it names an older leader
                    self._count("stale_redirects")
                    return
                self.leader_endpoint = event.detail
                if event.leadership_term > self.leadership_term:
                    self.leadership_term = event.leadership_term
                if self._window:
                    self._resend_window(now_ns)
                else:                 # heard by the new leader now, not a keepalive later
                    self._send(self.leader_endpoint,
                               P.SessionKeepAlive(self.session_id, self.leadership_term), now_ns)
        elif event.code == P.EVENT_OK:
            # a late answer to a re-sent connect, or the one asked for the session terms
            if not self.session_terms and event.correlation_id == self._connect_message.correlation_id:
                self._keep_session_terms(P.parse_session_terms(event.detail)[1])
        else:
            self._count("session_errors")
            self._on_message_rejected(event)

    def _on_message_rejected(self, event) -> None:
        """The cluster refused one of our messages: larger than its max message size (our
        max_message_bytes is set higher than the cluster's) or for a service it lacks. The
        cluster consumes its seq, so the window moves on (a SessionAck releases it), and a
        request() waiting for it fails with MessageTooLargeError or MessageRejectedError
        instead of timing out. Other errors leave the message in the window: it may still be
        applied."""
        correlation_id = event.correlation_id
        if correlation_id == 0 or event.detail not in _REJECTIONS:
            return
        if correlation_id in self._refused:
            self._count("duplicate_rejections")
            return
        self._refused[correlation_id] = None
        if len(self._refused) > _REFUSED_REMEMBERED:
            self._refused.popitem(last=False)
        self._count("messages_rejected")
        error, why = _REJECTIONS[event.detail]
        error = error(f"the cluster rejected message {correlation_id}: {event.detail} ({why})")
        if correlation_id in self._awaiting:
            self._awaiting.discard(correlation_id)
            self._errors[correlation_id] = error
        elif correlation_id in self._abandoned:
            pass                                  # a request that gave up: nobody asks
        elif len(self._rejections) < self.config.inbox_max:
            self._rejections.append((correlation_id, error))
        else:
            self._count("rejections_dropped")

    def take_rejections(self) -> list[tuple[int, MessageRejectedError]]:
        """(correlation_id, MessageRejectedError) for each offered message the cluster refused
        unapplied since the last call (``request()`` raises these itself)."""
        out, self._rejections = self._rejections, []
        return out

    def _on_new_leader(self, event, now_ns: int) -> None:
        if event.leadership_term < self.leadership_term:
            self._count("stale_new_leader")
            return
        self.leadership_term = event.leadership_term
        self.members = parse_ingress_endpoints(event.ingress_endpoints) or self.members
        self.leader_endpoint = self.members.get(event.leader_member_id, self.leader_endpoint)
        self._resend_window(now_ns, new_leader=True)

    def _first_delivery(self, seq: int, correlation_id: int, payload: bytes) -> bool:
        """False for a response already delivered: one re-sent from the reply cache (or by
        another leader) is the same (seq, correlation id, payload)."""
        if seq < self._answered_floor:
            return False
        return record_response(self._answered, seq, response_key(correlation_id, payload))

    def _on_answer(self, seq: int, now_ns: int) -> None:
        """After a response to message ``seq`` (correlation id != 0; the service's own
        messages, correlation id 0, answer nothing and release nothing)."""
        front = self._window_base
        if seq == front:
            self._release_answered(now_ns)
        elif seq > front:
            self._count("answered_ahead_of_window")     # a lower one is still unanswered

    def _on_response(self, message) -> None:
        self._deliver(message.correlation_id, message.ack_seq, bytes(message.payload))

    def _deliver(self, correlation_id: int, ack_seq: int, payload: bytes) -> None:
        """A response: into the inbox, or to a waiting request(), unless it is a duplicate."""
        if correlation_id != 0:
            if not self._first_delivery(ack_seq, correlation_id, payload):
                self._count("duplicate_responses")
                return
            if correlation_id in self._awaiting:
                self._awaiting.discard(correlation_id)
                self._replies[correlation_id] = payload
                return
            if correlation_id in self._abandoned:
                self._count("late_replies_dropped")
                return
        if len(self._inbox) >= self.config.inbox_max:
            self._count("inbox_dropped")
            return
        self._inbox.append((correlation_id, payload))

    # ---- handing out responses ----------------------------------------------------------
    def take_reply(self, correlation_id: int) -> Optional[bytes]:
        return self._replies.pop(correlation_id, None)

    def take_error(self, correlation_id: int) -> Optional[AeronpyError]:
        """Why the cluster rejected an awaited message (then no reply will come), or None."""
        return self._errors.pop(correlation_id, None)

    def is_awaiting(self, correlation_id: int) -> bool:
        return correlation_id in self._awaiting

    def abandon(self, correlation_id: int) -> None:
        """A request gave up: a late reply to it is dropped, never handed to anyone else."""
        self._awaiting.discard(correlation_id)
        self._replies.pop(correlation_id, None)
        self._errors.pop(correlation_id, None)
        self._abandoned[correlation_id] = None
        while len(self._abandoned) > self.config.abandoned_max:
            self._abandoned.popitem(last=False)
