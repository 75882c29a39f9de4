"""``python -m engine run|backtest|status``: paper trading live, the same over stored data, and
what an account holds.

``run`` streams venues (or a local replay exchange) through the data plane into the trading
core, trades on paper and stores everything; ``backtest`` feeds stored trades through the very
same code with a simulated clock; ``status`` reads an account back from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from engine.dataplane import DataPlane
from engine.errors import ConfigError, EngineError, ServiceUnreachableError
from engine.feeds.client import FeedClient, make_feed
from engine.metrics import EngineCollector, MetricsServer
from engine.record import MarketSource, RecordOptions, check_services
from engine.recorder import Recorder
from engine.replay.server import ReplayExchange
from engine.trading.breaker import CircuitBreaker
from engine.trading.core import TradingCore
from engine.trading.execution import PaperBroker, PaperCosts
from engine.trading.orders import money
from engine.trading.risk import PreTradeRisk, RiskLimits
from engine.trading.store import AccountState, TradingStore
from engine.trading.strategy import StrategyParams
from engine.trading.trader import Trader
from feature_store.database import open_pool
from feature_store.errors import StorageError
from feature_store.features.catalog import FEATURE_SETS
from feature_store.market_data import MarketDataStore
from feature_store.records import NS_PER_S, Bar, Trade
from feature_store.redis_store import RedisOnlineStore
from serving.client import ModelClient, RequestRejected, ServiceUnavailable

__all__ = [
    "BacktestOptions",
    "TradeSummary",
    "TradingOptions",
    "account_status",
    "backtest",
    "run_trading",
    "stored_trades",
]

log = logging.getLogger("engine.trade")

_ACCOUNT = re.compile(r"^[A-Za-z0-9_\-]{1,40}$")


@dataclass
class TradingOptions:
    """How the engine trades (the CLI flags, one for one)."""

    account: str = "paper"
    initial_cash: Decimal = Decimal(1_000_000)
    serving_url: str | None = None
    model_timeout_s: float = 0.5
    breaker_failures: int = 3
    breaker_cooldown_s: float = 5.0
    order_ttl_s: float | None = None  # None: one bar (an order waits for the bar's trades, then is replaced)
    grace_s: float = 0.25
    limits: RiskLimits = field(default_factory=RiskLimits)
    costs: PaperCosts = field(default_factory=PaperCosts)
    # None: trade the strategy the price model was validated with (from the service), with
    # ``strategy_overrides`` (CLI flags) on top; set: trade exactly these, whatever is served.
    params: StrategyParams | None = None
    strategy_overrides: dict[str, Any] = field(default_factory=dict)
    news: Path | None = None
    warmup_bars: int = 800
    namespace: str | None = None  # online features under their own namespace (a demo beside live data)

    def __post_init__(self) -> None:
        if not _ACCOUNT.match(self.account):
            raise ConfigError(f"account {self.account!r} is invalid: 1-40 letters, digits, '_' or '-'")
        if self.initial_cash <= 0:
            raise ConfigError(f"initial cash must be > 0, got {self.initial_cash}")
        if self.warmup_bars < 0:
            raise ConfigError(f"warm-up bars must be >= 0, got {self.warmup_bars}")
        if self.model_timeout_s <= 0 or (self.order_ttl_s is not None and self.order_ttl_s <= 0) or self.grace_s < 0:
            raise ConfigError("model timeout and order TTL must be > 0 and grace >= 0")


@dataclass
class BacktestOptions:
    """What ``backtest`` replays: stored trades of ``symbols`` (all by default) in a time range."""

    symbols: list[str] = field(default_factory=list)
    venue: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    bar_seconds: int = 60
    feature_sets: list[str] = field(default_factory=lambda: sorted(FEATURE_SETS))
    chunk_s: float = 3600.0
    pace_s: float = 0.0  # wall seconds per bar at least (0: as fast as the models answer)


@dataclass
class TradeSummary:
    """What a trading run (live or backtest) did."""

    account: str
    seconds: float
    bars: int
    decisions: int
    orders: int
    fills: int
    cancels: int
    denials: dict[str, int]
    equity: Decimal
    pnl: Decimal
    realized_pnl: Decimal
    fees: Decimal
    max_drawdown: float
    positions: int
    open_orders: int
    tick_to_decision_ms: tuple[float | None, float | None]
    model_call_ms: tuple[float | None, float | None]
    model_versions: dict[str, str]
    model_failures: int
    breaker_opens: int
    journal_failures: int
    trades: int
    feeds: dict[str, dict[str, Any]] = field(default_factory=dict)
    killed: str | None = None
    last_error: str = ""  # the latest model, risk, journal or order-store failure, if any
    strategy: str = ""  # the strategy in force and where it came from
    holds: dict[str, int] = field(default_factory=dict)  # decisions that sent no order, by reason
    bars_without_model: int = 0

    def why_no_orders(self) -> str:
        """Why a run that decided sent no order (empty when it sent some or decided nothing)."""
        if self.orders or not self.bars:
            return ""
        reasons = []
        if self.bars_without_model:
            reasons.append(f"{self.bars_without_model} of {self.bars} bars had no forecast from the model service")
        names = {
            "inside_band": "inside the no-trade band",
            "below_min_order": "change below the minimum order",
            "no price yet": "no trade seen yet",
            "stale_forecast": "forecast for another bar",
        }
        for reason, n in sorted(self.holds.items(), key=lambda item: -item[1]):
            reasons.append(f"{n} holds: {names.get(reason, reason)}")
        for check, n in sorted(self.denials.items()):
            reasons.append(f"{n} denied by {check}")
        return "; ".join(reasons) or "no symbol was forecast"

    def lines(self) -> list[str]:
        def ms(pair: tuple[float | None, float | None]) -> str:
            return "n/a" if pair[0] is None else f"p50 {pair[0]:.1f} ms, p99 {pair[1]:.1f} ms"

        denials = ", ".join(f"{k} {v}" for k, v in sorted(self.denials.items())) or "none"
        out = [
            f"account {self.account}: {self.seconds:.1f} s, {self.trades} trades, {self.bars} bars decided",
            f"  decisions {self.decisions}, orders {self.orders}, fills {self.fills}, cancels {self.cancels}",
            f"  denials: {denials}",
            f"  equity {self.equity:.2f}, PnL {self.pnl:.2f} (realized {self.realized_pnl:.2f}, fees {self.fees:.2f}), "
            f"max drawdown {self.max_drawdown:.2%}",
            f"  positions {self.positions}, open orders {self.open_orders}",
            f"  tick to decision: {ms(self.tick_to_decision_ms)}; model call: {ms(self.model_call_ms)}",
            f"  models: {', '.join(f'{k}={v}' for k, v in sorted(self.model_versions.items())) or 'none answered'}",
            f"  model failures {self.model_failures}, breaker opened {self.breaker_opens} times, "
            f"journal write failures {self.journal_failures}",
        ]
        if self.strategy:
            out.append(f"  strategy: {self.strategy}")
        why = self.why_no_orders()
        if why:
            out.append(f"  NO ORDERS: {why}")
        if self.last_error:
            out.append(f"  last error: {self.last_error}")
        if self.killed:
            out.append(f"  KILL SWITCH: {self.killed}")
        return out

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["why_no_orders"] = self.why_no_orders()
        return json.loads(orjson.dumps(out, default=str))  # type: ignore[no-any-return]


def _summary(trader: Trader, seconds: float, trades: int, feeds: list[FeedClient] | None = None) -> TradeSummary:
    core = trader.core
    p = core.portfolio
    return TradeSummary(
        account=core.account,
        seconds=seconds,
        bars=core.stats.bars_decided,
        decisions=core.stats.decisions,
        orders=core.stats.orders,
        fills=core.stats.fills,
        cancels=core.stats.cancels,
        denials=dict(core.stats.denials_by_check),
        equity=p.equity(),
        pnl=p.pnl(),
        realized_pnl=p.realized_pnl(),
        fees=sum((pos.fees for pos in p.positions.values()), Decimal(0)),
        max_drawdown=core.stats.max_drawdown,
        positions=len(p.open_positions()),
        open_orders=len(core.orders),
        tick_to_decision_ms=(
            trader.stats.tick_to_decision_s.quantile_ms(0.5),
            trader.stats.tick_to_decision_s.quantile_ms(0.99),
        ),
        model_call_ms=(trader.stats.model_call_s.quantile_ms(0.5), trader.stats.model_call_s.quantile_ms(0.99)),
        model_versions=dict(trader.model_versions),
        model_failures=trader.stats.model_failures,
        breaker_opens=trader.breaker.opens if trader.breaker else 0,
        journal_failures=trader.stats.journal_failures,
        trades=trades,
        feeds={f.venue: f.stats.as_dict() for f in feeds or []},
        killed=core.risk.killed,
        last_error=trader.stats.last_error,
        strategy=core.params.describe(),
        holds=dict(core.stats.holds_by_reason),
        bars_without_model=core.stats.bars_without_model,
    )


async def _open_account(pool: asyncpg.Pool, options: TradingOptions) -> tuple[TradingStore, AccountState]:
    store = TradingStore(pool, options.account)
    await store.ensure_account(options.initial_cash, time.time_ns())
    return store, await store.load()


def _core(options: TradingOptions, state: AccountState, venue: str, interval_s: int) -> TradingCore:
    ttl_s = options.order_ttl_s if options.order_ttl_s is not None else interval_s
    return TradingCore(
        options.account,
        state.portfolio,
        PaperBroker(options.costs),
        PreTradeRisk(options.limits),
        options.params or StrategyParams(origin="default (the price model's strategy not read yet)"),
        venue=venue,
        order_ttl_ns=int(ttl_s * NS_PER_S),
    )


@dataclass(frozen=True)
class _Served:
    """What the model service says it serves, as far as trading cares."""

    horizon_bars: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    strategy: dict[str, Any] | None = None


async def _served(models: ModelClient) -> _Served:
    """The price model's horizon and strategy and the served versions, if the service answers."""
    try:
        versions = await models.versions()
    except (ServiceUnavailable, RequestRejected) as exc:
        log.warning("model service not answering yet (%s); trading opens no risk until it does", exc)
        return _Served()
    served = versions.get("models", {})
    tags = {name: str(info.get("tag")) for name, info in served.items() if isinstance(info, dict)}
    price = served.get("price") or {}
    strategy = price.get("strategy") if isinstance(price.get("strategy"), dict) else None
    return _Served(int(price.get("horizon_bars", 0)), tags, strategy)


async def _start_trader(trader: Trader, models: ModelClient, options: TradingOptions) -> None:
    """The served versions, horizon and strategy in force before the first decision."""
    served = await _served(models)
    trader.horizon_bars, trader.model_versions = served.horizon_bars, served.tags
    trader.strategy_fixed = options.params is not None
    trader.strategy_overrides = dict(options.strategy_overrides)
    if options.params is not None:
        log.warning(
            "trading the strategy given, not the one the price model was validated with: %s", options.params.describe()
        )
    if options.strategy_overrides:
        log.warning(
            "strategy parameters overridden by hand: %s (the validation chose others)",
            ", ".join(f"{k}={v}" for k, v in sorted(options.strategy_overrides.items())),
        )
    await trader.adopt_strategy(served.tags.get("price"), served.strategy, time.time_ns())


async def run_trading(
    record: RecordOptions,
    options: TradingOptions,
    *,
    database_url: str,
    redis_url: str | None,
    progress: Callable[[TradeSummary], None] | None = None,
    progress_every_s: float = 5.0,
    stop: asyncio.Event | None = None,
) -> TradeSummary:
    """Trade on paper until ``record.duration_s`` passes or ``stop`` is set.

    Raises:
        ServiceUnreachableError: PostgreSQL (needed: orders are stored before they are sent)
            or Redis cannot be reached at start.
    """
    await check_services(database_url, redis_url if record.online else None)
    stop = stop or asyncio.Event()
    pool = await open_pool(database_url, min_size=1, max_size=4)
    models = ModelClient(options.serving_url, timeout_s=options.model_timeout_s, retries=0)
    exchange: ReplayExchange | None = None
    online: RedisOnlineStore | None = None
    recorder: Recorder | None = None
    metrics: MetricsServer | None = None
    tasks: list[asyncio.Task[Any]] = []
    feeds: list[FeedClient] = []
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        store, state = await _open_account(pool, options)
        venue = record.venues[0]
        core = _core(options, state, venue, record.bar_seconds)
        breaker = CircuitBreaker(options.breaker_failures, options.breaker_cooldown_s)
        trader = Trader(
            core,
            store,
            models,
            interval_ns=record.bar_seconds * NS_PER_S,
            grace_ns=int(options.grace_s * NS_PER_S),
            breaker=breaker,
            namespace=options.namespace,
        )
        unsent = trader.restore(state)
        if state.fills or state.open_orders:
            log.warning(
                "account %s restored from the database: %d fills, %d open positions, %d open orders (%d unsent)",
                options.account,
                state.fills,
                len(state.portfolio.open_positions()),
                len(state.open_orders),
                len(unsent),
            )
        core.submit(unsent)  # stored before a crash, never sent
        await _start_trader(trader, models, options)
        source = await MarketSource.open(record)
        exchange, symbols, urls, market = source.exchange, source.symbols, source.urls, source.market
        if not symbols:
            raise ConfigError("name the symbols to trade (--symbols) or start a replay (--replay N)")
        online = RedisOnlineStore.from_url(redis_url) if record.online and redis_url else None
        if online is not None and options.namespace:
            online = online.in_namespace(options.namespace)
        recorder = Recorder(database_url, spool_dir=record.spool_dir) if record.database else None
        plane = DataPlane(
            symbols,
            [FEATURE_SETS[name] for name in record.feature_sets],
            online=online,
            recorder=recorder,
            bar_seconds=record.bar_seconds,
            grace_s=options.grace_s,
            book_every_s=record.book_every_s if record.books else 0.0,
            book_depth=record.book_depth,
        )
        trader.attach(plane)
        now_interval = time.time_ns() // plane.interval_ns * plane.interval_ns
        if market is not None and options.warmup_bars:
            history = market.history(options.warmup_bars, record.bar_seconds, now_interval)
        else:
            history = await _stored_bars(pool, symbols, record.bar_seconds, now_interval, options.warmup_bars)
        if options.warmup_bars:
            warmed = await plane.warm_up(history, record=bool(record.replay_symbols))
            log.warning("features warmed up with %d bars over %d intervals", len(history), warmed)
        feeds = [
            make_feed(v, symbols, trader, url=urls[v], rest_url=urls["rest"], books=record.books) for v in record.venues
        ]
        if record.metrics_port >= 0:
            metrics = await MetricsServer(
                EngineCollector(feeds, plane, recorder, trader), port=record.metrics_port
            ).start()
        tasks = [asyncio.create_task(feed.run(), name=f"feed-{feed.venue}") for feed in feeds]
        tasks.append(asyncio.create_task(plane.run(), name="dataplane"))
        tasks.append(asyncio.create_task(trader.run_flusher(), name="journal"))
        if recorder is not None:
            tasks.append(asyncio.create_task(recorder.run(), name="recorder"))
        if options.news is not None:
            tasks.append(asyncio.create_task(_tail_news(options.news, trader, stop), name="news"))
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        while not stop.is_set():
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if record.duration_s is not None and time.monotonic() - started >= record.duration_s:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=progress_every_s)
            if progress is not None:
                progress(_summary(trader, time.monotonic() - started, plane.stats.trades, feeds))
        for feed in feeds:
            feed.stop()
        plane.stop()
        trader.stop()
        await asyncio.gather(*tasks[: len(feeds) + 2], return_exceptions=True)
        if not await trader.flush():
            log.error("trading records could not be written at stop: %d entries lost", len(core.journal))
        return _summary(trader, time.monotonic() - started, plane.stats.trades, feeds)
    finally:
        for feed in feeds:
            feed.stop()
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if recorder is not None:
            await recorder.close()
        if online is not None:
            online.close()
        if metrics is not None:
            await metrics.stop()
        if exchange is not None:
            await exchange.stop()
        await models.close()
        await pool.close()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)


async def _stored_bars(pool: asyncpg.Pool, symbols: list[str], bar_seconds: int, end_ns: int, bars: int) -> list[Bar]:
    """The stored bars of ``symbols`` in the ``bars`` intervals before ``end_ns`` (warm-up history)."""
    if bars <= 0:
        return []
    try:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT symbol, start_ns, interval_s, open, high, low, close, volume, buy_volume, vwap, trades "
                "FROM bars WHERE interval_s = $1 AND symbol = ANY($2::text[]) AND start_ns >= $3 AND start_ns < $4 "
                "ORDER BY start_ns, symbol",
                bar_seconds,
                symbols,
                end_ns - bars * bar_seconds * NS_PER_S,
                end_ns,
            )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise StorageError(f"reading warm-up bars failed: {exc}") from exc
    return [Bar(*r) for r in rows]


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
        batch = items[start : start + 64]
        try:
            scored = await trader.models.sentiment([text for _, _, text in batch])
        except (ServiceUnavailable, RequestRejected) as exc:
            raise EngineError(f"the sentiment model failed on stored headlines: {exc}") from exc
        for (ts_ns, mentioned, _), result in zip(batch, scored, strict=True):
            out.append((ts_ns, mentioned, float(result["score"])))
            trader.model_versions.update({k: v for k, v in result.get("models", {}).items() if k == "sentiment"})
    trader.stats.news_scored += len(out)
    return sorted(out, key=lambda item: item[0])


async def _tail_news(path: Path, trader: Trader, stop: asyncio.Event, poll_s: float = 0.5) -> None:
    """Follow a JSON-lines file of headlines (``ts_ns``, ``symbols``, ``headline``) and score each
    new one as it arrives. Malformed lines are counted and dropped."""
    offset = 0
    bad = 0
    while not stop.is_set():
        if path.exists():
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            end = chunk.rfind(b"\n") + 1
            offset += end
            items: list[tuple[int, list[str], str]] = []
            for line in chunk[:end].splitlines():
                try:
                    row = orjson.loads(line)
                    items.append((int(row["ts_ns"]), [str(s) for s in row["symbols"]], str(row["headline"])))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    bad += 1
                    if bad <= 5:
                        log.warning("news line dropped (not {ts_ns, symbols, headline}): %.200r", line)
            for start in range(0, len(items), 64):
                await trader.score_news(items[start : start + 64])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=poll_s)


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
        store, state = await _open_account(pool, options)
        core = _core(options, state, data.venue or "paper", data.bar_seconds)
        trader = Trader(
            core,
            store,
            models,
            interval_ns=data.bar_seconds * NS_PER_S,
            grace_ns=int(options.grace_s * NS_PER_S),
            namespace=online.layout.prefix.rsplit(":", 1)[1],
        )
        unsent = trader.restore(state)
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
        await _start_trader(trader, models, options)
        await asyncio.to_thread(online.clear_namespace)
        plane = DataPlane(
            symbols,
            [FEATURE_SETS[name] for name in data.feature_sets],
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
        warm_bars = await _stored_bars(pool, symbols, data.bar_seconds, first_interval, warm)
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
                progress(_summary(trader, last_progress - started, trades))
        # Everything up to the last stored trade is done: a rerun of this account resumes after it.
        await trader.flush(checkpoint=(plane.stats.last_close_ns, hi + 1))
        return _summary(trader, time.monotonic() - started, trades)
    finally:
        with contextlib.suppress(StorageError):
            await asyncio.to_thread(online.clear_namespace)
        base.close()
        await models.close()
        await pool.close()


async def account_status(database_url: str, account: str, *, decisions: int = 10) -> dict[str, Any]:
    """An account as stored: positions (marked at the last bar close), PnL, open orders, the last
    decisions with the model versions that made them, and the last risk events."""
    await check_services(database_url, None)
    pool = await open_pool(database_url, min_size=1, max_size=2)
    try:
        store = TradingStore(pool, account)
        state = await store.load()
        strategy = await store.strategy()
        portfolio = state.portfolio
        symbols = sorted(portfolio.positions)
        async with pool.acquire() as conn:
            marks = await conn.fetch(
                "SELECT DISTINCT ON (symbol) symbol, close FROM bars WHERE symbol = ANY($1::text[]) "
                "ORDER BY symbol, start_ns DESC",
                symbols,
            )
            last = await conn.fetch(
                "SELECT ts_ns, symbol, action, reason, forecast, forecast_std, target_position, model_versions, "
                "feature_set_version, realized_return FROM decisions WHERE account = $1 "
                "ORDER BY ts_ns DESC, symbol LIMIT $2",
                account,
                decisions,
            )
            events = await conn.fetch(
                "SELECT ts_ns, kind, symbol, reason FROM risk_events WHERE account = $1 ORDER BY ts_ns DESC LIMIT 10",
                account,
            )
        for row in marks:
            portfolio.mark(row["symbol"], Decimal(repr(row["close"])))
    except StorageError as exc:
        raise EngineError(str(exc)) from exc
    finally:
        await pool.close()

    def fmt(value: Decimal) -> str:
        return format(money(value), "f")

    return {
        "account": account,
        "initial_cash": fmt(portfolio.initial_cash),
        "cash": fmt(portfolio.cash),
        "equity": fmt(portfolio.equity()),
        "pnl": fmt(portfolio.pnl()),
        "realized_pnl": fmt(portfolio.realized_pnl()),
        "kill_switch": state.kill_reason,
        "strategy": strategy,
        "positions": [
            {
                "symbol": p.symbol,
                "quantity": str(p.quantity),
                "average_price": str(p.average_price),
                "mark": str(portfolio.marks.get(p.symbol, "")),
                "realized_pnl": str(p.realized_pnl),
            }
            for p in portfolio.positions.values()
            if p.quantity
        ],
        "open_orders": [
            {
                "client_order_id": o.client_order_id,
                "symbol": o.symbol,
                "side": o.side,
                "quantity": str(o.quantity),
                "filled": str(o.filled_quantity),
                "status": o.status,
            }
            for o in state.open_orders
        ],
        "last_decisions": [
            {
                "ts_ns": r["ts_ns"],
                "symbol": r["symbol"],
                "action": r["action"],
                "reason": r["reason"],
                "forecast": r["forecast"],
                "target_position": str(r["target_position"]),
                "model_versions": json.loads(r["model_versions"]),
                "feature_set_version": r["feature_set_version"],
                "realized_return": r["realized_return"],
            }
            for r in last
        ],
        "risk_events": [dict(r) for r in events],
    }
