"""Trades to time bars, two ways that give identical results.

* :func:`bars_from_trades` aggregates a whole trades table at once (vectorized).
* :class:`BarAggregator` takes one trade at a time (the engine's live path), keeps one
  open bar per symbol (bounded memory) and emits a bar when it closes.

Both accumulate each bar's sums (volume, buy volume, price x size) sequentially in trade
order, so they agree bit for bit, not just approximately; the vectorized one adds the j-th
trade of every bar in round j instead of using numpy's pairwise reductions, whose rounding
would differ. Bars exist only for intervals that had trades; a bar starts at
``floor(ts_ns / interval) * interval``.

Ordering policy: :func:`bars_from_trades` sorts by (symbol, time) stably. The incremental
aggregator expects non-decreasing time per symbol; a trade older than the last one it saw
for that symbol is counted in ``late_trades`` and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from feature_store.errors import DataValidationError
from feature_store.records import BAR_COLUMNS, NS_PER_S, Bar, Trade

__all__ = ["BarAggregator", "bars_from_trades", "trades_from_bars"]


def bars_from_trades(trades: pd.DataFrame, interval_s: int = 60) -> pd.DataFrame:
    """Aggregate a trades table (columns as in ``TRADE_COLUMNS``) into bars.

    Args:
        trades: one row per trade; at least ``symbol, ts_ns, price, size, side``.
        interval_s: bar length in seconds.

    Returns:
        A bars table with the columns ``BAR_COLUMNS``, sorted by symbol and start time.

    Raises:
        DataValidationError: ``interval_s`` is not positive.
    """
    if interval_s <= 0:
        raise DataValidationError("bars_from_trades", None, f"interval_s must be > 0, got {interval_s}")
    if len(trades) == 0:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in BAR_COLUMNS})
    interval_ns = interval_s * NS_PER_S
    codes, names = pd.factorize(trades["symbol"], sort=True)
    ts = trades["ts_ns"].to_numpy(np.int64)
    order = np.lexsort((ts, codes))  # stable: ties keep their input order
    symbols = codes[order]
    ts = ts[order]
    price = trades["price"].to_numpy(np.float64)[order]
    size = trades["size"].to_numpy(np.float64)[order]
    is_buy = (trades["side"] == "buy").to_numpy(bool)[order]
    start = (ts // interval_ns) * interval_ns

    new_group = np.ones(len(ts), dtype=bool)
    new_group[1:] = (symbols[1:] != symbols[:-1]) | (start[1:] != start[:-1])
    first = np.flatnonzero(new_group)
    last = np.append(first[1:], len(ts)) - 1
    counts = last - first + 1

    volume, buy_volume, notional = _sequential_sums(first, counts, price, size, is_buy)
    return pd.DataFrame(
        {
            "symbol": names.take(symbols[first]),
            "start_ns": start[first],
            "interval_s": np.full(len(first), interval_s, dtype=np.int64),
            "open": price[first],
            "high": np.maximum.reduceat(price, first),
            "low": np.minimum.reduceat(price, first),
            "close": price[last],
            "volume": volume,
            "buy_volume": buy_volume,
            "vwap": notional / volume,
            "trades": counts.astype(np.int64),
        }
    )


def _sequential_sums(
    first: np.ndarray, counts: np.ndarray, price: np.ndarray, size: np.ndarray, is_buy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Round j adds the j-th trade of every bar that has more than j trades. Bars are ranked
    # longest first so that the active ones are always a prefix of that ranking.
    rank = np.argsort(-counts, kind="stable")
    ranked_first = first[rank]
    ranked_counts = counts[rank]
    volume = np.zeros(len(first))
    buy_volume = np.zeros(len(first))
    notional = np.zeros(len(first))
    for j in range(int(ranked_counts[0])):
        active = int(np.searchsorted(-ranked_counts, -j, side="left"))
        idx = ranked_first[:active] + j
        q = size[idx]
        volume[:active] += q
        buy_volume[:active] += np.where(is_buy[idx], q, 0.0)
        notional[:active] += price[idx] * q
    out = (np.empty_like(volume), np.empty_like(volume), np.empty_like(volume))
    for target, ranked in zip(out, (volume, buy_volume, notional), strict=True):
        target[rank] = ranked
    return out


def _dtype(column: str) -> str:
    if column == "symbol":
        return "object"
    return "int64" if column in ("start_ns", "interval_s", "trades") else "float64"


@dataclass(slots=True)
class _OpenBar:
    start_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    buy_volume: float
    notional: float
    trades: int


class BarAggregator:
    """Incremental trades-to-bars for many symbols, O(1) per trade, one open bar per symbol.

    Example::

        agg = BarAggregator(interval_s=60)
        for trade in feed:
            for bar in agg.add(trade):
                handle(bar)
        for bar in agg.flush(now_ns):   # close bars whose interval has ended
            handle(bar)
    """

    def __init__(self, interval_s: int = 60) -> None:
        if interval_s <= 0:
            raise DataValidationError("BarAggregator", None, f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self._interval_ns = interval_s * NS_PER_S
        self._open: dict[str, _OpenBar] = {}
        self._last_ts: dict[str, int] = {}
        self.late_trades = 0

    def add(self, trade: Trade) -> list[Bar]:
        """Add one trade; return the bar it closed (a list of zero or one bars)."""
        start = (trade.ts_ns // self._interval_ns) * self._interval_ns
        current = self._open.get(trade.symbol)
        q = trade.size
        buy = q if trade.side == "buy" else 0.0
        if trade.ts_ns < self._last_ts.get(trade.symbol, trade.ts_ns):
            self.late_trades += 1
            return []
        self._last_ts[trade.symbol] = trade.ts_ns
        if current is not None and current.start_ns == start:
            current.high = max(current.high, trade.price)
            current.low = min(current.low, trade.price)
            current.close = trade.price
            current.volume += q
            current.buy_volume += buy
            current.notional += trade.price * q
            current.trades += 1
            return []
        closed = [] if current is None else [self._bar(trade.symbol, current)]
        self._open[trade.symbol] = _OpenBar(
            start, trade.price, trade.price, trade.price, trade.price, q, buy, trade.price * q, 1
        )
        return closed

    def flush(self, now_ns: int | None = None) -> list[Bar]:
        """Close and return open bars whose interval ended at or before ``now_ns`` (all if None)."""
        done = [
            symbol for symbol, bar in self._open.items() if now_ns is None or bar.start_ns + self._interval_ns <= now_ns
        ]
        return [self._bar(symbol, self._open.pop(symbol)) for symbol in done]

    def _bar(self, symbol: str, b: _OpenBar) -> Bar:
        return Bar(
            symbol,
            b.start_ns,
            self.interval_s,
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume,
            b.buy_volume,
            b.notional / b.volume,
            b.trades,
        )


def trades_from_bars(bars: pd.DataFrame, venue: str = "bars") -> list[Trade]:
    """Four trades per bar standing in for the trades of an OHLCV-only source.

    A backtest that fills orders against trades (as the engine's paper broker does) needs
    them: each bar becomes its open, its extreme on the way (the low first when the bar
    closed up, the high first when it closed down), the other extreme and its close, at the
    bar's start and one, two and three quarters into it, each a quarter of the volume (a
    bar without volume gets one unit, so orders can still fill at its prices). The side is
    the direction of the move into the price (``buy`` at the open). Sorted by time, then
    symbol, as stored trades are replayed.
    """
    if bars.empty:
        return []
    data = bars.sort_values(["start_ns", "symbol"], kind="stable")
    start = data["start_ns"].to_numpy(np.int64)
    quarter = data["interval_s"].to_numpy(np.int64) * NS_PER_S // 4
    up = data["close"].to_numpy(np.float64) >= data["open"].to_numpy(np.float64)
    low, high = data["low"].to_numpy(np.float64), data["high"].to_numpy(np.float64)
    path = np.stack(
        [data["open"].to_numpy(np.float64), np.where(up, low, high), np.where(up, high, low), data["close"].to_numpy()],
        axis=1,
    )
    volume = data["volume"].to_numpy(np.float64)
    size = np.where(volume > 0, volume / 4.0, 1.0)
    symbols = data["symbol"].tolist()
    out = []
    for i, symbol in enumerate(symbols):
        for k in range(4):
            ts = int(start[i] + k * quarter[i])
            price = float(path[i, k])
            rising = k == 0 or price >= path[i, k - 1]
            out.append(Trade(venue, symbol, ts, price, float(size[i]), "buy" if rising else "sell", f"{ts}-{k}"))
    out.sort(key=lambda t: (t.ts_ns, t.symbol))
    return out
