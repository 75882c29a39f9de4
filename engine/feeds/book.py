"""An L2 order book per symbol: price level to size, one dict per side.

Updates are O(1) per level. The best bid and ask are kept incrementally and recomputed
only when the best level itself is removed, so checking for a crossed book after every
update costs nothing on a book of thousands of levels.
"""

from __future__ import annotations

import heapq
import math

from engine.feeds.records import BookUpdate, Level

__all__ = ["OrderBook"]

_UNKNOWN = math.nan


class OrderBook:
    """One symbol's book.

    Attributes:
        bids, asks: price to size; only levels with size > 0 are kept.
        last_id: the venue update id the book is at (0 where the venue has none).
        ts_ns: time of the last update applied.
    """

    __slots__ = ("_best_ask", "_best_bid", "asks", "bids", "last_id", "symbol", "ts_ns")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self._best_bid = _UNKNOWN
        self._best_ask = _UNKNOWN
        self.last_id = 0
        self.ts_ns = 0

    def clear(self) -> None:
        """Forget every level (the book is out of sync until the next snapshot)."""
        self.bids = {}
        self.asks = {}
        self._best_bid = self._best_ask = _UNKNOWN
        self.last_id = 0

    def apply(self, update: BookUpdate) -> None:
        """Apply a snapshot (replaces the book) or a set of level changes."""
        if update.snapshot:
            self.bids = {p: s for p, s in update.bids if s > 0.0}
            self.asks = {p: s for p, s in update.asks if s > 0.0}
            self._best_bid = self._best_ask = _UNKNOWN
        else:
            if update.bids:
                self._best_bid = _apply_side(self.bids, update.bids, self._best_bid, True)
            if update.asks:
                self._best_ask = _apply_side(self.asks, update.asks, self._best_ask, False)
        if update.last_id:
            self.last_id = update.last_id
        self.ts_ns = update.ts_ns

    def best_bid(self) -> float | None:
        """The highest bid price, or None on an empty side."""
        if self._best_bid != self._best_bid:  # NaN: unknown
            self._best_bid = max(self.bids) if self.bids else _UNKNOWN
        return None if self._best_bid != self._best_bid else self._best_bid

    def best_ask(self) -> float | None:
        """The lowest ask price, or None on an empty side."""
        if self._best_ask != self._best_ask:
            self._best_ask = min(self.asks) if self.asks else _UNKNOWN
        return None if self._best_ask != self._best_ask else self._best_ask

    def crossed(self) -> bool:
        """True when the best bid is at or above the best ask: the book is wrong."""
        bid, ask = self.best_bid(), self.best_ask()
        return bid is not None and ask is not None and bid >= ask

    def top(self, depth: int) -> tuple[list[Level], list[Level]]:
        """The best ``depth`` levels of each side, best first."""
        bids = heapq.nlargest(depth, self.bids.items())
        asks = heapq.nsmallest(depth, self.asks.items())
        return bids, asks

    def levels(self) -> tuple[dict[float, float], dict[float, float]]:
        """Copies of both sides (for comparing books in tests and tools)."""
        return dict(self.bids), dict(self.asks)


def _apply_side(side: dict[float, float], changes: list[Level], best: float, is_bid: bool) -> float:
    for price, size in changes:
        if size == 0.0:
            if side.pop(price, None) is not None and price == best:
                best = _UNKNOWN
        else:
            side[price] = size
            if best == best and (price > best if is_bid else price < best):
                best = price
    return best
