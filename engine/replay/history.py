"""The replay exchange's bar history, served over the venues' REST endpoints.

Binance ``/api/v3/klines`` (up to 1,000 a page), Coinbase ``/products/<id>/candles`` (up to
300 a page, newest first) and Polygon ``/v2/aggs/ticker/...`` (see
:mod:`engine.replay.polygon`). A synthetic market's history is ``history_bars`` bars
simulated before the exchange started (their last close is the first live price), then the
bars of what the exchange has published since; a replay of recordings serves the bars of the
recorded trades, at their recorded times.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import pandas as pd

from engine.feeds.binance import venue_symbol
from engine.replay import polygon
from engine.replay.market import MarketEvent, RecordedTape, SyntheticFeed
from feature_store.bars import bars_from_trades
from feature_store.records import NS_PER_S, TRADE_COLUMNS, Bar
from feature_store.sources.recordings import read_recording_trades

__all__ = ["BarHistory"]


class BarHistory:
    """Bars of the exchange's market, at any length, and the REST answers made of them.

    Args:
        synthetic: the synthetic market (or None for a replay of recordings).
        tapes: the recordings replayed.
        history_bars: bars simulated before the start, per bar length asked.
        polygon_key: the API key the aggregates endpoint accepts.
        is_open: whether the (Polygon) market is open at a time.
        rest_url: the exchange's REST URL (known once it listens).
    """

    def __init__(
        self,
        synthetic: SyntheticFeed | None,
        tapes: Sequence[RecordedTape],
        *,
        history_bars: int,
        polygon_key: str,
        is_open: Callable[[int], bool],
        rest_url: Callable[[], str],
    ) -> None:
        self.synthetic = synthetic
        self.tapes = [t for t in tapes if t is not None]
        self.history_bars = history_bars
        self.polygon_key = polygon_key
        self.is_open = is_open
        self.rest_url = rest_url
        self.started_ns = time.time_ns()
        symbols = synthetic.symbols if synthetic is not None else ()
        self._venue_names = {venue_symbol(s): s for s in symbols}
        self._tickers = {polygon.ticker(s): s for s in symbols}
        self._history: dict[int, dict[str, list[Bar]]] = {}
        self._simulations: dict[int, asyncio.Future[dict[str, list[Bar]]]] = {}
        self._published: dict[str, dict[int, list[float]]] = {}  # symbol -> second -> o h l c v buy pv n

    async def bars(self, symbol: str, interval_s: int, start_ns: int, end_ns: int) -> list[Bar]:
        """The bars of ``symbol`` starting in ``[start_ns, end_ns)``: simulated history before the
        start, then the bars of the trades published since (the one in progress included); a
        replay of recordings serves the bars of the recorded trades, at their recorded times."""
        if self.synthetic is None:
            return [b for b in self._tape_bars(symbol, interval_s) if start_ns <= b.start_ns < end_ns]
        if symbol not in self.synthetic.symbols:
            return []
        interval_ns = interval_s * NS_PER_S
        first_live = -(-self.started_ns // interval_ns) * interval_ns
        out: list[Bar] = []
        if start_ns < first_live:
            history = await self._history_of(interval_s, first_live)
            out += [b for b in history.get(symbol, []) if start_ns <= b.start_ns < min(end_ns, first_live)]
        if end_ns > first_live:
            out += self.published_bars(symbol, interval_s, max(start_ns, first_live), end_ns)
        return out

    def _tape_bars(self, symbol: str, interval_s: int) -> list[Bar]:
        cached = self._history.get(-interval_s)  # negative keys: bars of the recordings
        if cached is None:
            trades = [t for tape in self.tapes for t in read_recording_trades(tape.path).trades]
            frame = bars_from_trades(pd.DataFrame([asdict(t) for t in trades], columns=list(TRADE_COLUMNS)), interval_s)
            cached = {}
            for row in frame.itertuples(index=False):
                cached.setdefault(row.symbol, []).append(Bar(*row))
            self._history[-interval_s] = cached
        return cached.get(symbol, [])

    def _recorded_symbol(self, name: str) -> str | None:
        """A recording's symbol as a REST request names it (Binance ``NKNUSDT``, Coinbase ``BTC-USD``)."""
        if self.synthetic is not None:
            return self._venue_names.get(name)
        return name if self._tape_bars(name, 60) else None

    async def _history_of(self, interval_s: int, end_ns: int) -> dict[str, list[Bar]]:
        cached = self._history.get(interval_s)
        if cached is not None:
            return cached
        # One simulation per bar length, shared by every request that waits for it; a client
        # that gives up (its request cancelled) does not cancel it for the others.
        task = self._simulations.get(interval_s)
        if task is None:
            task = self._simulations[interval_s] = asyncio.ensure_future(self._simulate(interval_s, end_ns))
        return await asyncio.shield(task)

    async def _simulate(self, interval_s: int, end_ns: int) -> dict[str, list[Bar]]:
        assert self.synthetic is not None
        bars = await asyncio.to_thread(self.synthetic.history, self.history_bars, interval_s, end_ns)
        cached: dict[str, list[Bar]] = {}
        for bar in bars:
            cached.setdefault(bar.symbol, []).append(bar)
        self._history[interval_s] = cached
        return cached

    def record(self, event: MarketEvent, stamp: int) -> None:
        seconds = self._published.setdefault(event.symbol, {})
        second = stamp // NS_PER_S
        row = seconds.get(second)
        buy = event.size if event.taker_buys else 0.0
        if row is None:
            if len(seconds) > 200_000:  # about two days of one-second bars
                for old in sorted(seconds)[:50_000]:
                    del seconds[old]
            seconds[second] = [event.price, event.price, event.price, event.price, event.size, buy,
                               event.price * event.size, 1.0]  # fmt: skip
            return
        row[1] = max(row[1], event.price)
        row[2] = min(row[2], event.price)
        row[3] = event.price
        row[4] += event.size
        row[5] += buy
        row[6] += event.price * event.size
        row[7] += 1

    def published_bars(self, symbol: str, interval_s: int, start_ns: int, end_ns: int) -> list[Bar]:
        seconds = self._published.get(symbol, {})
        lo, hi = start_ns // NS_PER_S, -(-end_ns // NS_PER_S)
        merged: dict[int, list[float]] = {}
        for second in sorted(s for s in seconds if lo <= s < hi):
            row = seconds[second]
            start = second // interval_s * interval_s
            bar = merged.get(start)
            if bar is None:
                merged[start] = list(row)
            else:
                bar[1], bar[2], bar[3] = max(bar[1], row[1]), min(bar[2], row[2]), row[3]
                for i in (4, 5, 6, 7):
                    bar[i] += row[i]
        return [
            Bar(symbol, start * NS_PER_S, interval_s, o, h, low, c, v, min(buy, v), min(max(pv / v, low), h), int(n))
            for start, (o, h, low, c, v, buy, pv, n) in sorted(merged.items())
        ]

    async def klines(self, query: dict[str, list[str]]) -> tuple[HTTPStatus, Any]:
        name = (query.get("symbol") or [""])[0]
        interval = _BINANCE_INTERVALS.get((query.get("interval") or [""])[0])
        symbol = self._recorded_symbol(name)
        if symbol is None:
            return HTTPStatus.BAD_REQUEST, {"code": -1121, "msg": "Invalid symbol."}
        if interval is None:
            return HTTPStatus.BAD_REQUEST, {"code": -1120, "msg": "Invalid interval."}
        try:
            limit = int((query.get("limit") or ["500"])[0])
            start_ms = int((query.get("startTime") or ["0"])[0])
            end_ms = int((query.get("endTime") or [str(time.time_ns() // 1_000_000)])[0])
        except ValueError:
            return HTTPStatus.BAD_REQUEST, {"code": -1100, "msg": "Illegal characters found in a parameter."}
        if not 1 <= limit <= 1000:
            return HTTPStatus.BAD_REQUEST, {"code": -1130, "msg": "Invalid value for 'limit'."}
        bars = await self.bars(symbol, interval, start_ms * 1_000_000, end_ms * 1_000_000 + 1)
        return HTTPStatus.OK, [
            [b.start_ns // 1_000_000, repr(b.open), repr(b.high), repr(b.low), repr(b.close), repr(b.volume),
             (b.start_ns + interval * NS_PER_S) // 1_000_000 - 1, repr(b.vwap * b.volume), b.trades,
             repr(b.buy_volume), repr(b.vwap * b.buy_volume), "0"]
            for b in bars[:limit]
        ]  # fmt: skip

    async def aggs(self, path: str, query: dict[str, list[str]]) -> tuple[HTTPStatus, Any]:
        if (query.get("apiKey") or [""])[0] != self.polygon_key:
            return HTTPStatus.UNAUTHORIZED, {"status": "ERROR", "request_id": "replay", "error": "Unknown API Key"}
        asked = polygon.parse_range(path)
        if asked is None or asked[2] not in polygon.TIMESPANS or asked[1] < 1:
            return HTTPStatus.BAD_REQUEST, {"status": "ERROR", "request_id": "replay", "error": "Invalid range"}
        name, multiplier, timespan, lo, hi = asked
        symbol = self._tickers.get(name)
        if symbol is None:
            return HTTPStatus.OK, {"ticker": name, "queryCount": 0, "resultsCount": 0, "adjusted": True,
                                   "results": [], "status": "OK", "request_id": "replay", "count": 0}  # fmt: skip
        interval_s = multiplier * polygon.TIMESPANS[timespan]
        bars = [b for b in await self.bars(symbol, interval_s, lo, hi + 1) if self.is_open(b.start_ns)]
        return HTTPStatus.OK, polygon.aggs_body(bars, name, multiplier, timespan, lo, hi, query, self.rest_url())

    async def candles(self, product: str, query: dict[str, list[str]]) -> tuple[HTTPStatus, Any]:
        known = product in self.synthetic.symbols if self.synthetic is not None else bool(self._tape_bars(product, 60))
        if not known:
            return HTTPStatus.NOT_FOUND, {"message": "NotFound"}
        try:
            granularity = int((query.get("granularity") or ["60"])[0])
            start = _parse_iso((query.get("start") or [""])[0])
            end = _parse_iso((query.get("end") or [""])[0])
        except ValueError:
            return HTTPStatus.BAD_REQUEST, {"message": "Invalid start or end"}
        if granularity not in (60, 300, 900, 3600, 21600, 86400):
            return HTTPStatus.BAD_REQUEST, {"message": "Unsupported granularity"}
        if (end - start) // (granularity * NS_PER_S) + 1 > 300:
            return HTTPStatus.BAD_REQUEST, {"message": "granularity too small for the requested time range"}
        bars = await self.bars(product, granularity, start, end + 1)
        return HTTPStatus.OK, [
            [b.start_ns // NS_PER_S, b.low, b.high, b.open, b.close, b.volume] for b in reversed(bars) if b.trades
        ]


_BINANCE_INTERVALS = {
    "1s": 1, "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200, "4h": 14400,
    "6h": 21600, "8h": 28800, "12h": 43200, "1d": 86400, "3d": 259200, "1w": 604800,
}  # fmt: skip


def _parse_iso(text: str) -> int:
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp()) * NS_PER_S
