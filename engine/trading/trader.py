"""The asynchronous shell around :class:`~engine.trading.core.TradingCore`, live and backtest.

:class:`Trader` is the feeds' sink (it passes everything on to the data plane) and the data
plane's ``on_close`` hook. At each close it makes one batched call to the model service for
every symbol that closed or is held, lets the core decide, stores the new orders, then sends
them, and asks the risk model for the VaR of the portfolio the orders aim at.

Venue time keeps the two modes identical: a bar ``[t, t + bar)`` is decided at
``t + bar + grace``. A trade at or after that instant that arrives before the decision is
held and given to the core (and its paper broker) only after the decision, as a backtest,
which feeds trades in time order, does.

The journal (fills, order states, decisions, risk events) is written to PostgreSQL in one
transaction every ``flush_s`` live, and after every bar in a backtest (with a checkpoint that
a resumed backtest starts from). While PostgreSQL is away the journal waits in memory; past
``max_backlog`` entries no new risk is opened until it drains. What is still waiting at a
live stop is spooled to disk (:meth:`Trader.spool_journal`) and stored first at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.config import BarInterval
from engine.dataplane import DataPlane
from engine.errors import ConfigError, EngineError
from engine.feeds.book import OrderBook
from engine.feeds.records import Quote
from engine.latency import LatencyHistogram
from engine.trading.breaker import CircuitBreaker
from engine.trading.core import Forecasts, Journal, TradingCore
from engine.trading.orders import Order, price_of
from engine.trading.risk import RiskEvent
from engine.trading.spool import JournalWrite, spool
from engine.trading.store import AccountState, TradingStore
from engine.trading.strategy import StrategyParams
from feature_store.errors import StorageError
from feature_store.features.online import FeatureStep
from feature_store.records import Bar, Trade
from serving.client import ModelClient, RequestRejected, ServiceUnavailable

__all__ = ["Trader", "TraderStats"]

log = logging.getLogger("engine.trader")


@dataclass
class TraderStats:
    """Counters and latency samples of the trading shell (exported as Prometheus metrics)."""

    tick_to_decision_s: LatencyHistogram = field(default_factory=LatencyHistogram)
    model_call_s: LatencyHistogram = field(default_factory=LatencyHistogram)
    close_to_online_s: LatencyHistogram = field(default_factory=LatencyHistogram)
    order_store_s: LatencyHistogram = field(default_factory=LatencyHistogram)
    model_calls: int = 0
    model_failures: int = 0
    risk_calls: int = 0
    risk_failures: int = 0
    symbols_rejected: int = 0
    news_scored: int = 0
    news_failures: int = 0
    held_trades: int = 0
    journal_writes: int = 0
    journal_failures: int = 0
    journal_spooled: int = 0  # entries kept in a spool file at a stop with PostgreSQL away
    orders_unsent: int = 0
    last_error: str = ""


class Trader:
    """See the module docstring.

    Args:
        core: the trading core.
        store: the trading records (None: nothing is stored, for tests of the loop).
        models: the model service client.
        interval: the bar interval; grace_ns: the data plane's grace after each bar's end.
        namespace: the online-store namespace the service reads (a backtest's), or None.
        breaker: the model-service circuit breaker (None: failures raise, as in a backtest).
        flush_s: how often the journal is written when live.
        max_backlog: journal entries waiting past which no new risk is opened.
    """

    def __init__(
        self,
        core: TradingCore,
        store: TradingStore | None,
        models: ModelClient,
        *,
        interval: BarInterval,
        grace_ns: int,
        namespace: str | None = None,
        breaker: CircuitBreaker | None = None,
        flush_s: float = 0.1,
        max_backlog: int = 200_000,
    ) -> None:
        self.core = core
        self.store = store
        self.models = models
        self.interval = interval
        self.interval_ns = interval.ns
        self.grace_ns = grace_ns
        self.namespace = namespace
        self.breaker = breaker
        self.flush_s = flush_s
        self.max_backlog = max_backlog
        self.stats = TraderStats()
        self.plane: DataPlane | None = None
        self.catch_up_until_ns = 0  # trades before this only warm up (a resumed backtest)
        self.catch_up_bar_ns = -1  # bars up to this one were decided before
        self.horizon_bars = 0
        self.model_versions: dict[str, str] = {}
        # The strategy: the one the price model was validated with (from the service's
        # /versions), with the user's overrides; ``strategy_fixed`` keeps the core's own.
        self.strategy_fixed = False
        self.strategy_overrides: dict[str, Any] = {}
        self.strategy_tag: str | None = None
        self._held: deque[Trade] = deque()
        self._closes: OrderedDict[int, dict[str, float]] = OrderedDict()
        self._realized: list[tuple[int, str, float]] = []
        self._stopping = asyncio.Event()
        self._flush_lock = asyncio.Lock()

    def attach(self, plane: DataPlane) -> None:
        """Make ``plane`` call this trader at each close."""
        self.plane = plane
        plane.on_close = self.on_close

    # --- FeedSink -------------------------------------------------------------------------

    def on_trade(self, trade: Trade) -> None:
        plane = self.plane
        assert plane is not None, "attach a data plane first"
        plane.on_trade(trade)
        if trade.ts_ns < self.catch_up_until_ns:
            self.core.on_trade(trade, match=False)
            return
        due = plane.next_close_ns()
        if self._held or (due is not None and trade.ts_ns >= due):
            self._held.append(trade)
            self.stats.held_trades += 1
            plane.wake()
            return
        self.core.on_trade(trade)

    def on_book(self, venue: str, book: OrderBook) -> None:
        assert self.plane is not None
        self.plane.on_book(venue, book)

    def on_quote(self, quote: Quote) -> None:
        return None

    def on_time(self, venue: str, ts_ns: int) -> None:
        assert self.plane is not None
        self.plane.on_time(venue, ts_ns)

    def _release(self) -> None:
        assert self.plane is not None
        held, self._held = self._held, deque()
        while held:
            due = self.plane.next_close_ns()
            if due is not None and held[0].ts_ns >= due:
                self._held = held
                self.plane.wake()
                return
            self.core.on_trade(held.popleft())

    # --- the strategy in force ------------------------------------------------------------

    async def adopt_strategy(self, price_tag: str | None, strategy: Mapping[str, Any] | None, now_ns: int) -> None:
        """Trade the strategy ``price_tag`` was validated with (plus the user's overrides) from the
        next decision on; recorded for ``engine status``. An invalid one is reported and the
        default strategy trades instead.

        Raises:
            ConfigError: the user's overrides do not fit the strategy (e.g. an exit above its entry).
        """
        self.strategy_tag = price_tag
        if self.strategy_fixed:
            return
        source = price_tag or "no price model"
        if strategy:
            try:
                params = StrategyParams.from_json(strategy, origin=source)
            except ValueError as exc:
                self.stats.last_error = f"strategy of {source}: {exc}"
                log.error("the strategy published with %s is invalid (%s); trading the default", source, exc)
                params = StrategyParams(origin=f"default ({source}'s strategy is invalid)")
        else:
            params = StrategyParams(origin=f"default ({source} publishes no strategy)")
        if self.strategy_overrides:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(self.strategy_overrides.items()))
            try:
                params = replace(params, **self.strategy_overrides, origin=f"{params.origin}, overridden: {shown}")
            except ValueError as exc:
                raise ConfigError(f"the strategy overrides ({shown}) do not fit {source}'s strategy: {exc}") from exc
        if self.core.set_params(params):
            log.info("strategy in force: %s", params.describe())
            if self.store is not None:
                try:
                    await self.store.set_strategy({**params.to_json(), "since_ns": now_ns}, now_ns)
                except StorageError as exc:
                    self.stats.last_error = str(exc)
                    log.warning("%s", exc)

    async def _follow_strategy(self, forecasts: Forecasts, now_ns: int) -> None:
        """After a hot swap of the price model, put its strategy in force before deciding."""
        tag = forecasts.models.get("price")
        if not tag or tag == self.strategy_tag:
            return
        try:
            versions = await self.models.versions()
        except (ServiceUnavailable, RequestRejected) as exc:
            self.stats.last_error = f"versions: {exc}"
            return  # the strategy in force stays until the service answers
        price = versions.get("models", {}).get("price") or {}
        if price.get("tag") == tag:
            await self.adopt_strategy(tag, price.get("strategy"), now_ns)

    # --- restart --------------------------------------------------------------------------

    def restore(self, state: AccountState, *, redecide: bool = False) -> list[Order]:
        """Take back the account's open orders and risk state; return orders never sent.

        ``redecide``: the bars after the account's checkpoint are decided again (a resumed
        backtest), so orders stored for them wait for that decision instead of being returned.
        """
        state.restore_risk(self.core.risk)
        after = state.checkpoint_ns if redecide else None
        return self.core.restore(state.open_orders, redecide_after_ns=after)

    # --- the decision at each close -------------------------------------------------------

    async def on_close(self, start_ns: int, bars: list[Bar], steps: list[FeatureStep], started: float) -> None:
        stats, core = self.stats, self.core
        now_ns = start_ns + self.interval_ns + self.grace_ns
        closes = {b.symbol: b.close for b in bars}
        for bar in bars:
            core.note_close(bar.symbol, bar.close, start_ns + self.interval_ns)
        stats.close_to_online_s.append(time.monotonic() - started)
        self._record_closes(start_ns, closes)
        try:
            if start_ns <= self.catch_up_bar_ns:
                for symbol, close in closes.items():
                    core.portfolio.mark(symbol, price_of(close))
                return
            # Every symbol of the universe is decided at every bar (its features are gap-filled
            # when it did not trade), plus any other symbol still held.
            assert self.plane is not None
            symbols = core.universe(self.plane.symbols)
            forecasts = await self._forecast(symbols, start_ns, now_ns) if symbols else None
            if forecasts is not None:
                await self._follow_strategy(forecasts, now_ns)
            orders = core.decide(start_ns, closes, forecasts, now_ns)
            if orders:
                await self._send(orders, now_ns)
            stats.tick_to_decision_s.append(time.monotonic() - started)
            targets = core.target_positions()
        finally:
            assert self.plane is not None
            self.plane.closing_ns = None  # the decision is made: held trades may go to the broker
            self._release()
        await self._refresh_var(targets, start_ns)
        if self.breaker is None and self.store is not None:
            await self.flush(checkpoint=(start_ns, now_ns))

    async def _forecast(self, symbols: list[str], start_ns: int, now_ns: int) -> Forecasts | None:
        stats, risk, breaker = self.stats, self.core.risk, self.breaker
        if breaker is not None and not breaker.allow():
            risk.model_problem = f"model service unavailable (circuit breaker open: {breaker.last_error})"
            return None
        began = time.monotonic()
        stats.model_calls += 1
        try:
            response = await self.models.forecast(symbols, ts_ns=start_ns, partial=True, namespace=self.namespace)
            forecasts = Forecasts.from_response(response)
        except (ServiceUnavailable, RequestRejected, KeyError, TypeError, ValueError) as exc:
            stats.model_failures += 1
            stats.last_error = f"forecast: {exc}"
            if breaker is None:
                raise EngineError(f"the model service failed at bar {start_ns}: {exc}") from exc
            risk.model_problem = f"model service failed: {exc}"
            if breaker.failure(str(exc)) == "open":
                log.warning("model service circuit breaker open: %s", exc)
                self.core.event(RiskEvent("", "*", now_ns, "breaker_open", str(exc)[:500]))
            return None
        stats.model_call_s.append(time.monotonic() - began)
        risk.model_problem = None
        if breaker is not None and breaker.success() == "closed":
            log.warning("model service circuit breaker closed again")
            self.core.event(RiskEvent("", "*", now_ns, "breaker_closed", "model service answered"))
        if forecasts.rejected:
            stats.symbols_rejected += len(forecasts.rejected)
            if stats.symbols_rejected == len(forecasts.rejected) or not forecasts.symbols:
                symbol, reason = next(iter(forecasts.rejected.items()))
                log.warning(
                    "%d symbols not forecast at bar %d (e.g. %s: %s)", len(forecasts.rejected), start_ns, symbol, reason
                )
        self.horizon_bars = forecasts.horizon_bars
        forecasts.models = {**self.model_versions, **forecasts.models}
        return forecasts

    async def _send(self, orders: list[Order], now_ns: int) -> None:
        """Store the orders, then send those that were new."""
        began = time.monotonic()
        if self.store is None:
            self.core.submit(orders)
            return
        try:
            new = await self.store.insert_orders(orders)
        except StorageError as exc:
            self.stats.orders_unsent += len(orders)
            self.stats.last_error = str(exc)
            log.warning("%s", exc)
            for order in orders:
                self.core.event(
                    RiskEvent(order.client_order_id, order.symbol, now_ns, "write_backlog", "order could not be stored")
                )
            self.core.unsent(orders, "the order could not be stored")
            return
        self.stats.order_store_s.append(time.monotonic() - began)
        core = self.core
        core.submit([o for o in orders if o.client_order_id in new or core.redecided(o)])

    async def _refresh_var(self, targets: dict[str, Decimal], start_ns: int) -> None:
        """The risk model's VaR(99%) of the portfolio the open orders aim at (used at the next bar).

        Live, a failed call leaves the last VaR in force (the breaker and the kill switch guard
        the rest); a backtest stops with the error, since a stale VaR would make it differ from
        the run it reproduces.

        Raises:
            EngineError: the risk model failed in a backtest (no circuit breaker).
        """
        risk = self.core.risk
        if not targets:
            risk.var99 = Decimal(0)
            return
        if self.breaker is not None and self.breaker.state == "open":
            return
        marks = self.core.portfolio.marks
        notional = {s: float(q * marks[s]) for s, q in targets.items() if s in marks}
        if not notional:  # positions restored after a restart, not marked by a bar yet
            return
        self.stats.risk_calls += 1
        try:
            response = await self.models.portfolio_risk(
                notional, ts_ns=start_ns, namespace=self.namespace, interval_s=self.interval.seconds
            )
            var99 = float(response["var99"])
        except (ServiceUnavailable, RequestRejected, KeyError, TypeError, ValueError) as exc:
            self.stats.risk_failures += 1
            self.stats.last_error = f"portfolio_risk: {exc}"
            if self.breaker is None:
                raise EngineError(f"the risk model failed at bar {start_ns}: {exc}") from exc
            return  # the last known VaR stays in force
        if math.isfinite(var99):
            risk.var99 = price_of(abs(var99))
            self.model_versions.update({k: v for k, v in response.get("models", {}).items() if k == "risk"})

    def _record_closes(self, start_ns: int, closes: dict[str, float]) -> None:
        self._closes[start_ns] = closes
        horizon = self.horizon_bars
        while len(self._closes) > max(horizon, 1) + 2:
            self._closes.popitem(last=False)
        if not horizon:
            return
        base = self._closes.get(start_ns - horizon * self.interval_ns)
        if base:
            then = start_ns - horizon * self.interval_ns
            self._realized.extend((then, s, math.log(c / base[s])) for s, c in closes.items() if s in base)

    # --- news -----------------------------------------------------------------------------

    async def score_headlines(self, items: Sequence[tuple[int, list[str], str]]) -> list[tuple[int, list[str], float]]:
        """``(ts_ns, symbols, score)`` of each headline, scored by the sentiment model.

        Raises:
            ServiceUnavailable, RequestRejected: the model service failed.
        """
        scored = await self.models.sentiment([text for _, _, text in items]) if items else []
        out = []
        for (ts_ns, symbols, _), result in zip(items, scored, strict=True):
            out.append((ts_ns, symbols, float(result["score"])))
            self.model_versions.update({k: v for k, v in result.get("models", {}).items() if k == "sentiment"})
        self.stats.news_scored += len(out)
        return out

    async def score_news(self, items: Sequence[tuple[int, list[str], str]]) -> int:
        """Score headlines with the sentiment model; they count from their publication time."""
        try:
            scored = await self.score_headlines(items)
        except (ServiceUnavailable, RequestRejected) as exc:
            self.stats.news_failures += len(items)
            self.stats.last_error = f"sentiment: {exc}"
            log.warning("headlines not scored: %s", exc)
            return 0
        for ts_ns, symbols, score in scored:
            self.core.add_news(ts_ns, symbols, score)
            if self.plane is not None:
                self.plane.add_news(ts_ns, symbols, score)
        return len(scored)

    # --- writing the journal --------------------------------------------------------------

    async def flush(self, checkpoint: tuple[int, int] | None = None) -> bool:
        """Write the journal; True if written (False: kept for the next try)."""
        if self.store is None:
            self.core.journal.take()
            return True
        async with self._flush_lock:
            core = self.core
            if not len(core.journal) and not self._realized and checkpoint is None:
                return True
            journal, realized, write = self._take(checkpoint)
            try:
                await self.store.write(write)
            except StorageError as exc:
                core.journal.put_back(journal)
                self._realized[:0] = realized
                self.stats.journal_failures += 1
                self.stats.last_error = str(exc)
                core.risk.write_backlog = len(core.journal) > self.max_backlog
                if self.breaker is None:
                    raise
                if self.stats.journal_failures <= 5 or self.stats.journal_failures % 100 == 0:
                    log.warning("%s; %d journal entries wait", exc, len(core.journal))
                return False
            self.stats.journal_writes += 1
            core.risk.write_backlog = False
            return True

    def spool_journal(self, directory: Path) -> Path | None:
        """Keep the journal not yet written in a file under ``directory`` (see
        :mod:`engine.trading.spool`); return its path (None: nothing was waiting)."""
        if self.store is None or (not len(self.core.journal) and not self._realized):
            return None
        write = self._take(None)[2]
        path = spool(write, directory)
        self.stats.journal_spooled += write.entries
        return path

    def _take(self, checkpoint: tuple[int, int] | None) -> tuple[Journal, list[tuple[int, str, float]], JournalWrite]:
        """Take the journal and the realized returns waiting, with the write that stores them."""
        assert self.store is not None
        core = self.core
        journal = core.journal.take()
        realized, self._realized = self._realized, []
        write = self.store.statements(
            journal,
            core.portfolio,
            core.risk,
            core.now_ns,
            checkpoint=checkpoint,
            realized=realized,
            fill_seq_start=core.portfolio.fills - len(journal.fills),
        )
        return journal, realized, write

    async def run_flusher(self) -> None:
        """Write the journal every ``flush_s`` until :meth:`stop` (then once more)."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.flush_s)
            await self.flush()

    def stop(self) -> None:
        self._stopping.set()
