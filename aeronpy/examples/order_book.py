"""Limit order book data structures for the matching-engine example (no cluster code here).

One side of a book is a sorted list of prices plus, per price, an insertion-ordered ``dict``
of resting orders. Python dicts keep insertion order, so the first order of a level is the
oldest (time priority), removing any order is O(1), and "loses priority" is delete plus
re-insert. Prices are kept sorted with :mod:`bisect`; a new price level costs O(levels),
which is cheap for the few hundred live levels a real instrument has.
"""
from __future__ import annotations

import bisect
from typing import Dict, Iterator, List, Optional

from aeronpy.examples.orders import BUY, GTT


class Order:
    """A resting (or arriving) limit order. Quantities are integer lots, prices integer ticks."""

    __slots__ = ("order_id", "session_id", "client_order_id", "instrument", "side", "tif",
                 "price", "leaves_qty", "filled_qty", "expire_ns")

    def __init__(self, order_id: int, session_id: int, client_order_id: int, instrument: int,
                 side: int, tif: int, price: int, leaves_qty: int, filled_qty: int = 0,
                 expire_ns: int = 0) -> None:
        self.order_id = order_id
        self.session_id = session_id
        self.client_order_id = client_order_id
        self.instrument = instrument
        self.side = side
        self.tif = tif
        self.price = price
        self.leaves_qty = leaves_qty
        self.filled_qty = filled_qty
        self.expire_ns = expire_ns

    def expired_at(self, now_ns: int) -> bool:
        return self.tif == GTT and self.expire_ns <= now_ns

    def __repr__(self) -> str:
        side = "BUY" if self.side == BUY else "SELL"
        return (f"Order({self.order_id} {side} {self.leaves_qty}@{self.price} "
                f"filled={self.filled_qty} session={self.session_id})")


class BookSide:
    """Price levels of one side; ``best`` is the highest bid or the lowest ask."""

    __slots__ = ("is_bid", "_prices", "_levels", "order_count")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self._prices: List[int] = []                  # ascending
        self._levels: Dict[int, Dict[int, Order]] = {}
        self.order_count = 0

    def best_price(self) -> Optional[int]:
        if not self._prices:
            return None
        return self._prices[-1] if self.is_bid else self._prices[0]

    def first_at(self, price: int) -> Order:
        """The oldest order at ``price`` (which must have a level)."""
        return next(iter(self._levels[price].values()))

    def add(self, order: Order) -> None:
        """Append at the back of its price level: the newest order has the lowest priority."""
        level = self._levels.get(order.price)
        if level is None:
            level = self._levels[order.price] = {}
            bisect.insort(self._prices, order.price)
        level[order.order_id] = order
        self.order_count += 1

    def remove(self, order: Order) -> None:
        level = self._levels[order.price]
        del level[order.order_id]
        self.order_count -= 1
        if not level:
            del self._levels[order.price]
            del self._prices[bisect.bisect_left(self._prices, order.price)]

    def orders_by_priority(self) -> Iterator[Order]:
        """Every order, best price first, oldest first within a price."""
        prices = reversed(self._prices) if self.is_bid else iter(self._prices)
        for price in prices:
            yield from self._levels[price].values()

    def depth(self, levels: int = 5) -> List[tuple]:
        """(price, total quantity, order count) of the best ``levels`` levels."""
        prices = self._prices[::-1] if self.is_bid else self._prices
        out = []
        for price in prices[:levels]:
            level = self._levels[price]
            out.append((price, sum(o.leaves_qty for o in level.values()), len(level)))
        return out


class OrderBook:
    """Both sides of one instrument's book."""

    __slots__ = ("instrument", "bids", "asks")

    def __init__(self, instrument: int) -> None:
        self.instrument = instrument
        self.bids = BookSide(is_bid=True)
        self.asks = BookSide(is_bid=False)

    def side_of(self, order: Order) -> BookSide:
        return self.bids if order.side == BUY else self.asks

    def opposite_of(self, order: Order) -> BookSide:
        return self.asks if order.side == BUY else self.bids

    @property
    def order_count(self) -> int:
        return self.bids.order_count + self.asks.order_count

    def crosses(self, order: Order, resting_price: int) -> bool:
        """Whether ``order`` may trade at ``resting_price`` (a buy pays at most its limit)."""
        return resting_price <= order.price if order.side == BUY else resting_price >= order.price
