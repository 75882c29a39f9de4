"""``python -m engine run|status``: paper trading live, and what an account holds.

``run`` streams venues (or a local replay exchange) through the data plane into the trading
core, trades on paper and stores everything; ``status`` reads an account back from
PostgreSQL. The pieces every trading session is made of (the account, the core, the
strategy in force, warm-up bars) are here too: :mod:`engine.backtest` builds its session
from them over stored trades.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from engine.config import EngineConfig
from engine.dataplane import DataPlane
from engine.errors import ConfigError, EngineError
from engine.recorder import Recorder
from engine.session import RecordOptions, Session, VenueFeeds, WallClock, check_services, warm_up_plane
from engine.summary import TradeSummary, summarize
from engine.trading.breaker import CircuitBreaker
from engine.trading.core import TradingCore
from engine.trading.execution import PaperCosts
from engine.trading.orders import money
from engine.trading.risk import RiskLimits
from engine.trading.simulator import PaperTerms
from engine.trading.store import AccountState, TradingStore
from engine.trading.strategy import StrategyParams
from engine.trading.trader import Trader
from feature_store.database import open_pool
from feature_store.errors import StorageError
from feature_store.features.catalog import FEATURE_SETS
from feature_store.features.registry import FeatureSet
from feature_store.records import NS_PER_S
from feature_store.redis_store import RedisOnlineStore
from serving.client import ModelClient, RequestRejected, ServiceUnavailable

__all__ = ["TradingOptions", "account_status", "run_trading"]

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

    def terms(self) -> PaperTerms:
        """What the paper account trades under (the validation's strategy backtest uses the same)."""
        return PaperTerms(self.costs, self.limits, self.initial_cash, self.order_ttl_s, self.grace_s)

    def __post_init__(self) -> None:
        if not _ACCOUNT.match(self.account):
            raise ConfigError(f"account {self.account!r} is invalid: 1-40 letters, digits, '_' or '-'")
        if self.initial_cash <= 0:
            raise ConfigError(f"initial cash must be > 0, got {self.initial_cash}")
        if self.warmup_bars < 0:
            raise ConfigError(f"warm-up bars must be >= 0, got {self.warmup_bars}")
        if self.model_timeout_s <= 0 or (self.order_ttl_s is not None and self.order_ttl_s <= 0) or self.grace_s < 0:
            raise ConfigError("model timeout and order TTL must be > 0 and grace >= 0")


async def open_account(
    pool: asyncpg.Pool, options: TradingOptions, spool_dir: Path | None = None
) -> tuple[TradingStore, AccountState]:
    """The account's store and its state as stored (created with its initial cash when new).

    Trading records an earlier run spooled under ``spool_dir`` at a stop with PostgreSQL away
    are written first.
    """
    store = TradingStore(pool, options.account)
    await store.ensure_account(options.initial_cash, time.time_ns())
    if spool_dir is not None:
        written = await store.write_spooled(spool_dir)
        if written:
            log.warning("%d trading records spooled at an earlier stop are now stored", written)
    return store, await store.load()


def paper_core(options: TradingOptions, state: AccountState, venue: str, interval_s: int) -> TradingCore:
    """The trading core of a paper account on ``interval_s`` bars (orders live one bar by default)."""
    params = options.params or StrategyParams(origin="default (the price model's strategy not read yet)")
    return options.terms().core(options.account, state.portfolio, params, venue=venue, interval_s=interval_s)


@dataclass(frozen=True)
class _Served:
    """What the model service says it serves, as far as trading cares."""

    horizon_bars: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    strategy: dict[str, Any] | None = None
    feature_sets: tuple[str, ...] = ()  # the feature sets the served models read
    interval_s: int | None = None  # the bar length the price model was trained on


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
    sets = [
        str(name)
        for info in served.values()
        if isinstance(info, dict) and isinstance(info.get("feature_sets"), dict)
        for name in info["feature_sets"]
    ]
    interval = price.get("interval_s")
    return _Served(
        int(price.get("horizon_bars", 0)),
        tags,
        strategy,
        tuple(dict.fromkeys(sets)),
        int(interval) if isinstance(interval, int | float) and interval > 0 else None,
    )


async def start_trader(trader: Trader, models: ModelClient, options: TradingOptions) -> tuple[str, ...]:
    """The served versions, horizon and strategy in force before the first decision.

    Returns the names of the feature sets the served models read (the engine computes them
    online beside the ones it was asked for).
    """
    served = await _served(models)
    bar_s = trader.interval_ns // NS_PER_S
    if served.interval_s is not None and served.interval_s != bar_s:
        raise ConfigError(
            f"the price model served ({served.tags.get('price')}) was trained on {served.interval_s}-second bars "
            f"and this run makes {bar_s}-second bars, so it would get no forecast: run with --bar-seconds "
            f"{served.interval_s}, or train and promote a price model on {bar_s}-second bars"
        )
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
    return served.feature_sets


def online_sets(asked: list[str], served: tuple[str, ...]) -> list[FeatureSet]:
    """The feature sets to compute online: those asked for, and those the served models read."""
    names = list(dict.fromkeys([*asked, *(name for name in served if name in FEATURE_SETS)]))
    return [FEATURE_SETS[name] for name in names]


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

    A session of venue feeds on the wall clock with a paper trader. It starts warm: the bars
    its features need (``options.warmup_bars``) are backfilled from the venue's REST history
    where missing, the features are stepped through them, and the last of them is decided at
    once; then it trades every bar as it closes.

    Raises:
        ServiceUnreachableError: PostgreSQL (needed: orders are stored before they are sent)
            or Redis cannot be reached at start.
    """
    await check_services(database_url, redis_url if record.online else None)
    config = EngineConfig(interval=record.interval, namespace=options.namespace)
    pool = await open_pool(database_url, min_size=1, max_size=4)
    models = ModelClient(options.serving_url, timeout_s=options.model_timeout_s, retries=0)
    online: RedisOnlineStore | None = None
    recorder: Recorder | None = None
    source: VenueFeeds | None = None
    started = time.monotonic()
    try:
        store, state = await open_account(pool, options, record.spool_dir)
        venue = record.venues[0]
        core = paper_core(options, state, venue, config.interval.seconds)
        breaker = CircuitBreaker(options.breaker_failures, options.breaker_cooldown_s)
        trader = Trader(
            core,
            store,
            models,
            interval=config.interval,
            grace_ns=int(options.grace_s * NS_PER_S),
            breaker=breaker,
            namespace=config.namespace,
        )
        unsent = trader.restore(state)
        if state.fills or state.open_orders:
            log.info(
                "account %s restored from the database: %d fills, %d open positions, %d open orders (%d unsent)",
                options.account,
                state.fills,
                len(state.portfolio.open_positions()),
                len(state.open_orders),
                len(unsent),
            )
        core.submit(unsent)  # stored before a crash, never sent
        served_sets = await start_trader(trader, models, options)
        source = await VenueFeeds(record).open()
        online = RedisOnlineStore.from_url(redis_url) if record.online and redis_url else None
        if online is not None and config.namespace:
            online = online.in_namespace(config.namespace)
        recorder = Recorder(database_url, spool_dir=record.spool_dir) if record.database else None
        plane = DataPlane(
            source.symbols,
            online_sets(record.feature_sets, served_sets),
            online=online,
            recorder=recorder,
            interval=config.interval,
            grace_s=options.grace_s,
            book_every_s=record.book_every_s if record.books else 0.0,
            book_depth=record.book_depth,
        )
        trader.attach(plane)
        history = await warm_up_plane(pool, source, plane, options.warmup_bars)
        if options.warmup_bars:
            log.info("features warmed up with %d bars", len(history))
            decided = await plane.decide_warm_up()
            if decided is not None:
                log.info("first decision made at start, on the bar of %d (the last one warmed up)", decided)
        # What the warm-up built lives as long as the run: out of the collector's way (full
        # collections over it were the engine's longest pauses).
        gc.freeze()
        session = Session(
            source, WallClock(), plane, trader=trader, recorder=recorder, metrics_port=record.metrics_port
        )
        if stop is not None:
            session.stop_event = stop
        session.started = started
        if options.news is not None:
            news = options.news

            async def follow_news() -> None:
                await _tail_news(news, trader, session.stop_event)

            session.extra.append(follow_news)

        def report() -> None:
            if progress is not None:
                progress(summarize(trader, time.monotonic() - started, plane.stats.trades, session.feeds))

        await session.run(duration_s=record.duration_s, progress=report, progress_every_s=progress_every_s)
        if not await trader.flush():
            path = trader.spool_journal(record.spool_dir)
            log.error(
                "PostgreSQL is away at stop: %d trading records kept in %s; they are stored first at the next start",
                trader.stats.journal_spooled,
                path,
            )
        return summarize(trader, time.monotonic() - started, plane.stats.trades, session.feeds)
    finally:
        if source is not None:
            await source.close()
        if recorder is not None:
            await recorder.close()
        if online is not None:
            online.close()
        await models.close()
        await pool.close()


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
