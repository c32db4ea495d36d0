"""Bounded per-client egress queues.

The module only queues; the driver drains through a ``send(client_ref, message) -> bool``
callable and a client that cannot take more (send returns False) keeps its backlog. A queue
that reaches its bound drops new messages and counts them, so a vanished client costs a
bounded amount of memory and never holds up the log.

A reply (the bulk of egress) is queued as a plain ``(session_id, correlation_id, ack_seq,
payload)`` tuple rather than a message object: building one per reply cost more than the
rest of its queueing. The drain turns it into whatever its driver sends, ``reply_form(*t)``:
an ``EgressMessage`` for the simulator and the tests, its wire bytes for a node.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Optional

ReplyForm = Callable[[int, int, int, bytes], object]


class EgressQueues:
    def __init__(self, queue_max: int):
        self.queue_max = queue_max
        self._queues: dict[object, deque] = {}
        self.dropped = 0
        self.queued = 0

    def put(self, client_ref: object, message: object) -> bool:
        queue = self._queues.get(client_ref)
        if queue is None:
            queue = self._queues[client_ref] = deque()
        if len(queue) >= self.queue_max:
            self.dropped += 1
            return False
        queue.append(message)
        self.queued += 1
        return True

    def drain(self, send: Callable[[object, object], bool], limit: int = 1 << 30,
              reply_form: Optional[ReplyForm] = None) -> int:
        """Hand queued messages to ``send`` (oldest first per client); returns how many went.
        Queued reply tuples go through ``reply_form`` first (required when there are any)."""
        sent = 0
        emptied = []
        for client_ref, queue in self._queues.items():
            while queue and sent < limit:
                message = queue[0]
                if type(message) is tuple:
                    message = reply_form(*message)
                if send(client_ref, message) is False:
                    break
                queue.popleft()
                sent += 1
            if not queue:
                emptied.append(client_ref)
            if sent >= limit:
                break
        for client_ref in emptied:
            del self._queues[client_ref]
        self.queued -= sent
        return sent

    def take_all(self, reply_form: Optional[ReplyForm] = None) -> list[tuple[object, object]]:
        out = [(ref, reply_form(*msg) if type(msg) is tuple else msg)
               for ref, queue in self._queues.items() for msg in queue]
        self._queues.clear()
        self.queued = 0
        return out

    def backlog(self, client_ref: object) -> int:
        queue = self._queues.get(client_ref)
        return 0 if queue is None else len(queue)

    def clear(self) -> None:
        self._queues.clear()
        self.queued = 0

    def __len__(self) -> int:
        return self.queued
