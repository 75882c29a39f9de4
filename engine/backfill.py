"""``python -m engine backfill``: a venue's bar history over REST, into the bars table.

Venues and endpoints (each in its documented format and page limit):

* ``binance``: ``GET /api/v3/klines`` (1,000 klines a page) with trade counts and taker-buy
  volume, so that backfilled bars carry everything the engine's own bars do;
* ``polygon``: ``GET /v2/aggs/ticker/<T>/range/<n>/<timespan>/<from>/<to>`` (50,000
  aggregates a page) with trade counts and VWAP, the key from ``POLYGON_API_KEY``; stocks
  have no taker volume, so ``buy_volume`` is half the volume;
* ``coinbase``: ``GET /products/<id>/candles`` (300 candles a page, granularity 60, 300,
  900, 3600, 21600 or 86400 s). Candles carry no trade count or taker volume: those bars
  are stored with ``trades`` 0, ``buy_volume`` half the volume and ``vwap`` the typical
  price, as ``rrr-import`` stores OHLCV files without them.

What is already stored is not fetched again: each symbol's missing intervals in the range
are found first and only those runs are paged through, so an interrupted backfill resumes
where it stopped and a re-run stores nothing twice (each page is also written with
``replace``, one transaction per page). Only closed bars are stored. Rate limits are
honoured: ``429``/``418`` wait ``Retry-After`` (or back off exponentially), other errors
retry a few times, and requests are paced to ``max_requests_per_s``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import asyncpg
import numpy as np
import orjson
import pandas as pd

from engine.errors import EngineError, FeedError
from engine.feeds import binance
from feature_store.market_data import MarketDataStore
from feature_store.records import BAR_COLUMNS, NS_PER_S

__all__ = ["BINANCE_INTERVALS", "COINBASE_GRANULARITIES", "BackfillOptions", "BackfillSummary", "backfill"]

log = logging.getLogger("engine.backfill")

BINANCE_INTERVALS = {
    1: "1s", 60: "1m", 180: "3m", 300: "5m", 900: "15m", 1800: "30m", 3600: "1h", 7200: "2h", 14400: "4h",
    21600: "6h", 28800: "8h", 43200: "12h", 86400: "1d", 259200: "3d", 604800: "1w",
}  # fmt: skip
COINBASE_GRANULARITIES = (60, 300, 900, 3600, 21600, 86400)
COINBASE_REST_URL = "https://api.exchange.coinbase.com"
POLYGON_REST_URL = "https://api.polygon.io"
VENUES = ("binance", "coinbase", "polygon")


def polygon_span(bar_seconds: int) -> tuple[int, str]:
    """A bar length as Polygon's ``multiplier`` and ``timespan``."""
    for unit, seconds in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if bar_seconds % seconds == 0:
            return bar_seconds // seconds, unit
    return bar_seconds, "second"


class RateLimited(EngineError):
    """The venue kept refusing requests for its rate limit past the retries allowed."""


@dataclass(frozen=True)
class BackfillOptions:
    """What to fetch: ``symbols`` of ``venue`` in bars of ``bar_seconds``, over ``[start_ns, end_ns)``."""

    venue: str
    symbols: tuple[str, ...]
    start_ns: int
    end_ns: int
    bar_seconds: int = 60
    rest_url: str = ""
    max_requests_per_s: float = 10.0
    retries: int = 8
    timeout_s: float = 15.0
    api_key: str = field(default="", repr=False)  # Polygon: default POLYGON_API_KEY
    refetch: bool = False  # fetch the whole range again, replacing what is stored in it
    concurrency: int = 1  # symbols fetched at once (the pace above holds for them together)

    def __post_init__(self) -> None:
        if self.venue not in VENUES:
            raise FeedError(f"backfill: unknown venue {self.venue!r}; known: {', '.join(VENUES)}")
        if not self.symbols:
            raise FeedError("backfill: name at least one symbol")
        if self.venue == "binance" and self.bar_seconds not in BINANCE_INTERVALS:
            raise FeedError(
                f"backfill: Binance has no {self.bar_seconds} s klines; "
                f"use one of {', '.join(str(s) for s in BINANCE_INTERVALS)}"
            )
        if self.venue == "coinbase" and self.bar_seconds not in COINBASE_GRANULARITIES:
            raise FeedError(
                f"backfill: Coinbase has no {self.bar_seconds} s candles; "
                f"use one of {', '.join(str(s) for s in COINBASE_GRANULARITIES)}"
            )
        if self.venue == "polygon" and not (self.api_key or os.environ.get("POLYGON_API_KEY")):
            raise FeedError("backfill: set POLYGON_API_KEY (the API key) to fetch Polygon aggregates")
        if self.end_ns <= self.start_ns:
            raise FeedError("backfill: the range is empty (end before start)")
        if self.max_requests_per_s <= 0:
            raise FeedError("backfill: max_requests_per_s must be > 0")

    @property
    def interval_ns(self) -> int:
        return self.bar_seconds * NS_PER_S

    @property
    def url(self) -> str:
        default = {"binance": binance.DEFAULT_REST_URL, "coinbase": COINBASE_REST_URL}.get(self.venue, POLYGON_REST_URL)
        return (self.rest_url or default).rstrip("/")

    @property
    def key(self) -> str:
        return self.api_key or os.environ.get("POLYGON_API_KEY", "")


@dataclass
class BackfillSummary:
    """What a backfill fetched and stored."""

    venue: str
    bars_stored: int = 0
    bars_already_stored: int = 0
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    seconds: float = 0.0
    copy_seconds: float = 0.0
    per_symbol: dict[str, int] = field(default_factory=dict)

    @property
    def bars_per_s(self) -> float:
        return self.bars_stored / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        return [
            f"backfilled {self.bars_stored:,} bars from {self.venue} in {self.seconds:.1f} s "
            f"({self.bars_per_s:,.0f} bars/s; {self.requests} requests, {self.rate_limited} rate-limited, "
            f"{self.retries} retried); {self.bars_already_stored:,} were already stored",
            *(f"  {symbol}: {n:,} bars" for symbol, n in sorted(self.per_symbol.items())),
        ]


# --- the venues' formats ------------------------------------------------------------------


def iso_utc(ns: int) -> str:
    """``ns`` (UTC epoch nanoseconds) as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.fromtimestamp(ns / NS_PER_S, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def page_request(options: BackfillOptions, symbol: str, start_ns: int, end_ns: int) -> tuple[str, dict[str, str], int]:
    """The URL and query of the page of bars starting at ``start_ns`` (before ``end_ns``), and
    the bars it can hold."""
    if options.venue == "binance":
        limit = 1000
        last = min(end_ns, start_ns + limit * options.interval_ns) - 1
        params = {
            "symbol": binance.venue_symbol(symbol),
            "interval": BINANCE_INTERVALS[options.bar_seconds],
            "startTime": str(start_ns // 1_000_000),
            "endTime": str(last // 1_000_000),
            "limit": str(limit),
        }
        return f"{options.url}/api/v3/klines", params, limit
    if options.venue == "polygon":
        limit = 50_000
        last = min(end_ns, start_ns + limit * options.interval_ns) - 1
        multiplier, timespan = polygon_span(options.bar_seconds)
        path = f"/v2/aggs/ticker/{symbol}/range/{multiplier}/{timespan}/{start_ns // 1_000_000}/{last // 1_000_000}"
        params = {"adjusted": "true", "sort": "asc", "limit": str(limit), "apiKey": options.key}
        return f"{options.url}{path}", params, limit
    limit = 300
    last = min(end_ns, start_ns + limit * options.interval_ns) - options.interval_ns
    params = {"granularity": str(options.bar_seconds), "start": iso_utc(start_ns), "end": iso_utc(last)}
    return f"{options.url}/products/{symbol}/candles", params, limit


def parse_page(venue: str, symbol: str, bar_seconds: int, body: bytes) -> pd.DataFrame:
    """A page of klines or candles as bar rows (``BAR_COLUMNS``), oldest first.

    Raises:
        EngineError: the body is not a page of bars in the venue's format.
    """
    try:
        rows = orjson.loads(body)
        if not isinstance(rows, list) and venue != "polygon":
            raise TypeError(f"expected a list, got {type(rows).__name__}")
        if venue == "binance":
            # [open time ms, open, high, low, close, volume, close time, quote volume, trades,
            #  taker buy base volume, taker buy quote volume, ignore]
            start = np.array([int(r[0]) for r in rows], dtype=np.int64) * 1_000_000
            o, h, lo, c, v = (np.array([float(r[i]) for r in rows]) for i in (1, 2, 3, 4, 5))
            quote = np.array([float(r[7]) for r in rows])
            trades = np.array([int(r[8]) for r in rows], dtype=np.int64)
            buy = np.array([float(r[9]) for r in rows])
        elif venue == "polygon":
            # {"results": [{"v", "vw", "o", "c", "h", "l", "t" ms, "n"}, ...], "status": "OK" | "DELAYED"}
            if not isinstance(rows, dict) or rows.get("status") not in ("OK", "DELAYED"):
                raise TypeError(f"expected an aggregates answer, got {str(rows)[:200]}")
            rows = rows.get("results") or []
            start = np.array([int(r["t"]) for r in rows], dtype=np.int64) * 1_000_000
            o, h, lo, c, v = (np.array([float(r[k]) for r in rows]) for k in ("o", "h", "l", "c", "v"))
            quote = np.array([float(r.get("vw", "nan")) for r in rows]) * v
            trades = np.array([int(r.get("n", 0)) for r in rows], dtype=np.int64)
            buy = v / 2.0
        else:
            # [time s, low, high, open, close, volume], newest first
            rows = sorted(rows, key=lambda r: int(r[0]))
            start = np.array([int(r[0]) for r in rows], dtype=np.int64) * NS_PER_S
            lo, h, o, c, v = (np.array([float(r[i]) for r in rows]) for i in (1, 2, 3, 4, 5))
            quote = np.full(len(rows), np.nan)
            trades = np.zeros(len(rows), dtype=np.int64)
            buy = v / 2.0
    except (orjson.JSONDecodeError, TypeError, ValueError, IndexError, KeyError) as exc:
        raise EngineError(f"{venue} {symbol}: the history page is not in the venue's format: {exc}") from exc
    typical = (h + lo + c) / 3.0
    with np.errstate(divide="ignore", invalid="ignore"):
        vwap = np.where(v > 0, quote / v, typical)
    vwap = np.where(np.isfinite(vwap) & (vwap >= lo) & (vwap <= h), vwap, typical)
    frame = pd.DataFrame(
        {
            "symbol": symbol,
            "start_ns": start,
            "interval_s": np.full(len(start), bar_seconds, dtype=np.int64),
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": v,
            "buy_volume": np.minimum(buy, v),
            "vwap": vwap,
            "trades": trades,
        }
    )
    bad = ~(
        np.isfinite(frame[["open", "high", "low", "close", "volume"]].to_numpy()).all(axis=1)
        & (frame["low"] > 0)
        & (frame["high"] >= frame[["open", "close", "low"]].max(axis=1))
        & (frame["low"] <= frame[["open", "close"]].min(axis=1))
        & (frame["volume"] >= 0)
        & (frame["start_ns"] % (bar_seconds * NS_PER_S) == 0)
    )
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise EngineError(f"{venue} {symbol}: bar {row} of the page is inconsistent: {frame.iloc[row].to_dict()}")
    return frame[list(BAR_COLUMNS)]


# --- what is missing ----------------------------------------------------------------------


def missing_runs(stored: Sequence[int], start_ns: int, end_ns: int, interval_ns: int) -> list[tuple[int, int]]:
    """The runs ``[a, b)`` of intervals in ``[start_ns, end_ns)`` with no stored bar."""
    first = -(-start_ns // interval_ns) * interval_ns
    have = np.asarray(sorted(stored), dtype=np.int64)
    runs: list[tuple[int, int]] = []
    cursor = first
    for ts in have:
        if ts < cursor:
            continue
        if ts > cursor:
            runs.append((cursor, int(ts)))
        cursor = int(ts) + interval_ns
    if cursor < end_ns:
        runs.append((cursor, end_ns))
    return [(a, b) for a, b in runs if a < b]


async def _stored_starts(pool: asyncpg.Pool, symbol: str, bar_seconds: int, start_ns: int, end_ns: int) -> list[int]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT start_ns FROM bars WHERE symbol = $1 AND interval_s = $2 AND start_ns >= $3 AND start_ns < $4",
            symbol,
            bar_seconds,
            start_ns,
            end_ns,
        )
    return [int(r["start_ns"]) for r in rows]


# --- fetching -----------------------------------------------------------------------------


class _Pacer:
    def __init__(self, per_s: float) -> None:
        self.gap = 1.0 / per_s
        self.next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        if now < self.next:
            await asyncio.sleep(self.next - now)
        self.next = max(now, self.next) + self.gap


async def _get(
    http: aiohttp.ClientSession, url: str, params: dict[str, str], options: BackfillOptions,
    summary: BackfillSummary, pacer: _Pacer,
) -> bytes:  # fmt: skip
    delay = 0.5
    for attempt in range(options.retries + 1):
        await pacer.wait()
        summary.requests += 1
        try:
            async with http.get(url, params=params) as response:
                body = await response.read()
                if response.status == 200:
                    return body
                retry_after = response.headers.get("Retry-After")
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, retry_after, body = 0, None, str(exc).encode()
        if status in (429, 418):
            summary.rate_limited += 1
            wait = _retry_after(retry_after, delay)
            log.warning("%s: rate limited (HTTP %d); waiting %.1f s", options.venue, status, wait)
        elif status == 0 or status >= 500:
            summary.retries += 1
            wait = delay * random.uniform(0.5, 1.0)
            log.warning("%s: %s; retrying in %.1f s", options.venue, body[:200].decode(errors="replace"), wait)
        else:
            shown = {k: ("***" if k == "apiKey" else v) for k, v in params.items()}
            raise EngineError(
                f"{options.venue} refused {url.rsplit('/', 1)[-1]} {shown}: HTTP {status} "
                f"{body[:300].decode(errors='replace')}"
            )
        if attempt == options.retries:
            break
        await asyncio.sleep(wait)
        delay = min(delay * 2, 60.0)
    if status in (429, 418):
        raise RateLimited(f"{options.venue}: still rate limited after {options.retries} retries")
    raise EngineError(f"{options.venue}: history request failed after {options.retries} retries (last: HTTP {status})")


def _retry_after(header: str | None, fallback: float) -> float:
    if header:
        try:
            value = float(header)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return min(value, 300.0)
    return fallback


async def backfill(
    options: BackfillOptions,
    pool: asyncpg.Pool,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> BackfillSummary:
    """Fetch and store the bars of ``options`` that are not stored yet.

    Raises:
        EngineError: the venue refused a request, or sent something that is not bars.
        RateLimited: the venue kept rate-limiting past the retries allowed.
        StorageError: PostgreSQL failed (pages stored before stay stored; a re-run resumes).
    """
    summary = BackfillSummary(options.venue)
    began = time.monotonic()
    store = MarketDataStore(pool)
    interval_ns = options.interval_ns
    # Only closed bars: the one in progress now is the engine's to build.
    end_ns = min(options.end_ns, time.time_ns() // interval_ns * interval_ns)
    pacer = _Pacer(options.max_requests_per_s)
    plan: dict[str, list[tuple[int, int]]] = {}
    total = 0
    for symbol in options.symbols:
        stored = (
            [] if options.refetch else await _stored_starts(pool, symbol, options.bar_seconds, options.start_ns, end_ns)
        )
        summary.bars_already_stored += len(stored)
        plan[symbol] = missing_runs(stored, options.start_ns, end_ns, interval_ns)
        total += sum((b - a) // interval_ns for a, b in plan[symbol])
    done = 0
    timeout = aiohttp.ClientTimeout(total=options.timeout_s)
    in_flight = asyncio.Semaphore(options.concurrency)
    async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "rrr-engine-backfill"}) as http:

        async def fetch(symbol: str, runs: list[tuple[int, int]]) -> None:
            async with in_flight:
                await fetch_symbol(symbol, runs)

        async def fetch_symbol(symbol: str, runs: list[tuple[int, int]]) -> None:
            nonlocal done
            summary.per_symbol[symbol] = 0
            for run_start, run_end in runs:
                cursor = run_start
                while cursor < run_end:
                    url, params, limit = page_request(options, symbol, cursor, run_end)
                    page_end = min(run_end, cursor + limit * interval_ns)
                    body = await _get(http, url, params, options, summary, pacer)
                    frame = parse_page(options.venue, symbol, options.bar_seconds, body)
                    frame = frame[(frame["start_ns"] >= cursor) & (frame["start_ns"] < page_end)]
                    if len(frame):
                        copy_began = time.monotonic()
                        written = await store.write_bars(frame, replace=True)
                        summary.copy_seconds += time.monotonic() - copy_began
                        summary.bars_stored += written
                        summary.per_symbol[symbol] += written
                    done += (page_end - cursor) // interval_ns
                    if progress is not None:
                        progress(symbol, done, total)
                    cursor = page_end

        await asyncio.gather(*(fetch(symbol, runs) for symbol, runs in plan.items()))
    summary.seconds = time.monotonic() - began
    return summary


def print_progress(symbol: str, done: int, total: int) -> None:
    """A one-line progress bar on stderr."""
    share = done / total if total else 1.0
    bar = "#" * int(share * 30)
    sys.stderr.write(f"\r  [{bar:<30}] {share:6.1%}  {done:,}/{total:,} intervals  {symbol:<16}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()
