"""Normalized market records shared by every part of the platform.

Timestamps are UTC epoch nanoseconds. Prices and sizes are float64 (features and models
work in floats; money in the portfolio is ``Decimal`` and lives in the engine).

Tables of many records travel as pandas DataFrames whose columns are exactly the record's
fields (``TRADE_COLUMNS``, ``BAR_COLUMNS``, ``NEWS_COLUMNS``); the helpers here convert
between the two.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from typing import Literal

import numpy as np
import pandas as pd

__all__ = [
    "BAR_COLUMNS",
    "NEWS_COLUMNS",
    "SYMBOL_PATTERN",
    "TRADE_COLUMNS",
    "Bar",
    "News",
    "Side",
    "Trade",
    "bars_frame",
    "bars_from_frame",
    "news_frame",
    "trades_frame",
    "trades_from_frame",
]

Side = Literal["buy", "sell", "unknown"]
NS_PER_S = 1_000_000_000
# A symbol as every store and API takes it: letters, digits and . _ / - (BTC-USD, BRK.B, ETH/USD).
SYMBOL_PATTERN = r"^[A-Za-z0-9._/\-]{1,64}$"


@dataclass(frozen=True, slots=True)
class Trade:
    """One executed trade.

    Attributes:
        venue: where it traded (``coinbase``, ``binance``, ``synthetic``, ``file``).
        symbol: instrument, e.g. ``BTC-USD``.
        ts_ns: exchange time, UTC epoch nanoseconds.
        price: trade price, > 0.
        size: traded quantity in the base asset, > 0.
        side: the taker's side (the aggressor), or ``unknown`` where the source lacks it.
        trade_id: the venue's trade identifier, unique per (venue, symbol).
    """

    venue: str
    symbol: str
    ts_ns: int
    price: float
    size: float
    side: Side
    trade_id: str


@dataclass(frozen=True, slots=True)
class Bar:
    """An OHLCV time bar covering ``[start_ns, start_ns + interval_s)``.

    Attributes:
        buy_volume: volume of trades whose taker bought (order-flow imbalance features).
        vwap: volume-weighted average price of the bar's trades.
        trades: number of trades in the bar.
    """

    symbol: str
    start_ns: int
    interval_s: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    buy_volume: float
    vwap: float
    trades: int


@dataclass(frozen=True, slots=True)
class News:
    """A news headline.

    Attributes:
        ts_ns: publication time, UTC epoch nanoseconds; training joins use this time.
        symbols: the instruments the headline is about (at least one).
        headline: the text.
        source: where it came from.
    """

    ts_ns: int
    symbols: tuple[str, ...]
    headline: str
    source: str


TRADE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Trade))
BAR_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Bar))
NEWS_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(News))

_TRADE_DTYPES = {"ts_ns": np.int64, "price": np.float64, "size": np.float64}
_BAR_DTYPES = {
    "start_ns": np.int64,
    "interval_s": np.int64,
    "open": np.float64,
    "high": np.float64,
    "low": np.float64,
    "close": np.float64,
    "volume": np.float64,
    "buy_volume": np.float64,
    "vwap": np.float64,
    "trades": np.int64,
}


def trades_frame(trades: Iterable[Trade] = ()) -> pd.DataFrame:
    """A DataFrame with one row per trade and the columns ``TRADE_COLUMNS``."""
    frame = pd.DataFrame([astuple(t) for t in trades], columns=list(TRADE_COLUMNS))
    return frame.astype(_TRADE_DTYPES)


def bars_frame(bars: Iterable[Bar] = ()) -> pd.DataFrame:
    """A DataFrame with one row per bar and the columns ``BAR_COLUMNS``."""
    frame = pd.DataFrame([astuple(b) for b in bars], columns=list(BAR_COLUMNS))
    return frame.astype(_BAR_DTYPES)


def news_frame(news: Iterable[News] = ()) -> pd.DataFrame:
    """A DataFrame with one row per headline and the columns ``NEWS_COLUMNS``."""
    frame = pd.DataFrame([astuple(n) for n in news], columns=list(NEWS_COLUMNS))
    return frame.astype({"ts_ns": np.int64})


def trades_from_frame(frame: pd.DataFrame) -> list[Trade]:
    """Records from a trades DataFrame (the inverse of :func:`trades_frame`)."""
    cols = [frame[c].tolist() for c in TRADE_COLUMNS]
    return [
        Trade(venue, symbol, int(ts), float(price), float(size), side, str(trade_id))
        for venue, symbol, ts, price, size, side, trade_id in zip(*cols, strict=True)
    ]


def bars_from_frame(frame: pd.DataFrame) -> list[Bar]:
    """Records from a bars DataFrame (the inverse of :func:`bars_frame`)."""
    cols = [frame[c].tolist() for c in BAR_COLUMNS]
    return [
        Bar(s, int(t), int(i), float(o), float(h), float(lo), float(c), float(v), float(bv), float(vw), int(n))
        for s, t, i, o, h, lo, c, v, bv, vw, n in zip(*cols, strict=True)
    ]
