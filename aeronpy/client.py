"""``ClusterClient``: talk to a cluster from any process (docs/programming.md section 5).

The session logic (connect, redirects, numbering, the resend window, reply matching) is the
sans-I/O :class:`aeronpy.cluster.client_core.ClientCore`; this module adds a transport and a
clock. Anything with the small :class:`ClientTransport` shape works: the UDP one
(:class:`UdpClientTransport`, over ``aeronpy.transport`` and ``aeronpy._codec``) or an
in-memory one in tests.
"""
from __future__ import annotations

import difflib
import random
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, Sequence, TypedDict, Union

from aeronpy.cluster.client_core import (SERVICE_ID_MAX, BytesLike, ClientConfig, ClientCore,
                                         ClientState, check_config, check_credentials,
                                         check_service_id, check_timeout, check_wait,
                                         parse_endpoints)
from aeronpy.cluster.codes import BACK_PRESSURED, CLOSED, INGRESS_CLUSTER_ID, NOT_CONNECTED
from aeronpy.endpoints import canonical_host, format_endpoint, resolve, split_endpoint
from aeronpy.errors import (ClusterClosedError, ClusterTimeoutError, MessageRejectedError,
                            NotConnectedError)

if sys.version_info >= (3, 11):
    from typing import Unpack
elif TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ClusterClient", "ClientTransport", "UdpClientTransport", "ClientConfig"]


class ClientTransport(Protocol):
    """What a client needs from the network: whole protocol messages, in order per peer.

    A transport may also offer, and the client then uses: ``flush()``, ``poll_fields(...)``,
    ``wait_readable(timeout_ns)``, ``fileno()``, ``next_due_ns()`` (when its own timers next
    act) and ``stamp()`` (bring the time it stamps sends with up to date); see
    ``UdpClientTransport``."""

    @property
    def local_endpoint(self) -> str:
        """"host:port" the cluster sends egress to (the client's response endpoint)."""

    def send(self, endpoint: str, message: object) -> None:
        """Send a protocol message to a member's ingress endpoint "host:port" (best effort).
        A transport with ``sends_encoded = True`` also takes an already encoded message
        (bytes), sent as it is; the client then encodes its session messages once, at offer."""

    def poll(self, handler: Callable[[object], None], limit: int = 64) -> int:
        """Deliver received egress messages to ``handler``; returns how much work was done."""

    def close(self) -> None:
        ...


class ConnectOptions(TypedDict, total=False):
    """The keyword options of ``ClusterClient.connect`` and ``AsyncClusterClient.connect``
    (``ClusterClient.open``'s), for type checkers: a misspelt one is an error there, as it is
    at run time."""
    credentials: BytesLike
    transport: Optional[ClientTransport]
    config: Optional[ClientConfig]
    rng: Optional[random.Random]
    bind_host: Optional[str]
    clock: Callable[[], int]


CONNECT_OPTIONS = tuple(ConnectOptions.__annotations__)
# offer()'s default service id: an int 0 is this very object (CPython keeps one), so the
# default costs offer() an identity test; any other id a class test and a range test, with
# SERVICE_ID_MAX written out (a constant, not a global lookup)
_ZERO = 0
WINDOW_BYTES_HEADROOM = 64 * 1024    # of the stream's send buffer, for non-session messages
assert SERVICE_ID_MAX == 2147483647


def check_connect_options(options: dict, where: str, own: str = "timeout_s") -> None:
    """A keyword ``connect`` does not take: a TypeError naming ``where`` (not ``open``, which
    connect passes them to) with a close match and the options it takes."""
    for name in options:
        if name not in CONNECT_OPTIONS:
            close = difflib.get_close_matches(name, CONNECT_OPTIONS + tuple(own.split(", ")), 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"{where}() got an unexpected keyword argument {name!r}{hint}; it "
                            f"takes {own}, {', '.join(CONNECT_OPTIONS)}")


def check_poll(on_message: object, limit: object) -> None:
    """``poll_egress``'s arguments: a response handed to an ``on_message`` that cannot be
    called would be lost."""
    if not callable(on_message):
        raise TypeError(f"on_message must be callable as on_message(correlation_id, payload), got "
                        f"{type(on_message).__name__}")
    if type(limit) is not int:
        raise TypeError(f"limit must be an int, got {type(limit).__name__} {limit!r}")
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


class _Backoff:
    """Idle strategy while waiting: park on the transport's socket when it can, else spin a
    little, then sleep, each sleep twice as long as the one before, up to 1 ms.

    A transport with ``wait_readable(timeout_ns)`` is waited on at once: the reply ends the
    wait, and on a machine with fewer cores than busy processes every spin or yield takes
    CPU the cluster needs to produce that reply (one-at-a-time ``request()`` on a 3-process
    cluster, 2 busy cores: p50 0.84x and p99 0.87-0.90x of 20 spins + 50 yields + 50 us
    sleeps; 20 + 50 before the same wait: 1.04x).

    Without a waiter: every sleep costs the client 12-17 us of CPU however short it is
    (timer, two context switches; ``time.sleep(0)`` is no cheap yield either: 17 us CPU,
    ~70 us wall), so a waiting client's CPU is the number of sleeps. Doubling from 50 us to
    1 ms bounds a wait of T to ~5 + T/1ms sleeps and wakes at most ~T late. Windowed offers
    (bench/perf_harness.py processes, 2 busy cores): client CPU 6.4 -> 4.2 us per message,
    msgs/s unchanged within noise, against 20 spins + 50 ``sleep(0)`` + 50 us sleeps. Spins
    stay few: 200 spins + 200 yields used 35-39% of a core for the same p99 as 20 + 50."""

    __slots__ = ("idle", "_wait")
    SPINS = 20
    SLEEP_MIN_S, SLEEP_MAX_S = 50e-6, 1e-3
    PARK_NS = 1_000_000       # a wait ends at a datagram, else after this (client timers)

    def __init__(self, wait_readable: Optional[Callable[[int], object]] = None) -> None:
        self.idle = 0
        self._wait = wait_readable

    def __call__(self, work: int) -> None:
        if work:
            self.idle = 0
            return
        if self._wait is not None:
            self._wait(self.PARK_NS)
            return
        self.idle += 1
        if self.idle <= self.SPINS:
            return
        time.sleep(min(self.SLEEP_MIN_S * (1 << min(self.idle - self.SPINS - 1, 5)), self.SLEEP_MAX_S))


class ClusterClient:
    """A session with the cluster. Not thread-safe: use it from one thread."""

    def __init__(self, core: ClientCore, transport: ClientTransport,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._core = core
        self._transport = transport
        self._clock = clock
        self._closed = False
        buffer_bytes = getattr(transport, "send_buffer_bytes", 0)
        if buffer_bytes and getattr(transport, "sends_encoded", False):
            # offer() says BACK_PRESSURED before the stream would refuse a message: room kept
            # for the keepalives and control messages that share the stream
            core._window_bytes_max = max(1, buffer_bytes - WINDOW_BYTES_HEADROOM)
        if getattr(transport, "sends_encoded", False) and len(core.endpoints) > 1:
            # over UDP a member answers only clients it has heard from (ClientCore spreads
            # the probes over the other members)
            core._probe_interval_ns = core.config.keepalive_interval_ns
        self._send_now = getattr(transport, "flush", None)
        # a transport that can hand over EgressMessages by their fields (no message objects)
        self._poll_fields = getattr(transport, "poll_fields", None)
        # a transport that stamps its sends with the time of its last poll: request() brings
        # that time up to date first (UdpClientTransport.stamp)
        self._stamp = getattr(transport, "stamp", None)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def open(cls, endpoints: Union[str, Sequence[str]], *, credentials: BytesLike = b"",
             transport: Optional[ClientTransport] = None, config: Optional[ClientConfig] = None,
             rng: Optional[random.Random] = None, bind_host: Optional[str] = None,
             clock: Callable[[], int] = time.monotonic_ns) -> "ClusterClient":
        """Start connecting without waiting (``connect`` waits; the asyncio client awaits).
        ``bind_host``: the local address replies come to (default: one the members can reach,
        see `local_host_for`). Every argument is checked before a socket is opened."""
        check_credentials(credentials)
        config = check_config(config)
        if bind_host is not None and not isinstance(bind_host, str):
            raise TypeError(f"bind_host must be a str (an address of this machine) or None, got "
                            f"{type(bind_host).__name__}")
        if rng is not None and not isinstance(rng, random.Random):
            raise TypeError(f"rng must be a random.Random or None, got {type(rng).__name__}")
        if not callable(clock):
            raise TypeError(f"clock must be callable (a monotonic clock in ns), got "
                            f"{type(clock).__name__}")
        endpoint_list = parse_endpoints(endpoints)
        if transport is None:
            from aeronpy.cluster.module_config import CLIENT_STREAM_IDLE_NS, client_stream_message_bytes
            from aeronpy.transport.streams import StreamConfig
            limit = config.max_message_bytes
            transport = UdpClientTransport(endpoint_list, bind_host=bind_host,
                                           config=StreamConfig.for_message_bytes(
                                               client_stream_message_bytes(limit),
                                               heartbeat_interval_ns=config.stream_heartbeat_interval_ns,
                                               idle_interval_ns=CLIENT_STREAM_IDLE_NS))
        try:
            core = ClientCore(endpoint_list, transport.local_endpoint, config, rng, credentials,
                              encoded_messages=bool(getattr(transport, "sends_encoded", False)))
            client = cls(core, transport, clock)
            core.connect(clock())
            client._flush()
        except BaseException:
            transport.close()
            raise
        return client

    @classmethod
    def connect(cls, endpoints: Union[str, Sequence[str]], timeout_s: float = 5.0,
                **options: Unpack[ConnectOptions]) -> "ClusterClient":
        """Connect to the cluster through any member's ingress endpoint ("h:p,h:p,...").
        ``options``: `ConnectOptions` (``credentials``, ``config``, ``bind_host``, ...).

        Raises NotConnectedError (AuthenticationError when the credentials are refused) if
        no session is open within ``timeout_s``; TypeError or ValueError, before anything is
        sent, for an argument of the wrong type or out of range.
        """
        check_connect_options(options, "ClusterClient.connect")
        check_timeout(timeout_s)
        client = cls.open(endpoints, **options)
        deadline = client._clock() + int(timeout_s * 1e9)
        idle = client.backoff()
        try:
            while client._core.state is ClientState.CONNECTING:
                if client._clock() >= deadline:
                    raise NotConnectedError(client._no_session_why(endpoints, timeout_s))
                idle(client.do_work())
        except BaseException:
            # whatever ended the wait (timeout, an error, KeyboardInterrupt): the socket is
            # closed here, not left open for the collector (a caller that retries leaks one
            # descriptor per attempt otherwise)
            client._transport.close()
            raise
        if client._core.state is not ClientState.CONNECTED:
            client._transport.close()
            raise client._core.error or NotConnectedError("connect failed")
        return client

    def _no_session_why(self, endpoints: object, timeout_s: float) -> str:
        """The message of a connect that timed out, with what the client saw meanwhile."""
        text = f"no session with the cluster at {endpoints!r} within {timeout_s}s"
        heard = getattr(self._transport, "datagrams_received", None)
        if heard is not None and heard() == 0:
            local = getattr(self._transport, "local_endpoint", "?")
            return (f"{text}: no member answered (are the nodes running, on these ingress "
                    f"endpoints, and can they reach this client at {local}? A member whose "
                    "client table is full drops new clients unanswered: see its "
                    "transport_drop_too_many_clients counter)")
        counters = self._core.counters
        redirects = counters.get("redirects", 0)
        leaderless = counters.get("no_leader_answers", 0)
        if redirects or leaderless:
            return (f"{text}: members answered ({redirects} redirects, {leaderless} answers that "
                    "they know no leader) but no leader took the session (an election still "
                    "running, or the cluster suspended)")
        return text

    # ---- the duty cycle -----------------------------------------------------------------
    def _flush(self) -> int:
        core = self._core
        out = core.outgoing
        if not out:
            return 0
        core.outgoing = []
        send = self._transport.send
        for endpoint, message in out:
            send(endpoint, message)
        return len(out)

    def do_work(self) -> int:
        """Poll the network, run timers (keepalives, re-sends), send; returns work done."""
        now_ns = self._clock()
        core = self._core
        if self._poll_fields is not None:
            work = self._poll_fields(core.on_egress, core, now_ns)
        else:
            work = self._transport.poll(lambda message: core.on_egress(message, now_ns))
        core.tick(self._clock())
        return work + self._flush()

    def next_due_ns(self) -> int:
        """When this client's timers (keepalive, re-send, connect attempt, its streams'
        STATUS and HEARTBEAT) next need a ``do_work``, in its clock's ns; 0 for at once. A
        transport that cannot say is taken to need one within a millisecond."""
        due = self._core.next_due_ns()
        transport_due = getattr(self._transport, "next_due_ns", None)
        if transport_due is None:
            return min(due, self._clock() + _Backoff.PARK_NS)
        # the UDP transport keeps time.monotonic_ns; this client may run on another clock
        return min(due, transport_due() - time.monotonic_ns() + self._clock())

    def backoff(self) -> "_Backoff":
        """The idle strategy of a loop waiting on this client (parks on its socket if it can)."""
        return _Backoff(getattr(self._transport, "wait_readable", None))

    def wait_for_egress(self, timeout_s: float) -> bool:
        """Block until a datagram reaches this client or ``timeout_s`` passes, without spinning;
        True when one is waiting (``poll_egress`` handles it).

        For a sender on a schedule: wait until its next send is due while a reply can still
        end the wait (``backoff()`` parks up to 1 ms, which can overshoot a schedule). The
        client's own timers (keepalive, re-sends) run in ``poll_egress``, so call it at least
        every few ms. A transport without a socket (the in-memory ones) sleeps at most 100 us
        and returns False.
        """
        timeout_s = check_wait(timeout_s)
        self.flush()                  # never wait with offers still queued: they go out first
        wait = getattr(self._transport, "wait_readable", None)
        if wait is None:
            if timeout_s > 0:
                time.sleep(min(timeout_s, 1e-4))
            return False
        return bool(wait(max(0, int(timeout_s * 1e9))))

    # ---- public API ---------------------------------------------------------------------
    @property
    def session_id(self) -> int:
        return self._core.session_id

    @property
    def is_connected(self) -> bool:
        return self._core.is_connected

    @property
    def leader_endpoint(self) -> Optional[str]:
        return self._core.leader_endpoint

    @property
    def counters(self) -> dict[str, int]:
        return dict(self._core.counters)

    @property
    def session_terms(self) -> dict[str, int]:
        """What the cluster told this client at connect: ``session_timeout_ms``,
        ``reply_cache_messages``, ``max_message_bytes`` (empty from a cluster of protocol 1)."""
        return dict(self._core.session_terms)

    def offer(self, payload: BytesLike, service_id: int = 0) -> int:
        """> 0: correlation id; < 0: aeronpy.BACK_PRESSURED, NOT_CONNECTED or CLOSED.

        The message is queued, so offers made together go out in one batch: it is sent by the
        next ``poll_egress``, ``do_work``, ``wait_for_egress`` or ``request``, or by ``flush()``.
        Raises MessageTooLargeError (nothing sent) above the max message size; TypeError
        (payload not bytes-like, service_id not an int) or ValueError (service_id outside
        [0, 2**31 - 1]), nothing sent.
        """
        # checked before anything else (see _ZERO): the default costs an identity test
        if service_id is not _ZERO and (service_id.__class__ is not int or service_id < 0
                                        or service_id > 2147483647):     # SERVICE_ID_MAX
            service_id = check_service_id(service_id)
        core = self._core
        result = core.offer(payload, service_id, self._clock())
        if result > 0:
            out = core.outgoing
            if len(out) == 1:                 # the usual case: just this message
                core.outgoing = []
                endpoint, message = out[0]
                self._transport.send(endpoint, message)
            else:
                self._flush()
        elif core.outgoing:                   # CLOSED by an expired session: its SessionClose
            self._flush()
        return result

    def flush(self) -> int:
        """Send what ``offer`` queued now; returns the datagrams sent (0 when none waited)."""
        self._flush()
        return self._send_now() if self._send_now is not None else 0

    def take_rejections(self) -> list[tuple[int, MessageRejectedError]]:
        """``(correlation_id, MessageRejectedError)`` for each offered message the cluster
        refused unapplied (too large for it, or for a service id it lacks) since the last
        call; no reply will come for those. ``request()`` raises the error itself. Bounded by
        ``ClientConfig.inbox_max`` (more are counted in ``rejections_dropped``)."""
        return self._core.take_rejections()

    def poll_egress(self, on_message: Callable[[int, memoryview], object], limit: int = 1 << 30) -> int:
        """Do a duty cycle and hand responses to ``on_message(correlation_id, payload)``, at most
        ``limit`` of them, in arrival order; returns how many were handed over.

        Each response is taken off the client's queue before ``on_message`` is called with it.
        If ``on_message`` raises, the exception propagates out of ``poll_egress`` and that
        response is lost: no later call hands it over again. The responses behind it stay
        queued and the next ``poll_egress`` delivers them. A callback that may raise (an
        ``assert`` on the payload in a test) should record the response first and check it
        after, or catch its own exceptions."""
        if type(limit) is not int or limit < 0 or not callable(on_message):
            check_poll(on_message, limit)
        self.do_work()
        return self._core.poll(on_message, limit)

    def request(self, payload: BytesLike, service_id: int = 0, timeout_s: float = 1.0) -> bytes:
        """Offer ``payload`` and wait for its reply (matched on correlation id).

        Raises ClusterTimeoutError (the message may still be applied later, never twice),
        NotConnectedError or ClusterClosedError; MessageRejectedError (MessageTooLargeError
        when too large) when the cluster refused it unapplied: larger than its max message
        size, or for a ``service_id`` no service has. TypeError or ValueError for an argument
        of the wrong type or out of range, nothing sent.
        """
        check_timeout(timeout_s)
        if service_id is not _ZERO and (service_id.__class__ is not int or service_id < 0
                                        or service_id > 2147483647):     # SERVICE_ID_MAX
            service_id = check_service_id(service_id)
        core = self._core
        deadline = self._clock() + int(timeout_s * 1e9)
        idle = self.backoff()
        while True:
            correlation_id = core.offer(payload, service_id, self._clock(), expect_reply=True)
            if correlation_id != BACK_PRESSURED:
                break
            if self._clock() >= deadline:
                raise ClusterTimeoutError(f"send window full for {timeout_s}s")
            idle(self.do_work())
        if correlation_id == NOT_CONNECTED:
            raise NotConnectedError("not connected to the cluster")
        if correlation_id == CLOSED:
            self._flush()                 # an expired session's SessionClose
            raise ClusterClosedError(str(core.error or "closed"))
        try:
            if self._stamp is not None:
                self._stamp()
            self.flush()              # on the wire now, not after the next poll's receive
            while True:
                reply = core.take_reply(correlation_id)
                if reply is not None:
                    return reply
                error = core.take_error(correlation_id)
                if error is not None:     # the cluster refused the message (e.g. too large)
                    raise error
                if core.state is ClientState.CLOSED:
                    raise ClusterClosedError(str(core.error or "closed"))
                if self._clock() >= deadline:
                    raise ClusterTimeoutError(
                        f"no reply to correlation id {correlation_id} within {timeout_s}s "
                        "(it may still be applied, never twice)")
                idle(self.do_work())
        except BaseException:
            # timed out, closed, or ended by the caller's own exception (a failed send, a
            # KeyboardInterrupt): kept awaited, a late reply would stay in the core for good
            if core.is_awaiting(correlation_id):
                core.abandon(correlation_id)
            raise

    def close(self) -> None:
        """Close the session (best effort) and the transport."""
        if self._closed:
            return
        self._closed = True
        self._core.close(self._clock())
        try:
            self._flush()
            self._transport.poll(lambda message: None)
        finally:
            self._transport.close()

    def __enter__(self) -> "ClusterClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def local_host_for(endpoints: Sequence[str]) -> str:
    """The address a client binds so that the members can answer it (its session's response
    endpoint): loopback (127.0.0.1 or ::1, the members' address family) when every member is
    on this machine's loopback, otherwise this machine's address on the route to the first
    member that is not (the kernel's choice, as for any datagram sent there; the probe sends
    nothing). Members of both families are refused: a socket has one."""
    import ipaddress
    import socket
    remote = []
    families = set()
    for endpoint in endpoints:
        host, port = split_endpoint(endpoint)
        try:
            family, ip = resolve(host)
        except OSError as exc:
            raise ValueError(f"endpoint {endpoint!r}: cannot resolve {host!r} ({exc})") from None
        except ValueError as exc:
            raise ValueError(f"endpoint {endpoint!r}: {exc}") from None
        families.add(family)
        if not ipaddress.ip_address(ip).is_loopback:
            remote.append((endpoint, family, ip, port))
    if len(families) > 1:
        raise ValueError(f"endpoints {', '.join(endpoints)} mix IPv4 and IPv6 members: a "
                         "cluster's members use one address family")
    if not remote:
        return "::1" if families == {socket.AF_INET6} else "127.0.0.1"
    failures = []
    for endpoint, family, ip, port in remote:    # a member whose network is down: try the next
        probe = socket.socket(family, socket.SOCK_DGRAM)
        try:
            probe.connect((ip, port))
            return probe.getsockname()[0]
        except OSError as exc:
            failures.append(f"{endpoint}: {exc}")
        finally:
            probe.close()
    raise NotConnectedError("no route to any cluster member (" + "; ".join(failures) + ")")


class UdpClientTransport:
    """The client side of ``aeronpy.transport.UdpTransport``: one stream per member endpoint,
    messages encoded by ``aeronpy._codec``. Members are peers 0, 1, ... in endpoint order;
    an endpoint first named by a redirect becomes the next peer.

    Hot path: ``send`` takes already encoded messages (``sends_encoded``), and ``poll_fields``
    hands EgressMessages over by their fields, read in place by ``aeronpy._clientpath``."""

    sends_encoded = True

    def __init__(self, endpoints: Sequence[str], bind_host: Optional[str] = None,
                 **transport_options: Any) -> None:
        """``bind_host``: the local address to receive replies on; by default the one the
        members can reach (`local_host_for`): loopback for a cluster on this machine's
        loopback, else this machine's address on the route to the members. The ingress
        stream carries no cluster id (0) and no MAC: clients are vetted by the cluster's
        Authenticator, not by a shared secret."""
        try:
            from aeronpy import _codec
            from aeronpy.transport import CLIENT_SENDER_ID, UdpTransport
        except ImportError as exc:   # the transport / codec layers are not built in
            raise NotConnectedError(f"the UDP client transport is unavailable ({exc}); "
                                    "pass transport= to ClusterClient.connect") from exc
        from aeronpy._clientpath import EgressDispatcher
        self._encode = _codec.encode
        self._dispatch = EgressDispatcher(_codec.decode, getattr(_codec, "DecodeError", ValueError))
        if bind_host is None:
            bind_host = local_host_for(endpoints)
        self._udp = UdpTransport(bind_host, 0, INGRESS_CLUSTER_ID, CLIENT_SENDER_ID, None,
                                 **transport_options)
        self._peers: dict[str, int] = {}
        try:
            for endpoint in endpoints:
                self._peer(endpoint)
        except BaseException:
            self._udp.close()             # a bad endpoint: its socket is not left open
            raise
        host, port = self._udp.local_address[:2]
        self.local_endpoint = format_endpoint(canonical_host(host), port)

    @property
    def send_buffer_bytes(self) -> int:
        """The bytes the stream to one member holds unacknowledged: the client bounds its
        window of unanswered messages below it (``ClusterClient``)."""
        return self._udp.config.send_buffer_bytes

    @property
    def decode_errors(self) -> int:
        """Received messages dropped as malformed."""
        return self._dispatch.decode_errors

    def _peer(self, endpoint: str) -> int:
        peer_id = self._peers.get(endpoint)
        if peer_id is None:
            # mapped only once added: a failed endpoint (one a redirect or NEW_LEADER event
            # named that this client cannot resolve) fails every send to it, not only the first
            # (after which its sends used to vanish without a word)
            peer_id = len(self._peers)
            self._udp.add_peer(peer_id, *split_endpoint(endpoint))
            self._peers[endpoint] = peer_id
        return peer_id

    def send(self, endpoint: str, message: object) -> None:
        """``message``: a protocol message, or one already encoded (bytes)."""
        peer_id = self._peers.get(endpoint)
        if peer_id is None:
            try:
                peer_id = self._peer(endpoint)
            except (ValueError, OSError) as exc:
                raise NotConnectedError(f"cannot send to cluster endpoint {endpoint!r}: {exc}") from exc
        self._udp.send(peer_id, message if type(message) is bytes else self._encode(message))

    def poll(self, handler: Callable[[object], None], limit: int = 64) -> int:
        dispatch = self._dispatch
        dispatch.on_message = lambda message, _now: handler(message)
        dispatch.on_egress_message = None
        return self._udp.poll(dispatch, limit) + self._udp.do_work()

    def poll_fields(self, on_message: Callable[[object, int], None],
                    on_egress_message: "Callable[[int, int, int, bytes, int], None] | ClientCore",
                    now_ns: int, limit: int = 64) -> int:
        """``poll``, with EgressMessages handed to ``on_egress_message(session_id,
        correlation_id, ack_seq, payload, now_ns)`` without a message object (pass a
        ``ClientCore`` itself to have its ``on_egress_message`` called without a Python
        call); any other message decoded to ``on_message(message, now_ns)``. Malformed ones
        are counted in ``decode_errors``."""
        dispatch = self._dispatch
        dispatch.on_message = on_message
        dispatch.on_egress_message = on_egress_message
        dispatch.now_ns = now_ns
        return self._udp.poll(dispatch, limit) + self._udp.do_work()

    def flush(self) -> int:
        """Send what ``send`` queued now (``poll`` would, after its receive)."""
        return self._udp.flush()

    def datagrams_received(self) -> int:
        """Datagrams that reached this client's socket so far (any, even ones dropped)."""
        return self._udp.socket.datagrams_in

    def fileno(self) -> int:
        """The socket replies arrive on (for an event loop's reader; -1 once closed)."""
        return self._udp.socket.fileno()

    def next_due_ns(self) -> int:
        """When the streams' timers next act (``UdpTransport.next_due_ns``)."""
        return self._udp.next_due_ns()

    def stamp(self) -> None:
        """Bring the time the transport stamps sends with up to date (it is its last poll's).
        A message sent after a quiet spell with the old time looked unacknowledged for that
        long at the next poll, and a needless stream HEARTBEAT followed it. ``request()``
        calls it before it sends; ``offer()`` does not (a clock read per message on the
        throughput path, where the client polls all the time anyway)."""
        udp = self._udp
        udp._now_ns = udp._clock()

    def wait_readable(self, timeout_ns: int) -> bool:
        """Block until a datagram waits or ``timeout_ns`` passes (to the ns on Linux, whole ms elsewhere)."""
        return self._udp.wait_readable(timeout_ns)

    def close(self) -> None:
        self._udp.close()
