"""``python -m engine backtest``: the live trading code over stored trades, with a simulated clock.

A session (see :mod:`engine.session`) whose source is the stored trades and whose clock is
their own time.

Stored trades are fed in time order through the same data plane, trader, strategy, risk and
paper broker as ``engine run``; the stored headlines are scored by the model service and
count from their publication time. An account stopped part-way resumes from its checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from engine.config import BarInterval, EngineConfig
from engine.dataplane import DataPlane
from engine.errors import EngineError, ServiceUnreachableError
from engine.session import Session, SimulatedClock, StoredTrades, check_services, stored_bars
from engine.summary import TradeSummary, summarize
from engine.trade import TradingOptions, online_sets, open_account, paper_core, start_trader
from engine.trading.trader import Trader
from feature_store.database import open_pool
from feature_store.errors import StorageError
from feature_store.features.catalog import ONLINE_DEFAULT
from feature_store.market_data import MarketDataStore
from feature_store.records import NS_PER_S, Trade
from feature_store.redis_store import RedisOnlineStore
from serving.client import ModelClient, RequestRejected, ServiceUnavailable

__all__ = ["BacktestOptions", "backtest"]

log = logging.getLogger("engine.backtest")


@dataclass
class BacktestOptions:
    """What ``backtest`` replays: stored trades of ``symbols`` (all by default) in a time range.

    ``start_ns`` None replays everything stored as a live run met it (the bar before the first
    trade is decided at start); a given ``start_ns`` decides from the first bar at or after it.
    """

    symbols: list[str] = field(default_factory=list)
    venue: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    bar_seconds: int = 60
    feature_sets: list[str] = field(default_factory=lambda: list(ONLINE_DEFAULT))
    chunk_s: float = 3600.0
    pace_s: float = 0.0  # wall seconds per bar at least (0: as fast as the models answer)
    # A stretch of more bars than this without a stored trade is jumped over, the features
    # warming up again after it (None: twice the warm-up bars, at least 120).
    max_gap_bars: int | None = None


async def _scored_news(
    pool: asyncpg.Pool, trader: Trader, symbols: list[str], start_ns: int, end_ns: int
) -> list[tuple[int, list[str], float]]:
    """The stored headlines about ``symbols`` in ``[start_ns, end_ns)``, scored by the model service.

    Raises:
        EngineError: the sentiment model failed.
    """
    try:
        frame = await MarketDataStore(pool).read_news(start_ns, end_ns, symbols)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise StorageError(f"reading stored news failed: {exc}") from exc
    items = [
        (int(t), [str(s) for s in syms], str(h))
        for t, syms, h in frame[["ts_ns", "symbols", "headline"]].itertuples(index=False)
    ]
    out: list[tuple[int, list[str], float]] = []
    for start in range(0, len(items), 64):
        try:
            out.extend(await trader.score_headlines(items[start : start + 64]))
        except (ServiceUnavailable, RequestRejected) as exc:
            raise EngineError(f"the sentiment model failed on stored headlines: {exc}") from exc
    return sorted(out, key=lambda item: item[0])


async def backtest(
    data: BacktestOptions,
    options: TradingOptions,
    *,
    database_url: str,
    redis_url: str,
    progress: Callable[[TradeSummary], None] | None = None,
) -> TradeSummary:
    """Trade ``options.account`` on paper over stored trades, with the live code and a simulated clock.

    A session of stored trades on a simulated clock with a paper trader. The features go to a
    namespace of the online store of their own (``bt-<account>``), which the model service
    reads for this account's requests. It warms up from the stored bars before its first trade;
    without ``data.start_ns`` it also decides the last of them at once, as a live run does at
    start (from a given start, decisions begin with the first bar at or after it). An account
    that was stopped part-way (a crash) resumes from its last checkpointed bar: the trades
    before it only warm up the features, and orders and fills continue from the database.

    Raises:
        EngineError: no stored trades match, or the model service failed.
        ServiceUnreachableError: PostgreSQL or Redis cannot be reached.
    """
    await check_services(database_url, redis_url)
    config = EngineConfig(interval=BarInterval(data.bar_seconds), namespace=f"bt-{options.account.lower()}")
    pool = await open_pool(database_url, min_size=1, max_size=4)
    models = ModelClient(options.serving_url, timeout_s=max(options.model_timeout_s, 10.0), retries=3)
    base = RedisOnlineStore.from_url(redis_url)
    assert config.namespace is not None
    online = base.in_namespace(config.namespace)
    started = time.monotonic()
    interval = config.interval
    max_gap = data.max_gap_bars if data.max_gap_bars is not None else max(120, 2 * options.warmup_bars)
    try:
        source = await StoredTrades(
            MarketDataStore(pool),
            symbols=data.symbols,
            venue=data.venue,
            start_ns=data.start_ns,
            end_ns=data.end_ns,
            chunk_s=data.chunk_s,
            pace_s=data.pace_s,
            max_gap_bars=max_gap,
        ).open()
        if not await models.ready():
            raise ServiceUnreachableError(f"the model service at {models.url} is not ready")
        store, state = await open_account(pool, options)
        core = paper_core(options, state, data.venue or "paper", interval.seconds)
        trader = Trader(
            core, store, models, interval=interval, grace_ns=int(options.grace_s * NS_PER_S), namespace=config.namespace
        )
        unsent = trader.restore(state, redecide=True)
        if state.checkpoint_ns is not None:
            trader.catch_up_until_ns = state.checkpoint_ns
            trader.catch_up_bar_ns = state.checkpoint_bar_ns or -1
            log.warning(
                "account %s resumes after bar %s (%d fills, %d open orders restored)",
                options.account,
                state.checkpoint_bar_ns,
                state.fills,
                len(state.open_orders),
            )
        core.submit(unsent)  # stored before a crash, never sent
        served_sets = await start_trader(trader, models, options)
        await asyncio.to_thread(online.clear_namespace)
        plane = DataPlane(
            source.symbols,
            online_sets(data.feature_sets, served_sets),
            online=online,
            recorder=None,
            interval=interval,
            grace_s=options.grace_s,
            book_every_s=0.0,
            wall_clock=False,
        )
        trader.attach(plane)
        first_interval = interval.start_of(source.first_ns)
        # A live run warms up with history ending where it starts, and its first trade can come
        # an interval or two later: two intervals of margin take all of that history.
        warm = options.warmup_bars + 2 if options.warmup_bars else 0
        warm_bars = await stored_bars(pool, source.symbols, interval, first_interval, warm)
        # The stored headlines, scored by the served sentiment model: the features count each in
        # the interval it was published in (warm-up included), the strategy from its time on.
        news: list[tuple[int, list[str], float]] = []
        if "sentiment" in data.feature_sets:
            news = await _scored_news(
                pool, trader, source.symbols, first_interval - warm * interval.ns, source.last_ns + 1
            )
            for ts_ns, mentioned, score in news:
                plane.add_news(ts_ns, mentioned, score)
        await plane.warm_up(warm_bars, record=False)
        if data.start_ns is None:
            # Replaying what was stored as a live run met it: the bar before the first trade is
            # decided at start, as `engine run` does. From a given start, decisions begin with
            # the first bar at or after it.
            await plane.decide_warm_up()
        headline = 0

        def before_trade(trade: Trade) -> None:
            nonlocal headline
            while headline < len(news) and news[headline][0] <= trade.ts_ns:
                core.add_news(*news[headline])
                headline += 1

        def report() -> None:
            if progress is not None:
                progress(summarize(trader, time.monotonic() - started, source.trades))

        source.before_trade = before_trade
        await Session(source, SimulatedClock(plane), plane, trader=trader).run(progress=report)
        if source.finished:
            # Everything up to the last stored trade is done: a rerun of this account resumes after it.
            await trader.flush(checkpoint=(plane.stats.last_close_ns, source.last_ns + 1))
        else:
            # Stopped (Ctrl-C): every decided bar is checkpointed already; a rerun resumes after the last.
            await trader.flush()
            log.warning(
                "stopped before the last stored trade; run the same command again to resume after bar %s",
                plane.stats.last_close_ns,
            )
        return summarize(trader, time.monotonic() - started, source.trades, stopped_early=not source.finished)
    finally:
        with contextlib.suppress(StorageError):
            await asyncio.to_thread(online.clear_namespace)
        base.close()
        await models.close()
        await pool.close()
