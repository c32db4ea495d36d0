"""Client sessions: the replicated session table and the ``ClientSession`` services see.

Everything in :class:`SessionState` is consensus state: it changes only while a committed
entry is applied, identically on every member, and goes into snapshots. The leader's
liveness bookkeeping (last time a client was heard from) is deliberately *not* in here: it
is local to the leader, and a timeout only takes effect through a SESSION_CLOSE entry.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Iterator, Optional


class SessionState:
    """One open session as every member knows it.

    ``last_applied_seq`` is the highest message number of the session applied so far: a
    message numbered at or below it is skipped, which is what makes delivery exactly-once
    even when a message is sequenced twice across a leader change. ``replies`` keeps the
    responses to the session's latest messages (seq -> [(correlation_id, payload)], oldest
    first), bounded, so that a new leader can answer a re-sent message with its original reply.

    ``reply_order`` is only an index into ``replies`` (its keys, oldest first) that makes
    evicting the oldest cheap; a plain dict's first key is not (its iteration walks over the
    slots of every key deleted before), an OrderedDict costs twice a dict per reply.
    """

    __slots__ = ("session_id", "response_endpoint", "client_nonce", "connect_correlation_id",
                 "opened_ns", "last_applied_seq", "replies", "reply_order", "offers", "closed")

    def __init__(self, session_id: int, response_endpoint: str, client_nonce: int,
                 connect_correlation_id: int, opened_ns: int):
        self.session_id = session_id
        self.response_endpoint = response_endpoint
        self.client_nonce = client_nonce
        self.connect_correlation_id = connect_correlation_id
        self.opened_ns = opened_ns
        self.last_applied_seq = 0
        self.replies: dict[int, list] = {}
        self.reply_order: deque = deque()
        self.offers = 0        # responses offered on this session (ClientSession.offer's result)
        self.closed = False

    def reply_keys(self) -> deque:
        """``reply_order``, rebuilt when ``replies`` was filled without it (snapshot restore)."""
        order = self.reply_order
        if len(order) != len(self.replies):
            order = self.reply_order = deque(self.replies)
        return order

    def record_reply(self, seq: int, correlation_id: int, payload: bytes,
                     max_messages: int, max_replies_per_message: int) -> bool:
        """Keep a reply to message ``seq``; False when it was not kept (bound reached)."""
        cache = self.replies
        replies = cache.get(seq)
        if replies is None:
            if max_messages <= 0:
                return False
            order = self.reply_keys()
            replies = cache[seq] = []
            order.append(seq)
            while len(order) > max_messages:
                del cache[order.popleft()]
        if len(replies) >= max_replies_per_message:
            return False
        replies.append((correlation_id, payload))
        return True

    def __repr__(self) -> str:
        return (f"SessionState(id={self.session_id}, endpoint={self.response_endpoint!r}, "
                f"last_applied_seq={self.last_applied_seq}, cached={list(self.replies)})")


class SessionTable:
    """The replicated table of open sessions, keyed by session id (the SESSION_OPEN index)."""

    def __init__(self) -> None:
        self._by_id: dict[int, SessionState] = {}
        self._by_client: dict[tuple[str, int], int] = {}   # (endpoint, nonce) -> session id

    def open(self, state: SessionState) -> None:
        self._by_id[state.session_id] = state
        self._by_client[(state.response_endpoint, state.client_nonce)] = state.session_id

    def close(self, session_id: int) -> Optional[SessionState]:
        state = self._by_id.pop(session_id, None)
        if state is not None:
            state.closed = True
            self._by_client.pop((state.response_endpoint, state.client_nonce), None)
        return state

    def get(self, session_id: int) -> Optional[SessionState]:
        return self._by_id.get(session_id)

    def find_client(self, response_endpoint: str, client_nonce: int) -> Optional[SessionState]:
        """The open session a connect request (endpoint, nonce) already produced, if any."""
        session_id = self._by_client.get((response_endpoint, client_nonce))
        return None if session_id is None else self._by_id[session_id]

    def __iter__(self) -> Iterator[SessionState]:
        """Sessions in id order (= open order), so iteration is the same on every member."""
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, session_id: int) -> bool:
        return session_id in self._by_id

    def clear(self) -> None:
        self._by_id.clear()
        self._by_client.clear()


class ClientSession:
    """A client's session as a service sees it (DESIGN 1.1).

    ``offer`` sends a response on egress. Its result never depends on this member's role or
    on the network (on followers nothing is sent and a positive value is still returned), so
    service code that looks at it stays deterministic on every member.
    """

    __slots__ = ("_state", "_offer")

    def __init__(self, state: SessionState, offer: Callable[[SessionState, object], int]):
        self._state = state
        self._offer = offer

    @property
    def id(self) -> int:
        return self._state.session_id

    @property
    def response_endpoint(self) -> str:
        return self._state.response_endpoint

    @property
    def is_closed(self) -> bool:
        return self._state.closed

    def offer(self, payload) -> int:
        """Send ``payload`` to the client: > 0 once accepted, aeronpy.CLOSED if the session is closed.

        Raises MessageTooLargeError for a payload above the cluster's max message size.
        """
        return self._offer(self._state, payload)

    def __eq__(self, other) -> bool:
        return isinstance(other, ClientSession) and other._state is self._state

    def __hash__(self) -> int:
        return hash(self._state.session_id)

    def __repr__(self) -> str:
        return f"ClientSession(id={self.id}, endpoint={self.response_endpoint!r})"
