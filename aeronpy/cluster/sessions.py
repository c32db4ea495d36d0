"""Client sessions: the replicated session table and the ``ClientSession`` services see.

Everything in :class:`SessionState` is consensus state: it changes only while a committed
entry is applied, identically on every member, and goes into snapshots. The leader's
liveness bookkeeping (last time a client was heard from) is deliberately *not* in here: it
is local to the leader, and a timeout only takes effect through a SESSION_CLOSE entry.
"""
from __future__ import annotations

from typing import Iterator, Optional

from aeronpy import _applypath


# SessionState (replicated: ids, last applied seq, reply cache) and ClientSession (what a
# service gets) are compiled (csrc/_applypath.pyx): every member runs ClientSession.offer once
# per reply to every committed message, the largest single cost of applying one in Python.
SessionState = _applypath.SessionState
ClientSession = _applypath.ClientSession
ReplyPath = _applypath.ReplyPath


class SessionTable:
    """The replicated table of open sessions, keyed by session id (the SESSION_OPEN index)."""

    def __init__(self) -> None:
        self._by_id: dict[int, SessionState] = {}
        self._by_client: dict[tuple[str, int], int] = {}   # (endpoint, nonce) -> session id
        self._per_endpoint: dict[str, int] = {}             # endpoint -> open sessions there

    def open(self, state: SessionState) -> None:
        if state.session_id not in self._by_id:
            endpoint = state.response_endpoint
            self._per_endpoint[endpoint] = self._per_endpoint.get(endpoint, 0) + 1
        self._by_id[state.session_id] = state
        self._by_client[(state.response_endpoint, state.client_nonce)] = state.session_id

    def close(self, session_id: int) -> Optional[SessionState]:
        state = self._by_id.pop(session_id, None)
        if state is not None:
            state.closed = True
            self._by_client.pop((state.response_endpoint, state.client_nonce), None)
            endpoint = state.response_endpoint
            left = self._per_endpoint.pop(endpoint) - 1
            if left:
                self._per_endpoint[endpoint] = left
        return state

    def has_endpoint(self, response_endpoint: str) -> bool:
        """Whether an open session answers to this endpoint (a client that reconnected from
        the address of one whose session is still open shares it)."""
        return response_endpoint in self._per_endpoint

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
        self._per_endpoint.clear()
