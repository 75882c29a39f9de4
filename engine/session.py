"""One engine session: a source of market data and a clock, the data plane, and (when
trading) the trader, supervised together by one :class:`asyncio.TaskGroup`.

The commands are configurations of it:

============  ==========================================  ======================  ==========
command       source                                      clock                   trader
============  ==========================================  ======================  ==========
``record``    venue feeds, or the local replay exchange   wall                    none
``run``       venue feeds, or the local replay exchange   wall                    paper
``backtest``  stored trades                               simulated (trade time)  paper
============  ==========================================  ======================  ==========

A wall clock closes each bar when the local clock (advanced by the venue's) passes its end;
a simulated clock closes it when the first stored trade at or past its end is read. When
any task of a session fails, the others are cancelled and the failure is raised as itself
(not as an exception group); the session then closes what it opened in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import asyncpg
import redis

from engine.backfill import BINANCE_INTERVALS, COINBASE_GRANULARITIES, BackfillOptions, backfill, iso_utc
from engine.config import BarInterval
from engine.dataplane import DataPlane
from engine.errors import EngineError, ServiceUnreachableError
from engine.feeds import binance, coinbase, polygon
from engine.feeds.client import FeedClient, FeedSink
from engine.feeds.venues import make_feed
from engine.metrics import EngineCollector, MetricsServer
from engine.recorder import Recorder
from engine.replay import polygon as replay_polygon
from engine.replay.market import SyntheticFeed
from engine.replay.server import ReplayExchange
from engine.trading.trader import Trader
from feature_store.database import open_pool
from feature_store.features.catalog import ONLINE_DEFAULT
from feature_store.market_data import MarketDataStore
from feature_store.records import Bar, Trade

__all__ = [
    "RecordOptions",
    "Session",
    "SimulatedClock",
    "StoredTrades",
    "VenueFeeds",
    "WallClock",
    "check_services",
    "warm_start",
    "warm_up_plane",
]

log = logging.getLogger("engine.session")


@dataclass
class RecordOptions:
    """What a live session streams and where it goes (the CLI flags, one for one)."""

    venues: list[str] = field(default_factory=lambda: ["coinbase"])
    symbols: list[str] = field(default_factory=list)
    coinbase_url: str = coinbase.DEFAULT_URL
    binance_url: str = binance.DEFAULT_URL
    binance_rest_url: str = binance.DEFAULT_REST_URL
    coinbase_rest_url: str = ""
    polygon_url: str = polygon.DEFAULT_URL
    polygon_rest_url: str = polygon.DEFAULT_REST_URL
    replay_symbols: int = 0
    replay_url: str = ""  # a replay exchange already running (``python -m engine replay``)
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

    @property
    def interval(self) -> BarInterval:
        return BarInterval(self.bar_seconds)


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


# --- sources ------------------------------------------------------------------------------


class Source(Protocol):
    """Where a session's market data comes from."""

    symbols: list[str]

    def tasks(self, sink: FeedSink, plane: DataPlane) -> list[Coroutine[Any, Any, None]]:
        """The coroutines that deliver the data (each returns when the source is done or stopped)."""
        ...

    def stop(self) -> None: ...

    async def close(self) -> None: ...


class VenueFeeds:
    """Venue WebSocket feeds, or a local replay exchange (started here) broadcasting a
    synthetic market of ``replay_symbols`` instruments, which also serves the venues' REST
    history endpoints."""

    def __init__(self, options: RecordOptions) -> None:
        self.options = options
        self.symbols: list[str] = list(options.symbols)
        self.urls = {
            "coinbase": options.coinbase_url,
            "binance": options.binance_url,
            "rest": options.binance_rest_url,
            "coinbase_rest": options.coinbase_rest_url,
            "polygon": options.polygon_url,
            "polygon_rest": options.polygon_rest_url,
        }
        self.api_key: str | None = None  # Polygon: None reads POLYGON_API_KEY
        self.exchange: ReplayExchange | None = None
        self.feeds: list[FeedClient] = []

    async def open(self) -> VenueFeeds:
        options = self.options
        if options.replay_symbols:
            market = SyntheticFeed(options.replay_symbols, trades_per_s=options.trades_per_s, books=options.books)
            self.exchange = await ReplayExchange(
                synthetic=market, speed=options.speed, faults=options.faults, market_clock=options.market_clock
            ).start()
            rest = self.exchange.rest_url
            self.urls = {"coinbase": self.exchange.coinbase_url, "binance": self.exchange.binance_url,
                         "rest": rest, "coinbase_rest": rest, "polygon": self.exchange.binance_url + "/stocks",
                         "polygon_rest": rest}  # fmt: skip
            self.symbols = list(market.symbols)
            if "polygon" in options.venues:  # stocks trade under their tickers
                self.symbols = [replay_polygon.ticker(s) for s in market.symbols]
                self.api_key = self.exchange.polygon_key
        elif options.replay_url:
            await self._join_replay(options.replay_url.rstrip("/"))
        if not self.symbols:
            raise EngineError("name the symbols to stream (--symbols) or start a replay (--replay N)")
        return self

    async def _join_replay(self, url: str) -> None:
        """Stream from a replay exchange already running at ``url`` (its symbols unless named)."""
        host = url.split("://", 1)[-1]
        rest = f"http://{host}"
        self.urls = {"coinbase": f"ws://{host}/", "binance": f"ws://{host}", "rest": rest, "coinbase_rest": rest,
                     "polygon": f"ws://{host}/stocks", "polygon_rest": rest}  # fmt: skip
        if self.symbols:
            return
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
                http.get(f"{rest}/products") as response,
            ):
                response.raise_for_status()
                products = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ServiceUnreachableError(f"the replay exchange at {url} did not list its products: {exc}") from exc
        self.symbols = [str(p["id"]) for p in products if isinstance(p, dict) and "id" in p]

    @property
    def replayed(self) -> bool:
        """True when the market is a local replay exchange's (its history may be fetched again)."""
        return self.exchange is not None or bool(self.options.replay_url)

    def history(self, interval: BarInterval) -> tuple[str, str] | None:
        """The venue and REST URL to backfill ``interval`` bars from (None: no venue has them)."""
        venue = self.options.venues[0]
        if venue == "polygon":
            return "polygon", self.urls["polygon_rest"]
        if self.replayed:  # the replay exchange serves klines of any length
            return "binance", self.urls["rest"]
        if venue == "binance" and interval.seconds in BINANCE_INTERVALS:
            return "binance", self.urls["rest"]
        if venue == "coinbase" and interval.seconds in COINBASE_GRANULARITIES:
            return "coinbase", self.urls["coinbase_rest"]
        return None

    def tasks(self, sink: FeedSink, plane: DataPlane) -> list[Coroutine[Any, Any, None]]:
        self.feeds = [
            make_feed(
                v, self.symbols, sink, url=self.urls[v], rest_url=self.urls["rest"], books=self.options.books,
                **({"api_key": self.api_key} if v == "polygon" else {}),
                # A replay on its market clock stamps trades hours ahead of the wall clock.
                max_ahead_s=None if self.exchange is not None and self.options.market_clock else 300.0,
            )
            for v in self.options.venues
        ]  # fmt: skip
        return [feed.run() for feed in self.feeds]

    def stop(self) -> None:
        for feed in self.feeds:
            feed.stop()

    async def close(self) -> None:
        self.stop()
        if self.exchange is not None:
            await self.exchange.stop()


class StoredTrades:
    """Stored trades in time order, read through the feature store, on a simulated clock.

    Args:
        store: the market data store.
        symbols, venue: which trades (all symbols when empty; every venue when None).
        start_ns, end_ns: the time range (None: from the first / to the last stored).
        max_gap_bars: see :class:`SimulatedClock`.
    """

    def __init__(
        self,
        store: MarketDataStore,
        *,
        symbols: Sequence[str] = (),
        venue: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        chunk_s: float = 3600.0,
        pace_s: float = 0.0,
        max_gap_bars: int | None = None,
    ) -> None:
        self.store = store
        self.venue = venue
        self.wanted = list(symbols)
        self.start_ns, self.end_ns = start_ns, end_ns
        self.chunk_s = chunk_s
        self.pace_s = pace_s
        self.max_gap_bars = max_gap_bars
        self.finished = False  # every stored trade was traded (not stopped part-way)
        self.symbols: list[str] = []
        self.first_ns = self.last_ns = 0
        self.trades = 0
        self.before_trade: Callable[[Trade], None] | None = None  # e.g. headlines due before it
        self._stopping = False

    async def open(self) -> StoredTrades:
        span = await self.store.trade_span(
            self.start_ns if self.start_ns is not None else 0,
            self.end_ns if self.end_ns is not None else 2**62,
            self.wanted or None,
            self.venue,
        )
        if span is None:
            raise EngineError("no stored trades match the backtest's symbols, venue and time range")
        self.first_ns, self.last_ns, self.symbols = span
        return self

    def tasks(self, sink: FeedSink, plane: DataPlane) -> list[Coroutine[Any, Any, None]]:
        clock = SimulatedClock(plane, max_gap_bars=self.max_gap_bars, stopped=lambda: self._stopping)
        return [self._replay(sink, clock)]

    async def _replay(self, sink: FeedSink, clock: SimulatedClock) -> None:
        trades = self.store.iter_trades(
            self.first_ns, self.last_ns + 1, self.wanted or None, self.venue, chunk_ns=int(self.chunk_s * 1e9)
        )
        async for trade in trades:
            if self._stopping:
                break
            if self.before_trade is not None:
                self.before_trade(trade)
            await clock.advance(trade.ts_ns, pace_s=self.pace_s)
            if self._stopping:  # stopped while closing intervals: this trade was never traded
                break
            sink.on_trade(trade)
            self.trades += 1
        else:
            self.finished = True

    def stop(self) -> None:
        self._stopping = True

    async def close(self) -> None:
        self.stop()


# --- clocks -------------------------------------------------------------------------------


class WallClock:
    """Closes each interval when the local clock (advanced by the venue's) passes its end."""

    def tasks(self, plane: DataPlane) -> list[Coroutine[Any, Any, None]]:
        return [plane.run()]


class SimulatedClock:
    """Closes each interval when the first trade at or past its close is read (a backtest).

    Args:
        plane: the data plane whose intervals it closes.
        max_gap_bars: a run of more intervals than this without a trade (a recorder that was
            off, recordings years apart) is jumped over with :meth:`DataPlane.skip_to` and
            one warning instead of deciding every empty bar (None: never jumped).
        stopped: checked before each close; once true, :meth:`advance` returns at once.
    """

    def __init__(
        self, plane: DataPlane, *, max_gap_bars: int | None = None, stopped: Callable[[], bool] | None = None
    ) -> None:
        self.plane = plane
        self.max_gap_bars = max_gap_bars
        self.stopped = stopped or (lambda: False)

    def tasks(self, plane: DataPlane) -> list[Coroutine[Any, Any, None]]:
        return []  # the source moves this clock

    async def advance(self, ts_ns: int, *, pace_s: float = 0.0) -> None:
        plane = self.plane
        gap_ns = None if self.max_gap_bars is None else self.max_gap_bars * plane.interval_ns
        due = plane.next_close_ns()
        while due is not None and ts_ns >= due and not self.stopped():
            await plane.close_interval(due - plane.interval_ns - plane.grace_ns)
            due = plane.next_close_ns()
            if due is not None and gap_ns is not None and ts_ns - due > gap_ns:
                last = plane.stats.last_close_ns
                skipped = plane.skip_to(ts_ns)
                log.warning(
                    "no stored trade from %s to %s (%d intervals of %d s): skipped; the features warm up again",
                    iso_utc(last + plane.interval_ns), iso_utc(ts_ns), skipped, plane.bar_seconds,
                )  # fmt: skip
                due = plane.next_close_ns()
            if pace_s:
                await asyncio.sleep(pace_s)


# --- warm start ---------------------------------------------------------------------------


async def warm_start(
    pool: asyncpg.Pool,
    source: VenueFeeds,
    interval: BarInterval,
    bars: int,
    *,
    backfill_history: bool = True,
) -> list[Bar]:
    """The ``bars`` closed intervals before now, of every symbol: missing ones are fetched
    from the venue's REST history first (where it has bars of this length), then everything
    is read back from the bars table."""
    if bars <= 0:
        return []
    now_interval = interval.start_of(time.time_ns())
    start = now_interval - bars * interval.ns
    history = source.history(interval) if backfill_history else None
    if history is not None:
        venue, url = history
        began = time.monotonic()
        # A local replay's market is new at every start: its history replaces what an earlier
        # replay stored under the same symbol names.
        # A venue is asked at its polite default pace; a local replay as fast as it answers.
        options = BackfillOptions(
            venue, tuple(source.symbols), start, now_interval, interval.seconds, rest_url=url,
            api_key=source.api_key or "", refetch=source.replayed,
            max_requests_per_s=1000.0 if source.replayed else BackfillOptions.max_requests_per_s,
            concurrency=8 if source.replayed else 1,
        )  # fmt: skip
        summary = await backfill(options, pool)
        log.info(
            "warm start: %d bars backfilled from %s in %.1f s (%d already stored)",
            summary.bars_stored, venue, time.monotonic() - began, summary.bars_already_stored,
        )  # fmt: skip
    else:
        log.info("warm start: %s has no %s history over REST; using the stored bars", source.options.venues[0],
                    interval)  # fmt: skip
    return await stored_bars(pool, source.symbols, interval, now_interval, bars)


async def warm_up_plane(pool: asyncpg.Pool, source: VenueFeeds, plane: DataPlane, bars: int) -> list[Bar]:
    """:func:`warm_start` and :meth:`DataPlane.warm_up` with its bars; then, as long as that
    took more than two bars (1,000 symbols of 800 bars take a while), the bars that closed
    meanwhile are fetched and stepped too, so that live trading starts from the last closed
    bar rather than from a stretch of empty ones. Returns every bar stepped."""
    interval = plane.interval
    history = await warm_start(pool, source, interval, bars)
    await plane.warm_up(history, record=False)
    for _ in range(3):
        if not history:
            break
        last = history[-1].start_ns
        behind = (interval.start_of(time.time_ns()) - last) // interval.ns - 1
        if behind <= 2:
            break
        more = [b for b in await warm_start(pool, source, interval, int(behind) + 1) if b.start_ns > last]
        if not more:
            break
        log.info("warm start: %d more intervals closed while warming up; stepped too", behind)
        await plane.warm_up(more, record=False)
        history.extend(more)
    return history


async def stored_bars(
    pool: asyncpg.Pool, symbols: Sequence[str], interval: BarInterval, end_ns: int, bars: int
) -> list[Bar]:
    """The stored bars of ``symbols`` in the ``bars`` intervals before ``end_ns``, in time order."""
    if bars <= 0:
        return []
    frame = await MarketDataStore(pool).read_bars(
        end_ns - bars * interval.ns, end_ns, list(symbols), interval_s=interval.seconds
    )
    frame = frame.sort_values(["start_ns", "symbol"], kind="stable")
    return [Bar(*row) for row in frame.itertuples(index=False)]


# --- the session --------------------------------------------------------------------------


@dataclass
class Session:
    """A source, a clock, the data plane and its consumers, run until stopped or done.

    Args:
        source: where the data comes from.
        clock: :class:`WallClock` or :class:`SimulatedClock`.
        plane: the data plane (bars, online features, recording).
        trader: the trading shell (None: the session only records); it is the feeds' sink.
        recorder: writes records to PostgreSQL (closed last).
        metrics_port: Prometheus metrics port (< 0: none).
        extra: more coroutines to run beside (e.g. following a news file).
    """

    source: Source
    clock: WallClock | SimulatedClock
    plane: DataPlane
    trader: Trader | None = None
    recorder: Recorder | None = None
    metrics_port: int = -1
    extra: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)
    _recorder_closed: bool = False

    @property
    def feeds(self) -> list[FeedClient]:
        return list(getattr(self.source, "feeds", []))

    async def run(
        self,
        *,
        duration_s: float | None = None,
        progress: Callable[[], None] | None = None,
        progress_every_s: float = 5.0,
    ) -> None:
        """Run until the source is done, ``duration_s`` passes or :attr:`stop_event` is set (SIGINT
        and SIGTERM set it); raise the first failure of any part."""
        loop = asyncio.get_running_loop()
        sink: FeedSink = self.trader if self.trader is not None else self.plane
        sources = self.source.tasks(sink, self.plane)
        metrics = None
        try:
            if self.metrics_port >= 0:
                collector = EngineCollector(self.feeds, self.plane, self.recorder, self.trader)
                metrics = await MetricsServer(collector, port=self.metrics_port).start()
        except BaseException:
            for coro in sources:
                coro.close()
            raise
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self.stop_event.set)
            loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
        try:
            async with asyncio.TaskGroup() as group:
                delivering = [group.create_task(c, name="source") for c in sources]
                closing = [group.create_task(c, name="clock") for c in self.clock.tasks(self.plane)]
                workers: list[asyncio.Task[None]] = []
                if self.trader is not None and self.trader.breaker is not None:
                    workers.append(group.create_task(self.trader.run_flusher(), name="journal"))
                for make in self.extra:
                    workers.append(group.create_task(make(), name=make.__name__))
                recording = group.create_task(self.recorder.run(), name="recorder") if self.recorder else None
                group.create_task(
                    self._supervise(delivering, closing, workers, recording, duration_s, progress, progress_every_s),
                    name="supervisor",
                )
        except BaseExceptionGroup as group_error:
            raise _first(group_error) from None
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
                loop.remove_signal_handler(signal.SIGTERM)
            if self.recorder is not None and not self._recorder_closed:
                await self.recorder.close()
            if metrics is not None:
                await metrics.stop()

    async def _supervise(
        self,
        delivering: list[asyncio.Task[None]],
        closing: list[asyncio.Task[None]],
        workers: list[asyncio.Task[None]],
        recording: asyncio.Task[None] | None,
        duration_s: float | None,
        progress: Callable[[], None] | None,
        every_s: float,
    ) -> None:
        source_done = asyncio.ensure_future(asyncio.gather(*delivering))
        try:
            while not self.stop_event.is_set() and not source_done.done():
                left = None if duration_s is None else duration_s - (time.monotonic() - self.started)
                if left is not None and left <= 0:
                    break
                wait = every_s if left is None else min(every_s, left)
                stopped: asyncio.Future[Any] = asyncio.ensure_future(self.stop_event.wait())
                pending: set[asyncio.Future[Any]] = {stopped, source_done}
                await asyncio.wait(pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                if progress is not None and not source_done.done():
                    progress()
        finally:
            # In order: no more data, no more closes, the consumers finish, the recorder last.
            self.source.stop()
            await source_done
            self.plane.stop()
            for task in closing:
                await task
            if self.trader is not None:
                self.trader.stop()
            self.stop_event.set()
            for task in workers:
                await task
            if self.recorder is not None and recording is not None:
                # Its loop stops first (a write in progress is retried by close, from the
                # buffer or the spool), then close writes what is left.
                recording.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await recording
                self._recorder_closed = True
                await self.recorder.close()


def _first(group: BaseExceptionGroup) -> BaseException:
    """The first failure of a task group, unwrapped (cancellations of the others dropped)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]
