"""``python -m engine record``: stream venues into Redis (features) and PostgreSQL (records)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from engine.dataplane import DataPlane
from engine.errors import ServiceUnreachableError
from engine.feeds import binance, coinbase
from engine.feeds.client import FeedClient, make_feed
from engine.metrics import EngineCollector, MetricsServer
from engine.recorder import Recorder
from engine.replay.market import SyntheticFeed
from engine.replay.server import ReplayExchange
from feature_store.database import open_pool
from feature_store.features.catalog import FEATURE_SETS, ONLINE_DEFAULT
from feature_store.redis_store import RedisOnlineStore

__all__ = ["MarketSource", "RecordOptions", "RecordSummary", "record"]

log = logging.getLogger("engine.record")


@dataclass
class RecordOptions:
    """What ``record`` streams and where it goes (the CLI flags, one for one)."""

    venues: list[str] = field(default_factory=lambda: ["coinbase"])
    symbols: list[str] = field(default_factory=list)
    coinbase_url: str = coinbase.DEFAULT_URL
    binance_url: str = binance.DEFAULT_URL
    binance_rest_url: str = binance.DEFAULT_REST_URL
    replay_symbols: int = 0
    trades_per_s: float = 2.0
    speed: float = 1.0
    market_clock: bool = False
    faults: str = ""
    duration_s: float | None = None
    bar_seconds: int = 60
    books: bool = True
    book_every_s: float = 1.0
    book_depth: int = 10
    feature_sets: list[str] = field(default_factory=lambda: list(ONLINE_DEFAULT))
    metrics_port: int = 9108
    online: bool = True
    database: bool = True
    spool_dir: Path = Path(".rrr/spool")


@dataclass
class RecordSummary:
    """What a ``record`` run received and stored."""

    seconds: float
    feeds: dict[str, dict[str, Any]]
    plane: dict[str, Any]
    accepted: dict[str, int]
    written: dict[str, int]
    pending_rows: int
    spooled_batches: int
    write_failures: int = 0

    def lines(self) -> list[str]:
        out = [f"recorded for {self.seconds:.1f} s"]
        for venue, stats in self.feeds.items():
            out.append(
                f"  {venue}: {stats['messages']} messages, {stats['trades']} trades, {stats['book_updates']} book "
                f"updates, {stats['malformed']} malformed, {stats['trade_gaps']} trade gaps, {stats['resyncs']} "
                f"resyncs, {stats['reconnects']} reconnects"
            )
        out.append(
            f"  bars closed: {self.plane['bars']} in {self.plane['intervals_closed']} intervals; online writes "
            f"{self.plane['online_writes']} (failed {self.plane['online_failures']}); "
            f"late trades {self.plane['late_trades']}"
        )
        stored = ", ".join(f"{t} {n}" for t, n in self.written.items())
        out.append(f"  stored in PostgreSQL: {stored}")
        out.append(f"  still pending: {self.pending_rows} rows ({self.spooled_batches} batches spooled on disk)")
        return out


@dataclass
class MarketSource:
    """Where the feeds connect: the venues named in the options, or a local replay exchange
    (started here) broadcasting a synthetic market of ``replay_symbols`` instruments."""

    symbols: list[str]
    urls: dict[str, str]
    exchange: ReplayExchange | None = None
    market: SyntheticFeed | None = None

    @classmethod
    async def open(cls, options: RecordOptions) -> MarketSource:
        if not options.replay_symbols:
            urls = {"coinbase": options.coinbase_url, "binance": options.binance_url, "rest": options.binance_rest_url}
            return cls(list(options.symbols), urls)
        market = SyntheticFeed(options.replay_symbols, trades_per_s=options.trades_per_s, books=options.books)
        exchange = await ReplayExchange(
            synthetic=market, speed=options.speed, faults=options.faults, market_clock=options.market_clock
        ).start()
        urls = {"coinbase": exchange.coinbase_url, "binance": exchange.binance_url, "rest": exchange.rest_url}
        return cls(list(market.symbols), urls, exchange, market)


async def check_services(database_url: str | None, redis_url: str | None) -> None:
    """Fail early, with a clear message, when a store is unreachable at start."""
    if redis_url is not None:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=3)
        try:
            await asyncio.to_thread(client.ping)
        except redis.RedisError as exc:
            raise ServiceUnreachableError(f"Redis at {_safe(redis_url)} is unreachable: {exc}") from exc
        finally:
            client.close()
    if database_url is not None:
        try:
            pool = await asyncio.wait_for(open_pool(database_url, min_size=1, max_size=1), timeout=30)
        except Exception as exc:
            raise ServiceUnreachableError(f"PostgreSQL at {_safe(database_url)} is unreachable: {exc}") from exc
        await pool.close()


def _safe(url: str) -> str:
    _, sep, tail = url.rpartition("@")
    return f"{url.split('://', 1)[0]}://***@{tail}" if sep else url


async def record(
    options: RecordOptions,
    *,
    database_url: str | None,
    redis_url: str | None,
    progress: Callable[[RecordSummary], None] | None = None,
    progress_every_s: float = 2.0,
    stop: asyncio.Event | None = None,
) -> RecordSummary:
    """Stream until ``duration_s`` passes or ``stop`` is set; return what was stored.

    Raises:
        ServiceUnreachableError: Redis or PostgreSQL cannot be reached at start (later
            outages are ridden out: features wait in memory, rows in the buffer and spool).
    """
    await check_services(database_url if options.database else None, redis_url if options.online else None)
    stop = stop or asyncio.Event()
    source = await MarketSource.open(options)
    exchange, symbols, urls = source.exchange, source.symbols, source.urls
    online = RedisOnlineStore.from_url(redis_url) if options.online and redis_url else None
    recorder = Recorder(database_url, spool_dir=options.spool_dir) if options.database and database_url else None
    plane = DataPlane(
        symbols,
        [FEATURE_SETS[name] for name in options.feature_sets],
        online=online,
        recorder=recorder,
        bar_seconds=options.bar_seconds,
        book_every_s=options.book_every_s if options.books else 0.0,
        book_depth=options.book_depth,
    )
    feeds: list[FeedClient] = [
        make_feed(venue, symbols, plane, url=urls[venue], rest_url=urls["rest"], books=options.books)
        for venue in options.venues
    ]
    metrics = None
    if options.metrics_port >= 0:
        metrics = await MetricsServer(EngineCollector(feeds, plane, recorder), port=options.metrics_port).start()
    tasks = [asyncio.create_task(feed.run(), name=f"feed-{feed.venue}") for feed in feeds]
    tasks.append(asyncio.create_task(plane.run(), name="dataplane"))
    if recorder is not None:
        tasks.append(asyncio.create_task(recorder.run(), name="recorder"))
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    started = time.monotonic()

    def summary() -> RecordSummary:
        rs = recorder.stats if recorder is not None else None
        return RecordSummary(
            seconds=time.monotonic() - started,
            feeds={f.venue: f.stats.as_dict() for f in feeds},
            plane={k: v for k, v in vars(plane.stats).items() if not k.endswith("_s")},
            accepted=dict(rs.accepted) if rs else {},
            written=dict(rs.written) if rs else {},
            pending_rows=rs.buffered_rows if rs else 0,
            spooled_batches=rs.spooled_batches if rs else 0,
            write_failures=rs.write_failures if rs else 0,
        )

    try:
        while not stop.is_set():
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if options.duration_s is not None and time.monotonic() - started >= options.duration_s:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=progress_every_s)
            if progress is not None:
                progress(summary())
    finally:
        for feed in feeds:
            feed.stop()
        plane.stop()
        await asyncio.gather(*tasks[: len(feeds) + 1], return_exceptions=True)
        if recorder is not None:
            tasks[-1].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tasks[-1]
            await recorder.close()
        if online is not None:
            online.close()
        if metrics is not None:
            await metrics.stop()
        if exchange is not None:
            await exchange.stop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
    return summary()
