"""What the replay exchange serves: a synthetic market or recorded venue sessions.

The exchange keeps its own book per symbol (prices as the venue prints them, keyed by
``Decimal``, independent of the engine's book code) so that a snapshot asked for at any
moment (a Coinbase subscription, a Binance REST depth request) matches the stream.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson

from feature_store.records import NS_PER_S, Bar
from feature_store.sources.recordings import iter_messages
from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market

__all__ = ["MarketEvent", "RawTrade", "RecordedTape", "SyntheticFeed", "VenueBook"]


class VenueBook:
    """One symbol's book as the exchange holds it: price text to size text per side."""

    __slots__ = ("asks", "bids", "update_id")

    def __init__(self) -> None:
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}
        self.update_id = 0

    def replace(self, bids: list[list[str]], asks: list[list[str]], update_id: int = 0) -> None:
        self.bids = {Decimal(p): (p, s) for p, s in bids if Decimal(s) != 0}
        self.asks = {Decimal(p): (p, s) for p, s in asks if Decimal(s) != 0}
        self.update_id = update_id

    def change(self, is_bid: bool, price: str, size: str) -> None:
        side = self.bids if is_bid else self.asks
        key = Decimal(price)
        if Decimal(size) == 0:
            side.pop(key, None)
        else:
            side[key] = (price, size)

    def snapshot(self, depth: int | None = None) -> tuple[list[list[str]], list[list[str]]]:
        """Both sides best first, as ``[[price, size], ...]``."""
        bids = [list(self.bids[k]) for k in sorted(self.bids, reverse=True)[:depth]]
        asks = [list(self.asks[k]) for k in sorted(self.asks)[:depth]]
        return bids, asks


@dataclass(frozen=True, slots=True)
class RawTrade:
    """A simulated trade not yet published (its id and book change come at publication)."""

    index: int
    ts_ns: int
    price: float
    size: float
    taker_buys: bool


@dataclass(slots=True)
class MarketEvent:
    """One synthetic event: a trade with the book change it caused.

    ``bid_changes``/``ask_changes`` are ``(price text, size text)``; size "0" removes.
    """

    symbol: str
    ts_ns: int
    price: float
    size: float
    taker_buys: bool
    trade_id: int
    bid_changes: list[tuple[str, str]]
    ask_changes: list[tuple[str, str]]


class SyntheticFeed:
    """Endless synthetic trades (and a book around them) for ``symbols`` instruments.

    The prices come from :func:`feature_store.sources.synthetic.simulate_market`, in rounds
    of ``round_s`` seconds of market time; each round continues the last prices and ids.

    Args:
        symbols: number of instruments.
        trades_per_s: average trades per symbol per market second.
        books: keep and change a book of ``levels`` levels a side around each trade.
        first_trade_id: the id before each symbol's first trade (None: the microseconds since
            the epoch at creation, so that two runs of the exchange never reuse a trade id).
    """

    def __init__(
        self,
        symbols: int = 20,
        *,
        trades_per_s: float = 2.0,
        seed: int = 7,
        books: bool = True,
        levels: int = 10,
        round_s: int = 120,
        first_trade_id: int | None = None,
    ) -> None:
        if symbols < 1:
            raise ValueError(f"symbols must be >= 1, got {symbols}")
        if not trades_per_s > 0:
            raise ValueError(f"trades_per_s must be > 0, got {trades_per_s}")
        self.config = SyntheticMarketConfig(
            symbols=symbols,
            days=round_s / 86400,
            seed=seed,
            interval_s=1,
            trades_per_bar=trades_per_s,
            news_per_symbol_per_day=0.0,
        )
        self.books_on = books
        self.levels = levels
        self._rng = random.Random(seed)
        first = simulate_market(self.config)
        self.symbols: tuple[str, ...] = first.symbols
        self._first = first
        self._round = 0
        self._scale = np.ones(len(self.symbols))
        base = time.time_ns() // 1000 if first_trade_id is None else first_trade_id
        self.trade_ids = [base] * len(self.symbols)  # the last id of each symbol
        self.published = 0  # trades realized so far
        self.books = {s: VenueBook() for s in self.symbols}
        self._ticks: list[Decimal] = []
        self._decimals: list[int] = []
        first_prices = first.trades.groupby("symbol", sort=False)["price"].first()
        for symbol in self.symbols:
            price = float(first_prices.get(symbol, 100.0))
            exponent = math.floor(math.log10(price)) - 4
            self._ticks.append(Decimal(1).scaleb(exponent))
            self._decimals.append(max(0, -exponent))
        self._last_price = np.ones(len(self.symbols))

    def history(self, bars: int, bar_seconds: int, end_ns: int) -> list[Bar]:
        """``bars`` bars of every symbol before ``end_ns`` (an interval boundary), as a venue's
        klines endpoint would serve them: a simulation of its own, scaled so that each symbol's
        last close is its first live price. The engine warms its features up with them."""
        import pandas as pd

        interval_ns = bar_seconds * NS_PER_S
        span_s = bars * bar_seconds
        config = replace(
            self.config, seed=self.config.seed + 100_003, days=span_s / 86400, start_ns=end_ns - span_s * NS_PER_S
        )
        trades = simulate_market(config).trades
        frame = pd.DataFrame(
            {
                "symbol": trades["symbol"].astype(str).to_numpy(),
                "start": trades["ts_ns"].to_numpy(np.int64) // interval_ns * interval_ns,
                "price": trades["price"].to_numpy(np.float64),
                "size": trades["size"].to_numpy(np.float64),
            }
        )
        frame["buy"] = np.where((trades["side"] == "buy").to_numpy(bool), frame["size"], 0.0)
        frame["pv"] = frame["price"] * frame["size"]
        agg = frame.groupby(["symbol", "start"], sort=True).agg(
            open=("price", "first"),
            high=("price", "max"),
            low=("price", "min"),
            close=("price", "last"),
            volume=("size", "sum"),
            buy_volume=("buy", "sum"),
            pv=("pv", "sum"),
            trades=("price", "size"),
        )
        first_prices = self._first.trades.groupby("symbol", sort=False)["price"].first()
        last_close = agg.groupby(level="symbol")["close"].last()
        first = first_prices.reindex(last_close.index).fillna(last_close)
        scales = {str(k): float(v) for k, v in (first / last_close).items()}
        out: list[Bar] = []
        for (symbol, start), row in zip(agg.index, agg.itertuples(index=False), strict=True):
            scale = scales[str(symbol)]
            vwap = min(max(row.pv / row.volume * scale, row.low * scale), row.high * scale)
            out.append(
                Bar(
                    str(symbol),
                    int(start),
                    bar_seconds,
                    row.open * scale,
                    row.high * scale,
                    row.low * scale,
                    row.close * scale,
                    float(row.volume),
                    min(float(row.buy_volume), float(row.volume)),
                    vwap,
                    int(row.trades),
                )
            )
        out.sort(key=lambda b: (b.start_ns, b.symbol))
        return out

    def rounds(self) -> Iterator[Iterator[RawTrade]]:
        """Successive rounds of events in market-time order (each round a new simulation)."""
        while True:
            market = (
                self._first
                if self._round == 0
                else simulate_market(
                    replace(
                        self.config,
                        seed=self.config.seed + self._round,
                        start_ns=self.config.start_ns + self._round * self._span(),
                    )
                )
            )
            self._round += 1
            yield self._events(market.trades)

    def _span(self) -> int:
        return int(self.config.days * 86400) * NS_PER_S

    def _events(self, trades: object) -> Iterator[RawTrade]:
        import pandas as pd

        assert isinstance(trades, pd.DataFrame)
        index = {s: i for i, s in enumerate(self.symbols)}
        codes = trades["symbol"].map(index).to_numpy(np.int64)
        ts = trades["ts_ns"].to_numpy(np.int64)
        price = trades["price"].to_numpy(np.float64)
        size = trades["size"].to_numpy(np.float64)
        buys = (trades["side"] == "buy").to_numpy(bool)
        if self._round > 1:  # continue each symbol's price where the last round ended
            first_price = np.full(len(self.symbols), np.nan)
            order = np.unique(codes, return_index=True)
            first_price[order[0]] = price[order[1]]
            ratio = np.where(np.isfinite(first_price), self._last_price / first_price, 1.0)
            self._scale = ratio
        self._last_price = np.ones(len(self.symbols))
        for k in range(len(ts)):
            i = int(codes[k])
            p = float(price[k] * self._scale[i])
            self._last_price[i] = p
            yield RawTrade(i, int(ts[k]), p, float(size[k]), bool(buys[k]))

    def realize(self, raw: RawTrade) -> MarketEvent:
        """Make ``raw`` happen: give it the next trade id and move the book around it.

        Called when the trade is published, so that ids and books never run ahead of what
        clients were sent.
        """
        i = raw.index
        self.trade_ids[i] += 1
        self.published += 1
        bids, asks = self._move_book(i, raw.price) if self.books_on else ([], [])
        return MarketEvent(
            self.symbols[i], raw.ts_ns, raw.price, raw.size, raw.taker_buys, self.trade_ids[i], bids, asks
        )

    def _move_book(self, i: int, price: float) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        book = self.books[self.symbols[i]]
        tick, decimals = self._ticks[i], self._decimals[i]
        mid = int(Decimal(repr(price)) / tick)
        old_bids, old_asks = set(book.bids), set(book.asks)
        new_bids = {tick * (mid - 1 - j) for j in range(self.levels)}
        new_asks = {tick * (mid + 1 + j) for j in range(self.levels)}
        rng = self._rng
        bid_changes = [(f"{p:.{decimals}f}", "0") for p in old_bids - new_bids]
        ask_changes = [(f"{p:.{decimals}f}", "0") for p in old_asks - new_asks]
        for p in sorted(new_bids - old_bids):
            bid_changes.append((f"{p:.{decimals}f}", f"{rng.uniform(0.1, 50):.4f}"))
        for p in sorted(new_asks - old_asks):
            ask_changes.append((f"{p:.{decimals}f}", f"{rng.uniform(0.1, 50):.4f}"))
        touched = tick * (mid - 1) if rng.random() < 0.5 else tick * (mid + 1)  # one resize at the top
        if touched in old_bids and touched in new_bids:
            bid_changes.append((f"{touched:.{decimals}f}", f"{rng.uniform(0.1, 50):.4f}"))
        elif touched in old_asks and touched in new_asks:
            ask_changes.append((f"{touched:.{decimals}f}", f"{rng.uniform(0.1, 50):.4f}"))
        for p_text, s_text in bid_changes:
            book.change(True, p_text, s_text)
        for p_text, s_text in ask_changes:
            book.change(False, p_text, s_text)
        book.update_id += 1
        return bid_changes, ask_changes


class RecordedTape:
    """A venue recording, replayed from its start to every connection that opens."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.messages = list(iter_messages(self.path))
        if not self.messages:
            raise ValueError(f"no messages in recording {self.path}")

    @staticmethod
    def rest_depth(path: str | Path) -> dict[str, bytes]:
        """Recorded REST depth bodies by venue symbol (``symbol=`` of each request URL)."""
        out: dict[str, bytes] = {}
        for raw in Path(path).read_bytes().splitlines():
            head, sep, body = raw.partition(b": ")
            if not sep or b" -> " not in head:
                continue
            url = head.split(b" -> ", 1)[0].decode()
            symbol = url.split("symbol=", 1)[1].split("&", 1)[0] if "symbol=" in url else ""
            orjson.loads(body)  # refuse a broken file at start, not at first request
            out[symbol] = body
        return out
