"""What a trading run (live or backtest) did: :class:`TradeSummary`, as printed and as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from engine.feeds.client import FeedClient
from engine.trading.trader import Trader

__all__ = ["TradeSummary", "summarize"]


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
    gaps_skipped: int = 0  # stretches without a stored trade jumped over (a backtest)
    intervals_skipped: int = 0
    stopped_early: bool = False  # a backtest stopped before its last stored trade

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

    def failure(self) -> str:
        """Why the run failed as a whole (empty when it did not): no feed ever connected, or not
        one bar could be decided for want of forecasts. The CLI exits 1 with this."""
        if self.feeds and not any(f.get("connects") for f in self.feeds.values()):
            errors = "; ".join(f"{venue}: {f.get('last_error') or 'no answer'}" for venue, f in self.feeds.items())
            return f"no feed ever connected ({errors})"
        if self.bars and self.bars_without_model == self.bars:
            return f"the model service gave no forecast at any of {self.bars} bars (last error: {self.last_error})"
        return ""

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
        if self.gaps_skipped:
            out.append(
                f"  skipped {self.gaps_skipped} stretches without a stored trade ({self.intervals_skipped} intervals); "
                "the features warmed up again after each"
            )
        if self.stopped_early:
            out.append("  STOPPED before the last stored trade: the same command resumes after the last bar decided")
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


def summarize(
    trader: Trader, seconds: float, trades: int, feeds: list[FeedClient] | None = None, *, stopped_early: bool = False
) -> TradeSummary:
    """The summary of ``trader``'s run so far."""
    core, plane = trader.core, trader.plane
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
        gaps_skipped=plane.stats.gaps_skipped if plane else 0,
        intervals_skipped=plane.stats.intervals_skipped if plane else 0,
        stopped_early=stopped_early,
    )
