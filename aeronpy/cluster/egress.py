"""Bounded per-client egress queues.

The module only queues; the driver drains through a ``send(client_ref, message) -> bool``
callable and a client that cannot take more (send returns False) keeps its backlog. A queue
that reaches its bound drops new messages and counts them, so a vanished client costs a
bounded amount of memory and never holds up the log.

A reply (the bulk of egress) is queued as the ``_applypath.Reply`` object that is also its
reply-cache entry (``session_id``, ``correlation_id``, ``ack_seq``, ``data``; ``as_tuple()``),
rather than a message object: building one per reply cost more than the rest of its queueing.
Plain ``(session_id, correlation_id, ack_seq, payload)`` tuples are accepted too. The drain
turns either into whatever its driver sends, ``reply_form(...)``: an ``EgressMessage`` for the
simulator and the tests, its wire bytes for a node.
"""
from __future__ import annotations

from typing import Callable

from aeronpy import _applypath

# (session_id, correlation_id, ack_seq, payload) -> what the driver's send takes
ReplyForm = Callable[[int, int, int, bytes], object]

# put / drain / take_all / backlog / clear / len; compiled (csrc/_applypath.pyx) because the
# compiled reply path queues every reply through it without a Python call
EgressQueues = _applypath.EgressQueues
