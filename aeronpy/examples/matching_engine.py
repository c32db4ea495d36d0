"""A clustered matching engine: the model aeronpy service to copy.

What it shows, and why each rule is there:

* **Everything is decided by the log.** The engine reads time only from ``timestamp_ns`` (the
  cluster time recorded in each log entry) and uses no randomness, no wall clock, no
  iteration over unordered containers. So every member, fed the same log, reaches the same
  book, and :meth:`MatchingEngine.state_hash` proves it.
* **One reply per request.** Every new / cancel / replace gets exactly one execution report on
  the submitting session, carrying the engine's order id and the outcome (with the fills it
  caused), so ``client.request()`` returns it and a client can account for every order.
  Fills of resting orders go to their owners with ``cluster.get_client_session(id)``.
* **Egress is not state.** ``session.offer()`` does nothing on followers and may be back
  pressured on the leader, so its result never changes the book; a failed offer is only
  counted (``egress_failures``), outside the state hash.
* **Timers are log entries.** A good-till-time order schedules ``cluster.schedule_timer(order_id,
  expire_ns)``; the cluster fires it at the same log position on every member. Timers live in
  the cluster's own replicated state (and snapshot), so a restored engine does not schedule
  them again. As a second line, an expired order met during matching is expired, never filled.
* **Snapshots are the canonical state.** ``on_take_snapshot`` writes the same canonical bytes
  that ``state_hash`` digests; ``on_start`` restores them, so restore gives the identical hash.
* **Everything is bounded**: open orders, instruments, and the record of finished orders.

Matching rules: price-time priority; a trade prints at the resting order's price; a replace
keeps the order's priority only when the price is unchanged and the quantity does not grow,
otherwise it goes to the back of the (possibly new) price level and may trade at once.
Orders of a closed session stay in the book (they are good till cancelled or expired).

A client, using the wire helpers of :mod:`aeronpy.examples.orders`::

    from aeronpy.examples import orders
    reply = client.request(orders.encode_new_order(instrument=1, client_order_id=42,
                                                   side=orders.BUY, price=10_050, quantity=5))
    report = orders.decode_event(reply)      # ExecutionReport: order_id, status, fills
    ledger = orders.OrderLedger()            # feed it every event to account for each order
    ledger.apply(report)
"""
from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from typing import Any, BinaryIO, Dict, List, NamedTuple, Optional, Tuple

from aeronpy.examples import orders as wire
from aeronpy.examples.order_book import Order, OrderBook
from aeronpy.service import ClusteredService

SNAPSHOT_MAGIC = b"AMEB"
SNAPSHOT_VERSION = 1
_SNAP_HEADER = struct.Struct("<4sHxxQQQQQQQII")   # magic, version, ids, counters, counts
_SNAP_BOOK = struct.Struct("<II")                # instrument, order count
_SNAP_ORDER = struct.Struct("<QqQBBxxxqqqq")     # see _write_canonical
_SNAP_DONE = struct.Struct("<QIBxxxq")           # order_id, instrument, status, filled


class OrderState(NamedTuple):
    """What the engine knows of an order: resting (ACCEPTED) or finished (FILLED, ...)."""
    order_id: int
    instrument: int
    status: int
    leaves_qty: int
    filled_qty: int


class MatchingEngine(ClusteredService):
    """Limit order books for many instruments, hosted by an aeronpy cluster."""

    def __init__(self, max_open_orders: int = 1_000_000, max_instruments: int = 10_000,
                 max_done_orders: int = 1_000_000) -> None:
        self.max_open_orders = max_open_orders
        self.max_instruments = max_instruments
        self.max_done_orders = max_done_orders
        self.cluster: Any = None
        self.books: Dict[int, OrderBook] = {}
        self.open_orders: Dict[int, Order] = {}
        # finished orders, oldest first, so a client can check its acknowledged orders
        self.done_orders: "OrderedDict[int, Tuple[int, int, int]]" = OrderedDict()
        self.next_order_id = 1
        self.next_match_id = 1
        # deterministic counters (part of the state hash)
        self.requests = 0
        self.rejects = 0
        self.fills = 0
        self.volume = 0
        self.done_evicted = 0
        # local-only counters (not state: they differ between leader and followers)
        self.egress_failures = 0
        self.ignored_messages = 0
        # owner notifications produced while handling one message, sent after its reply
        self._notices: List[Tuple[int, bytes]] = []

    # ----- cluster callbacks ------------------------------------------------------------

    def on_start(self, cluster: Any, snapshot: Optional[BinaryIO]) -> None:
        self.cluster = cluster
        if snapshot is not None:
            self._restore(snapshot.read())

    def on_session_message(self, session: Any, timestamp_ns: int, message: memoryview) -> None:
        if session is None:                     # a service message: this engine sends none
            self.ignored_messages += 1
            return
        self.requests += 1
        try:
            request = wire.decode_request(message)
        except wire.OrderDecodeError:
            kind = message[0] if len(message) else 0
            reason = wire.UNKNOWN_MESSAGE if kind not in (wire.NEW_ORDER, wire.CANCEL, wire.REPLACE) \
                else wire.MALFORMED
            self._reject(session, timestamp_ns, reason, 0, 0, 0)
            return
        if isinstance(request, wire.NewOrder):
            self._new_order(session, timestamp_ns, request)
        elif isinstance(request, wire.CancelOrder):
            self._cancel(session, timestamp_ns, request)
        else:
            self._replace(session, timestamp_ns, request)
        self._send_notices()

    def on_timer_event(self, correlation_id: int, timestamp_ns: int) -> None:
        order = self.open_orders.get(correlation_id)
        if order is None or not order.expired_at(timestamp_ns):
            return                              # filled or cancelled since: nothing to do
        self._expire(order, timestamp_ns)
        self._send_notices()

    def on_take_snapshot(self, writer: BinaryIO) -> None:
        writer.write(self.canonical_state())

    # ----- requests -----------------------------------------------------------------------

    def _new_order(self, session: Any, now_ns: int, req: "wire.NewOrder") -> None:
        reason = wire.NO_REASON
        if req.side not in (wire.BUY, wire.SELL) or req.tif not in (wire.GTC, wire.GTT, wire.IOC):
            reason = wire.BAD_SIDE_OR_TIF
        elif not 0 < req.quantity <= wire.MAX_QUANTITY:
            reason = wire.BAD_QUANTITY
        elif not 0 < req.price <= wire.MAX_PRICE:
            reason = wire.BAD_PRICE
        elif req.tif == wire.GTT and req.expire_ns <= now_ns:
            reason = wire.EXPIRED_ON_ARRIVAL
        elif len(self.open_orders) >= self.max_open_orders or (
                req.instrument not in self.books and len(self.books) >= self.max_instruments):
            reason = wire.LIMIT_REACHED
        elif req.tif == wire.GTT and not self.cluster.schedule_timer(self.next_order_id,
                                                                    req.expire_ns):
            # the cluster's max_timers (shared by its services) is reached: refuse the order
            # before it touches the book; its timer is cancelled if it does not rest
            reason = wire.LIMIT_REACHED
        if reason != wire.NO_REASON:
            self._reject(session, now_ns, reason, req.instrument, 0, req.client_order_id)
            return
        order = Order(self.next_order_id, session.id, req.client_order_id, req.instrument,
                      req.side, req.tif, req.price, req.quantity,
                      expire_ns=req.expire_ns if req.tif == wire.GTT else 0)
        self.next_order_id += 1
        book = self._book(req.instrument)
        fills = self._match(book, order, now_ns)
        if order.leaves_qty == 0:
            status, reason = wire.FILLED, wire.NO_REASON
            self._cancel_timer(order)                # a GTT order that did not rest
            self._finish(order, wire.FILLED)
        elif order.tif == wire.IOC:
            status, reason = wire.CANCELLED, wire.IOC_REMAINDER
            self._finish(order, wire.CANCELLED)
        else:
            status, reason = wire.ACCEPTED, wire.NO_REASON
            self._rest(book, order)
        self._report(session, now_ns, order, status, reason, fills)

    def _cancel(self, session: Any, now_ns: int, req: "wire.CancelOrder") -> None:
        order, reason = self._owned_order(session, req.instrument, req.order_id)
        if order is None:
            self._reject(session, now_ns, reason, req.instrument, req.order_id, req.client_order_id)
            return
        self.books[order.instrument].side_of(order).remove(order)
        self._cancel_timer(order)
        self._finish(order, wire.CANCELLED)
        self._report(session, now_ns, order, wire.CANCELLED, wire.NO_REASON, [],
                     client_order_id=req.client_order_id)

    def _replace(self, session: Any, now_ns: int, req: "wire.ReplaceOrder") -> None:
        order, reason = self._owned_order(session, req.instrument, req.order_id)
        if order is None:
            pass
        elif not 0 < req.new_quantity <= wire.MAX_QUANTITY:
            reason = wire.BAD_QUANTITY
        elif not 0 < req.new_price <= wire.MAX_PRICE:
            reason = wire.BAD_PRICE
        if reason != wire.NO_REASON:
            self._reject(session, now_ns, reason, req.instrument, req.order_id, req.client_order_id)
            return
        book = self.books[order.instrument]
        fills: List[Tuple[int, int, int]] = []
        if req.new_price == order.price and req.new_quantity <= order.leaves_qty:
            order.leaves_qty = req.new_quantity          # same price, smaller: keeps its place
        else:
            book.side_of(order).remove(order)            # loses priority; may trade at once
            order.price = req.new_price
            order.leaves_qty = req.new_quantity
            fills = self._match(book, order, now_ns)
            if order.leaves_qty == 0:
                self._cancel_timer(order)
                self._finish(order, wire.FILLED)
                self._report(session, now_ns, order, wire.FILLED, wire.NO_REASON, fills,
                             client_order_id=req.client_order_id)
                return
            book.side_of(order).add(order)
        self._report(session, now_ns, order, wire.REPLACED, wire.NO_REASON, fills,
                     client_order_id=req.client_order_id)

    # ----- matching -------------------------------------------------------------------------

    def _match(self, book: OrderBook, order: Order, now_ns: int) -> List[Tuple[int, int, int]]:
        """Trade ``order`` against the opposite side while prices cross: price, then time."""
        opposite = book.opposite_of(order)
        fills: List[Tuple[int, int, int]] = []
        while order.leaves_qty > 0:
            best = opposite.best_price()
            if best is None or not book.crosses(order, best):
                break
            resting = opposite.first_at(best)
            if resting.expired_at(now_ns):      # its timer has not fired yet: expire, don't fill
                self._cancel_timer(resting)
                self._expire(resting, now_ns)
                continue
            qty = min(order.leaves_qty, resting.leaves_qty)
            match_id = self.next_match_id
            self.next_match_id += 1
            order.leaves_qty -= qty
            order.filled_qty += qty
            resting.leaves_qty -= qty
            resting.filled_qty += qty
            self.fills += 1
            self.volume += qty
            fills.append((match_id, best, qty))
            if resting.leaves_qty == 0:
                opposite.remove(resting)
                self._cancel_timer(resting)
                self._finish(resting, wire.FILLED)
            self._notify_owner(resting, wire.encode_fill(
                resting.side, resting.instrument, resting.order_id, resting.client_order_id,
                match_id, best, qty, resting.leaves_qty, now_ns))
        return fills

    def _rest(self, book: OrderBook, order: Order) -> None:
        book.side_of(order).add(order)
        self.open_orders[order.order_id] = order    # a GTT order's timer was set on arrival

    def _expire(self, order: Order, now_ns: int) -> None:
        self.books[order.instrument].side_of(order).remove(order)
        self._finish(order, wire.EXPIRED)
        self._notify_owner(order, wire.encode_execution_report(
            wire.EXPIRED, wire.NO_REASON, order.instrument, order.order_id, order.client_order_id,
            order.price, 0, 0, now_ns))

    def _finish(self, order: Order, status: int) -> None:
        """Move an order out of the open set into the bounded record of finished orders."""
        self.open_orders.pop(order.order_id, None)
        self.done_orders[order.order_id] = (order.instrument, status, order.filled_qty)
        while len(self.done_orders) > self.max_done_orders:
            self.done_orders.popitem(last=False)
            self.done_evicted += 1

    def _cancel_timer(self, order: Order) -> None:
        if order.tif == wire.GTT:
            self.cluster.cancel_timer(order.order_id)

    # ----- replies --------------------------------------------------------------------------

    def _owned_order(self, session: Any, instrument: int, order_id: int) -> Tuple[Optional[Order], int]:
        order = self.open_orders.get(order_id)
        if order is None or order.instrument != instrument:
            return None, wire.UNKNOWN_ORDER
        if order.session_id != session.id:
            return None, wire.NOT_OWNER
        return order, wire.NO_REASON

    def _report(self, session: Any, now_ns: int, order: Order, status: int, reason: int,
                fills: List[Tuple[int, int, int]], client_order_id: Optional[int] = None) -> None:
        """The one reply to a request; fills beyond MAX_FILLS_IN_REPORT follow as FILLs."""
        coid = order.client_order_id if client_order_id is None else client_order_id
        head = fills[:wire.MAX_FILLS_IN_REPORT]
        leaves = order.leaves_qty if status in (wire.ACCEPTED, wire.REPLACED) else 0
        self._offer(session, wire.encode_execution_report(
            status, reason, order.instrument, order.order_id, coid, order.price, leaves,
            sum(f[2] for f in fills), now_ns, head))
        for match_id, price, qty in fills[wire.MAX_FILLS_IN_REPORT:]:
            self._offer(session, wire.encode_fill(order.side, order.instrument, order.order_id,
                                                  coid, match_id, price, qty, leaves, now_ns))

    def _reject(self, session: Any, now_ns: int, reason: int, instrument: int, order_id: int,
                client_order_id: int) -> None:
        self.rejects += 1
        self._offer(session, wire.encode_execution_report(
            wire.REJECTED, reason, instrument, order_id, client_order_id, 0, 0, 0, now_ns))

    def _notify_owner(self, order: Order, payload: bytes) -> None:
        # Deferred so the submitter's reply is the first message it gets for its request,
        # even when it traded with its own resting order.
        self._notices.append((order.session_id, payload))

    def _send_notices(self) -> None:
        notices, self._notices = self._notices, []
        for session_id, payload in notices:
            session = self.cluster.get_client_session(session_id)
            if session is not None:
                self._offer(session, payload)

    def _offer(self, session: Any, payload: bytes) -> None:
        if session.offer(payload) < 0:
            self.egress_failures += 1

    def _book(self, instrument: int) -> OrderBook:
        book = self.books.get(instrument)
        if book is None:
            book = self.books[instrument] = OrderBook(instrument)
        return book

    # ----- queries ------------------------------------------------------------------------

    def order_state(self, order_id: int) -> Optional[OrderState]:
        """Resting or finished order (finished ones until evicted from the bounded record)."""
        order = self.open_orders.get(order_id)
        if order is not None:
            return OrderState(order_id, order.instrument, wire.ACCEPTED, order.leaves_qty,
                              order.filled_qty)
        done = self.done_orders.get(order_id)
        if done is None:
            return None
        instrument, status, filled = done
        return OrderState(order_id, instrument, status, 0, filled)

    def state_hash(self) -> str:
        """Hex digest of the canonical state: equal on members that applied the same log."""
        return hashlib.blake2b(self.canonical_state(), digest_size=16).hexdigest()

    # ----- canonical state (snapshot format) --------------------------------------------------

    def canonical_state(self) -> bytes:
        """The book as bytes with one fixed order: instruments ascending; bids best first, then
        asks best first, each level oldest first (so restore keeps time priority); finished
        orders oldest first. Empty books are left out, so they cannot change the hash."""
        books = [book for _, book in sorted(self.books.items()) if book.order_count]
        parts = [_SNAP_HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, self.next_order_id,
                                   self.next_match_id, self.requests, self.rejects, self.fills,
                                   self.volume, self.done_evicted, len(books),
                                   len(self.done_orders))]
        for book in books:
            parts.append(_SNAP_BOOK.pack(book.instrument, book.order_count))
            for side in (book.bids, book.asks):
                for o in side.orders_by_priority():
                    parts.append(_SNAP_ORDER.pack(o.order_id, o.session_id, o.client_order_id,
                                                  o.side, o.tif, o.price, o.leaves_qty,
                                                  o.filled_qty, o.expire_ns))
        for order_id, (instrument, status, filled) in self.done_orders.items():
            parts.append(_SNAP_DONE.pack(order_id, instrument, status, filled))
        return b"".join(parts)

    def _restore(self, data: bytes) -> None:
        view = memoryview(data)
        if len(view) < _SNAP_HEADER.size:
            raise ValueError("matching engine snapshot is truncated (no header)")
        (magic, version, self.next_order_id, self.next_match_id, self.requests, self.rejects,
         self.fills, self.volume, self.done_evicted, n_books, n_done) = _SNAP_HEADER.unpack_from(view)
        if magic != SNAPSHOT_MAGIC or version != SNAPSHOT_VERSION:
            raise ValueError(f"not a matching engine snapshot (magic {magic!r}, version {version})")
        self.books.clear()
        self.open_orders.clear()
        self.done_orders.clear()
        offset = _SNAP_HEADER.size
        try:
            for _ in range(n_books):
                instrument, count = _SNAP_BOOK.unpack_from(view, offset)
                offset += _SNAP_BOOK.size
                book = self._book(instrument)
                for _ in range(count):
                    (order_id, session_id, coid, side, tif, price, leaves, filled,
                     expire_ns) = _SNAP_ORDER.unpack_from(view, offset)
                    offset += _SNAP_ORDER.size
                    order = Order(order_id, session_id, coid, instrument, side, tif, price,
                                  leaves, filled, expire_ns)
                    book.side_of(order).add(order)      # same order as written: same priority
                    self.open_orders[order_id] = order
            for _ in range(n_done):
                order_id, instrument, status, filled = _SNAP_DONE.unpack_from(view, offset)
                offset += _SNAP_DONE.size
                self.done_orders[order_id] = (instrument, status, filled)
        except struct.error as exc:
            raise ValueError(f"matching engine snapshot is truncated at byte {offset}") from exc
        if offset != len(view):
            raise ValueError(f"matching engine snapshot has {len(view) - offset} trailing bytes")
