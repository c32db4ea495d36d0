"""Wire format of the matching-engine example: what clients send and what they get back.

Fixed-layout little-endian records packed with :mod:`struct`, one record per cluster message
(plus repeated fill records inside an execution report). Fixed layouts keep decoding cheap
and make every message's size known, which matters when each byte is replicated three times.
The first byte of every message is its type.

Client -> engine (the message a client ``offer()``s or ``request()``s):

==========  =====  ======================================================================
NEW_ORDER   40 B   type, side, tif, pad, instrument u32, client_order_id u64, price i64,
                   quantity i64, expire_ns i64 (cluster time; good-till-time orders only)
CANCEL      24 B   type, pad x3, instrument u32, client_order_id u64, order_id u64
REPLACE     40 B   type, pad x3, instrument u32, client_order_id u64, order_id u64,
                   new_price i64, new_quantity i64 (the new *remaining* quantity)
==========  =====  ======================================================================

Engine -> client:

EXECUTION_REPORT (56 B + 24 B per fill): the one reply to every request, so ``request()``
returns it. type, status, reason, fill_count u8, instrument u32, order_id u64 (assigned by the
engine; 0 when rejected before one was assigned), client_order_id u64, price i64, leaves_qty
i64 (still resting), filled_qty i64 (filled by this request, all fills), timestamp_ns i64;
then ``fill_count`` fills of (match_id u64, price i64, qty i64). At most
``MAX_FILLS_IN_REPORT`` fills ride in the report; any further ones follow as FILL messages.
Unsolicited reports (status EXPIRED) tell an owner that its good-till-time order expired.

FILL (64 B): a fill of a resting order, sent to its owner's session if that is open (and
overflow fills of an aggressive order). type, side, pad x2, instrument u32, order_id u64,
client_order_id u64, match_id u64, price i64, qty i64, leaves_qty i64, timestamp_ns i64.

Prices are integer ticks (> 0) and quantities integer lots (> 0): no floats in the book.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

# message types
NEW_ORDER = 1
CANCEL = 2
REPLACE = 3
EXECUTION_REPORT = 65
FILL = 66

# sides and time-in-force
BUY = 1
SELL = 2
GTC = 0        # good till cancelled
GTT = 1        # good till time: expires at expire_ns (cluster time)
IOC = 2        # immediate or cancel: whatever does not fill at once is cancelled

# execution report status
ACCEPTED = 1   # resting in the book (possibly after partial fills)
FILLED = 2     # completely filled
CANCELLED = 3  # cancelled on request, or the unfilled rest of an IOC order
REPLACED = 4   # replace applied (still resting unless fills used it up: then FILLED)
REJECTED = 5
EXPIRED = 6    # good-till-time deadline reached
STATUS_NAMES = {ACCEPTED: "ACCEPTED", FILLED: "FILLED", CANCELLED: "CANCELLED",
                REPLACED: "REPLACED", REJECTED: "REJECTED", EXPIRED: "EXPIRED"}

# reject / cancel reasons
NO_REASON = 0
MALFORMED = 1
UNKNOWN_ORDER = 2
NOT_OWNER = 3
BAD_QUANTITY = 4
BAD_PRICE = 5
BAD_SIDE_OR_TIF = 6
EXPIRED_ON_ARRIVAL = 7
LIMIT_REACHED = 8        # max open orders or max instruments
UNKNOWN_MESSAGE = 9
IOC_REMAINDER = 10

MAX_QUANTITY = 1 << 48
MAX_PRICE = 1 << 48
MAX_FILLS_IN_REPORT = 32

_NEW = struct.Struct("<BBBxIQqqq")
_CANCEL = struct.Struct("<B3xIQQ")
_REPLACE = struct.Struct("<B3xIQQqq")
_REPORT = struct.Struct("<BBBBIQQqqqq")
_REPORT_FILL = struct.Struct("<Qqq")
_FILL = struct.Struct("<BBxxIQQQqqqq")
assert (_NEW.size, _CANCEL.size, _REPLACE.size, _REPORT.size, _FILL.size) == (40, 24, 40, 56, 64)


class OrderDecodeError(ValueError):
    """A message that is not a well-formed record of this format."""


@dataclass(frozen=True)
class NewOrder:
    instrument: int
    client_order_id: int
    side: int
    price: int
    quantity: int
    tif: int = GTC
    expire_ns: int = 0


@dataclass(frozen=True)
class CancelOrder:
    instrument: int
    client_order_id: int
    order_id: int


@dataclass(frozen=True)
class ReplaceOrder:
    instrument: int
    client_order_id: int
    order_id: int
    new_price: int
    new_quantity: int


@dataclass(frozen=True)
class FillRecord:
    match_id: int
    price: int
    qty: int


@dataclass(frozen=True)
class ExecutionReport:
    status: int
    reason: int
    instrument: int
    order_id: int
    client_order_id: int
    price: int
    leaves_qty: int
    filled_qty: int
    timestamp_ns: int
    fills: Tuple[FillRecord, ...] = ()

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, str(self.status))


@dataclass(frozen=True)
class Fill:
    side: int
    instrument: int
    order_id: int
    client_order_id: int
    match_id: int
    price: int
    qty: int
    leaves_qty: int
    timestamp_ns: int


Request = Union[NewOrder, CancelOrder, ReplaceOrder]
Event = Union[ExecutionReport, Fill]


def encode_new_order(instrument: int, client_order_id: int, side: int, price: int, quantity: int,
                     tif: int = GTC, expire_ns: int = 0) -> bytes:
    return _NEW.pack(NEW_ORDER, side, tif, instrument, client_order_id, price, quantity, expire_ns)


def encode_cancel(instrument: int, client_order_id: int, order_id: int) -> bytes:
    return _CANCEL.pack(CANCEL, instrument, client_order_id, order_id)


def encode_replace(instrument: int, client_order_id: int, order_id: int,
                   new_price: int, new_quantity: int) -> bytes:
    return _REPLACE.pack(REPLACE, instrument, client_order_id, order_id, new_price, new_quantity)


def encode_request(request: Request) -> bytes:
    if isinstance(request, NewOrder):
        return encode_new_order(request.instrument, request.client_order_id, request.side,
                                request.price, request.quantity, request.tif, request.expire_ns)
    if isinstance(request, CancelOrder):
        return encode_cancel(request.instrument, request.client_order_id, request.order_id)
    return encode_replace(request.instrument, request.client_order_id, request.order_id,
                          request.new_price, request.new_quantity)


def decode_request(buf) -> Request:
    """Decode a client message; raises OrderDecodeError (a ValueError) on anything malformed."""
    size = len(buf)
    if size == 0:
        raise OrderDecodeError("empty message")
    kind = buf[0]
    try:
        if kind == NEW_ORDER and size == _NEW.size:
            _, side, tif, instrument, coid, price, qty, expire_ns = _NEW.unpack_from(buf)
            return NewOrder(instrument, coid, side, price, qty, tif, expire_ns)
        if kind == CANCEL and size == _CANCEL.size:
            _, instrument, coid, order_id = _CANCEL.unpack_from(buf)
            return CancelOrder(instrument, coid, order_id)
        if kind == REPLACE and size == _REPLACE.size:
            _, instrument, coid, order_id, price, qty = _REPLACE.unpack_from(buf)
            return ReplaceOrder(instrument, coid, order_id, price, qty)
    except struct.error as exc:    # pragma: no cover - sizes are checked above
        raise OrderDecodeError(str(exc)) from exc
    raise OrderDecodeError(f"unknown message type {kind} or wrong length {size}")


def encode_execution_report(status: int, reason: int, instrument: int, order_id: int,
                            client_order_id: int, price: int, leaves_qty: int, filled_qty: int,
                            timestamp_ns: int, fills: List[Tuple[int, int, int]] = ()) -> bytes:
    """``fills``: (match_id, price, qty) tuples, at most MAX_FILLS_IN_REPORT."""
    if len(fills) > MAX_FILLS_IN_REPORT:
        raise ValueError(f"at most {MAX_FILLS_IN_REPORT} fills per report, got {len(fills)}")
    parts = [_REPORT.pack(EXECUTION_REPORT, status, reason, len(fills), instrument, order_id,
                          client_order_id, price, leaves_qty, filled_qty, timestamp_ns)]
    parts.extend(_REPORT_FILL.pack(*fill) for fill in fills)
    return b"".join(parts)


def encode_fill(side: int, instrument: int, order_id: int, client_order_id: int, match_id: int,
                price: int, qty: int, leaves_qty: int, timestamp_ns: int) -> bytes:
    return _FILL.pack(FILL, side, instrument, order_id, client_order_id, match_id, price, qty,
                      leaves_qty, timestamp_ns)


def decode_event(buf) -> Event:
    """Decode an engine -> client message; raises OrderDecodeError on anything malformed."""
    size = len(buf)
    if size == 0:
        raise OrderDecodeError("empty message")
    kind = buf[0]
    if kind == EXECUTION_REPORT and size >= _REPORT.size:
        (_, status, reason, count, instrument, order_id, coid, price, leaves, filled,
         ts) = _REPORT.unpack_from(buf)
        if size != _REPORT.size + count * _REPORT_FILL.size:
            raise OrderDecodeError(f"execution report of {size} bytes does not hold {count} fills")
        fills = tuple(FillRecord(*_REPORT_FILL.unpack_from(buf, _REPORT.size + i * _REPORT_FILL.size))
                      for i in range(count))
        return ExecutionReport(status, reason, instrument, order_id, coid, price, leaves, filled,
                               ts, fills)
    if kind == FILL and size == _FILL.size:
        return Fill(*_FILL.unpack_from(buf)[1:])
    raise OrderDecodeError(f"unknown event type {kind} or wrong length {size}")


@dataclass
class LedgerEntry:
    instrument: int
    status: int
    leaves_qty: int
    filled_qty: int = 0
    match_ids: List[int] = field(default_factory=list)


class OrderLedger:
    """A client's own record of its orders, built only from the events it received.

    Use it to check the promise "every acknowledged order is in the book or in its fills":
    after a run, each order this ledger knows must be known to the engine
    (:meth:`MatchingEngine.order_state`) with at least the quantity filled here.

    Fill notices to a resting order's owner answer another session's message, so across a
    leader failover they are delivered at least once (a new leader re-sends what it produced
    while taking over): the ledger counts each match id once, as a trading client reconciles
    by execution id. Replies to the client's own requests are exactly once.
    """

    def __init__(self) -> None:
        self.orders: Dict[int, LedgerEntry] = {}
        self.rejected = 0
        self.duplicate_fills = 0

    def apply(self, event: Event) -> None:
        if isinstance(event, ExecutionReport):
            if event.status == REJECTED or event.order_id == 0:
                self.rejected += 1
                return
            entry = self.orders.setdefault(event.order_id,
                                           LedgerEntry(event.instrument, event.status, event.leaves_qty))
            entry.status = event.status
            entry.leaves_qty = event.leaves_qty
            for f in event.fills:
                if f.match_id in entry.match_ids:
                    self.duplicate_fills += 1
                    continue
                entry.filled_qty += f.qty
                entry.match_ids.append(f.match_id)
        else:
            entry = self.orders.get(event.order_id)
            if entry is None:        # a fill can overtake nothing (same session, in order), but be lenient
                entry = self.orders.setdefault(event.order_id,
                                               LedgerEntry(event.instrument, ACCEPTED, event.leaves_qty))
            if event.match_id in entry.match_ids:    # re-sent across a failover: count it once
                self.duplicate_fills += 1
                return
            entry.filled_qty += event.qty
            entry.match_ids.append(event.match_id)
            entry.leaves_qty = min(entry.leaves_qty, event.leaves_qty)
            if event.leaves_qty == 0:
                entry.status = FILLED

    def missing_from(self, engine) -> List[str]:
        """Problems found comparing this ledger with an engine's state (empty: all is well)."""
        problems = []
        for order_id, entry in sorted(self.orders.items()):
            state = engine.order_state(order_id)
            if state is None:
                problems.append(f"order {order_id} acknowledged but unknown to the engine")
            elif state.filled_qty < entry.filled_qty:
                problems.append(f"order {order_id}: client saw {entry.filled_qty} filled, "
                                f"engine has {state.filled_qty}")
        return problems


def decode_optional(buf) -> Optional[Event]:
    """decode_event, but None for a message this format does not know (for mixed streams)."""
    try:
        return decode_event(buf)
    except OrderDecodeError:
        return None
