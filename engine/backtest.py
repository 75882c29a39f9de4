"""``python -m engine backtest``: the live trading code over stored trades, with a simulated clock.

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
from typing import Any

import asyncpg

from engine.dataplane import DataPlane
from engine.errors import EngineError, ServiceUnreachableError
from engine.record import check_services
from engine.summary import TradeSummary, summarize
from engine.trade import TradingOptions, online_sets, open_account, paper_core, start_trader, stored_bars
from engine.trading.trader import Trader
from feature_store.database import open_pool
from feature_store.errors import StorageError
from feature_store.features.catalog import ONLINE_DEFAULT
from feature_store.market_data import MarketDataStore
from feature_store.records import NS_PER_S, Trade
from feature_store.redis_store import RedisOnlineStore
from serving.client import ModelClient, RequestRejected, ServiceUnavailable

__all__ = ["BacktestOptions", "backtest", "stored_trades"]

log = logging.getLogger("engine.backtest")


@dataclass
class BacktestOptions:
    """What ``backtest`` replays: stored trades of ``symbols`` (all by default) in a time range."""

    symbols: list[str] = field(default_factory=list)
    venue: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    bar_seconds: int = 60
    feature_sets: list[str] = field(default_factory=lambda: list(ONLINE_DEFAULT))
    chunk_s: float = 3600.0
    pace_s: float = 0.0  # wall seconds per bar at least (0: as fast as the models answer)


async def stored_trades(
    pool: asyncpg.Pool, options: BacktestOptions, start_ns: int, end_ns: int
) -> Any:  # an async iterator of Trade
    """The stored trades of ``options``' symbols and venue with ``start_ns <= ts <= end_ns``, in the
    order every replay of them uses (time, symbol, venue, trade id), read an hour at a time.

    Raises:
        StorageError: PostgreSQL failed.
    """
    step = int(options.chunk_s * NS_PER_S)
    lo = start_ns
    while lo <= end_ns:
        hi = min(lo + step, end_ns + 1)
        try:
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT venue, symbol, ts_ns, price, size, side, trade_id FROM trades "
                    "WHERE ts_ns >= $1 AND ts_ns < $2 AND (cardinality($3::text[]) = 0 OR symbol = ANY($3::text[])) "
                    "AND ($4::text IS NULL OR venue = $4) "
                    "ORDER BY ts_ns, symbol, venue, length(trade_id), trade_id",
                    lo,
                    hi,
                    options.symbols,
                    options.venue,
                )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StorageError(f"reading stored trades failed: {exc}") from exc
        for r in rows:
            yield Trade(r["venue"], r["symbol"], r["ts_ns"], r["price"], r["size"], r["side"], r["trade_id"])
        lo = hi


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

    The features go to a namespace of the online store of their own (``bt-<account>``), which
    the model service reads for this account's requests. An account that was stopped part-way
    (a crash) resumes from its last checkpointed bar: the trades before it only warm up the
    features, and orders and fills continue from the database.

    Raises:
        EngineError: no stored trades match, or the model service failed.
        ServiceUnreachableError: PostgreSQL or Redis cannot be reached.
    """
    await check_services(database_url, redis_url)
    pool = await open_pool(database_url, min_size=1, max_size=4)
    models = ModelClient(options.serving_url, timeout_s=max(options.model_timeout_s, 10.0), retries=3)
    base = RedisOnlineStore.from_url(redis_url)
    online = base.in_namespace(f"bt-{options.account.lower()}")
    started = time.monotonic()
    try:
        async with pool.acquire() as conn:
            lo, hi = await conn.fetchrow(
                "SELECT min(ts_ns), max(ts_ns) FROM trades WHERE ts_ns >= $1 AND ts_ns <= $2 "
                "AND (cardinality($3::text[]) = 0 OR symbol = ANY($3::text[])) AND ($4::text IS NULL OR venue = $4)",
                data.start_ns if data.start_ns is not None else 0,
                data.end_ns if data.end_ns is not None else 2**62,
                data.symbols,
                data.venue,
            )
            symbols = data.symbols or [
                r["symbol"]
                for r in await conn.fetch(
                    "SELECT DISTINCT symbol FROM trades WHERE ts_ns >= $1 AND ts_ns <= $2 "
                    "AND ($3::text IS NULL OR venue = $3) ORDER BY symbol",
                    lo or 0,
                    hi or 0,
                    data.venue,
                )
            ]
        if lo is None or not symbols:
            raise EngineError("no stored trades match the backtest's symbols, venue and time range")
        if not await models.ready():
            raise ServiceUnreachableError(f"the model service at {models.url} is not ready")
        store, state = await open_account(pool, options)
        core = paper_core(options, state, data.venue or "paper", data.bar_seconds)
        trader = Trader(
            core,
            store,
            models,
            interval_ns=data.bar_seconds * NS_PER_S,
            grace_ns=int(options.grace_s * NS_PER_S),
            namespace=online.layout.prefix.rsplit(":", 1)[1],
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
            symbols,
            online_sets(data.feature_sets, served_sets),
            online=online,
            recorder=None,
            bar_seconds=data.bar_seconds,
            grace_s=options.grace_s,
            book_every_s=0.0,
            wall_clock=False,
        )
        trader.attach(plane)
        interval_ns, grace_ns = plane.interval_ns, plane.grace_ns
        first_interval = lo // interval_ns * interval_ns
        # A live run warms up with history ending where it starts, and its first trade can come
        # an interval or two later: two intervals of margin take all of that history.
        warm = options.warmup_bars + 2 if options.warmup_bars else 0
        warm_bars = await stored_bars(pool, symbols, data.bar_seconds, first_interval, warm)
        # The stored headlines, scored by the served sentiment model: the features count each in
        # the interval it was published in (warm-up included), the strategy from its time on.
        news: list[tuple[int, list[str], float]] = []
        if "sentiment" in data.feature_sets:
            news = await _scored_news(pool, trader, symbols, first_interval - warm * interval_ns, hi + 1)
            for ts_ns, mentioned, score in news:
                plane.add_news(ts_ns, mentioned, score)
        await plane.warm_up(warm_bars, record=False)
        trades = 0
        headline = 0
        last_progress = time.monotonic()
        async for trade in stored_trades(pool, data, lo, hi):
            while headline < len(news) and news[headline][0] <= trade.ts_ns:
                core.add_news(*news[headline])
                headline += 1
            due = plane.next_close_ns()
            while due is not None and trade.ts_ns >= due:
                await plane.close_interval(due - interval_ns - grace_ns)
                due = plane.next_close_ns()
                if data.pace_s:
                    await asyncio.sleep(data.pace_s)
            trader.on_trade(trade)
            trades += 1
            if progress is not None and time.monotonic() - last_progress > 5:
                last_progress = time.monotonic()
                progress(summarize(trader, last_progress - started, trades))
        # Everything up to the last stored trade is done: a rerun of this account resumes after it.
        await trader.flush(checkpoint=(plane.stats.last_close_ns, hi + 1))
        return summarize(trader, time.monotonic() - started, trades)
    finally:
        with contextlib.suppress(StorageError):
            await asyncio.to_thread(online.clear_namespace)
        base.close()
        await models.close()
        await pool.close()
