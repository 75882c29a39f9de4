"""The trading core driven synchronously over stored trades and known forecasts.

:class:`StrategySimulator` is how the price model's validation trades its holdout: the same
:class:`~engine.trading.core.TradingCore`, paper broker, pre-trade risk and portfolio as
``engine run`` and ``engine backtest``, fed the same way (every interval closes, in order,
when the first trade at or after its close time arrives; the trades before that instant
reach the broker before the decision, the others after it), with the forecasts given rather
than asked of the model service. So its orders, fills and PnL are the ones ``engine
backtest`` makes over the same trades when the service answers with the same forecasts.

What it does not have is the risk model's portfolio VaR (the engine asks the service after
each bar): here ``var99`` stays unknown, so the VaR overlay and the VaR limit never bind. In
the engine they bind only when the book's VaR(99%) passes ``var_budget`` (3%) or the limit
(5%) of equity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pandas as pd

from engine.trading.core import Forecasts, TradingCore
from engine.trading.execution import PaperBroker, PaperCosts
from engine.trading.orders import Fill, Order
from engine.trading.portfolio import Portfolio
from engine.trading.risk import PreTradeRisk, RiskLimits
from engine.trading.strategy import StrategyParams
from feature_store.records import NS_PER_S, Trade

__all__ = [
    "ForecastTable",
    "PaperTerms",
    "SimulationResult",
    "StrategySimulator",
    "annualized_sharpe",
    "simulation_metrics",
    "trade_window",
]

SECONDS_PER_YEAR = 365.0 * 86400.0


@dataclass(frozen=True)
class PaperTerms:
    """What a paper account trades under: costs, risk limits, initial cash, how long an order
    waits for fills (None: one bar) and how late a trade may still join its bar.

    The engine's are ``engine.trade.TradingOptions.terms()``; the validation uses the same.
    """

    costs: PaperCosts
    limits: RiskLimits
    initial_cash: Decimal
    order_ttl_s: float | None
    grace_s: float

    def core(
        self, account: str, portfolio: Portfolio, params: StrategyParams, *, venue: str, interval_s: int
    ) -> TradingCore:
        """A trading core with a paper broker on these terms, deciding ``interval_s`` bars."""
        ttl_s = self.order_ttl_s if self.order_ttl_s is not None else interval_s
        return TradingCore(
            account,
            portfolio,
            PaperBroker(self.costs),
            PreTradeRisk(self.limits),
            params,
            venue=venue,
            order_ttl_ns=int(ttl_s * NS_PER_S),
        )


def trade_window(forecasts: pd.DataFrame, interval_s: int) -> tuple[int, int]:
    """``[first, last]`` trade times (ns, both included) whose replay decides exactly the bars of
    ``forecasts`` (its ``ts_ns``): from the first bar's start to just before the second bar after
    the last one. The first trade past the last bar's close decides it; the bar after it never
    closes, and its trades give the last orders a bar to fill. The first bar is the first
    interval to decide."""
    first, last = int(forecasts["ts_ns"].min()), int(forecasts["ts_ns"].max())
    return first, last + 2 * interval_s * NS_PER_S - 1


def annualized_sharpe(pnl: npt.NDArray[np.float64], interval_s: int) -> float:
    """Sharpe ratio of per-bar PnL, annualized from the bar length (NaN without spread)."""
    sd = float(pnl.std(ddof=1)) if len(pnl) > 1 else 0.0
    return float(pnl.mean() / sd * math.sqrt(SECONDS_PER_YEAR / interval_s)) if sd > 0 else float("nan")


class ForecastTable:
    """Known forecasts by bar: ``symbol, ts_ns`` plus a mean and an sd column.

    Args:
        frame: one row per (symbol, bar start).
        mean, sd: the columns to read.
        models: the model versions the decisions record.
        feature_sets: the feature-set versions the decisions record.
        horizon_bars: the forecast horizon.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        mean: str,
        sd: str,
        *,
        models: Mapping[str, str],
        feature_sets: Mapping[str, str],
        horizon_bars: int,
    ) -> None:
        data = frame[["ts_ns", "symbol", mean, sd]].dropna().sort_values(["ts_ns", "symbol"], kind="stable")
        times = data["ts_ns"].to_numpy(np.int64)
        cuts = np.flatnonzero(np.diff(times)) + 1
        starts = np.r_[0, cuts]
        ends = np.r_[cuts, len(times)]
        symbols = data["symbol"].to_numpy(object)
        means = data[mean].to_numpy(np.float64)
        sds = data[sd].to_numpy(np.float64)
        self._by_bar = {
            int(times[a]): (symbols[a:b], means[a:b], sds[a:b]) for a, b in zip(starts, ends, strict=True) if b > a
        }
        self.models = dict(models)
        self.feature_sets = dict(feature_sets)
        self.horizon_bars = horizon_bars

    def __call__(self, bar_ns: int, symbols: Sequence[str]) -> Forecasts | None:
        """The forecasts of ``symbols`` for bar ``bar_ns`` (None: no forecast for that bar)."""
        row = self._by_bar.get(bar_ns)
        if row is None:
            return None
        wanted = set(symbols)
        names, means, sds = row
        keep = [i for i, s in enumerate(names) if s in wanted]
        return Forecasts(
            symbols=[str(names[i]) for i in keep],
            mean=means[keep],
            sd=sds[keep],
            bars=[bar_ns] * len(keep),
            models=self.models,
            feature_sets=self.feature_sets,
            horizon_bars=self.horizon_bars,
        )


@dataclass
class SimulationResult:
    """What a simulated run did: its orders (final state), fills and equity at every bar."""

    name: str
    core: TradingCore
    orders: dict[str, Order] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    bars: list[int] = field(default_factory=list)
    equity: list[Decimal] = field(default_factory=list)
    trades: int = 0


class StrategySimulator:
    """Drive a fresh :class:`TradingCore` over trades in time order (see the module docstring).

    Args:
        name: what is traded (``model``, ``ridge``, ``oracle``).
        forecasts: the forecasts of a bar and symbols (None: no forecast for that bar).
        symbols: the universe (every bar decides these, plus any symbol still held).
        params: the strategy.
        interval_s: bar length.
        first_interval_ns: start of the first interval to decide (the engine's first after
            its warm-up history).
        terms: costs, limits, cash, order lifetime and grace (the engine's).
        account, venue: what the orders are stored under.
    """

    def __init__(
        self,
        name: str,
        forecasts: Callable[[int, Sequence[str]], Forecasts | None],
        symbols: Sequence[str],
        params: StrategyParams,
        *,
        interval_s: int,
        first_interval_ns: int,
        terms: PaperTerms,
        account: str = "validation",
        venue: str = "paper",
    ) -> None:
        self.interval_ns = interval_s * NS_PER_S
        self.core = terms.core(account, Portfolio(terms.initial_cash), params, venue=venue, interval_s=interval_s)
        self.grace_ns = int(terms.grace_s * NS_PER_S)
        self.forecasts = forecasts
        self.symbols = sorted(set(symbols))
        self.result = SimulationResult(name, self.core)
        self._open_ns = first_interval_ns
        self._due = first_interval_ns + self.interval_ns + self.grace_ns
        self._closes: dict[int, dict[str, float]] = {}

    def feed(self, trade: Trade) -> None:
        """One trade, in time order (stored order: time, symbol, venue, trade id)."""
        while trade.ts_ns >= self._due:
            self._close()
        start = trade.ts_ns // self.interval_ns * self.interval_ns
        if start >= self._open_ns:
            self._closes.setdefault(start, {})[trade.symbol] = trade.price
        self.core.on_trade(trade)
        self.result.trades += 1

    def _close(self) -> None:
        core, start = self.core, self._open_ns
        now_ns = self._due
        closes = self._closes.pop(start, {})
        symbols = core.universe(self.symbols)
        orders = core.decide(start, closes, self.forecasts(start, symbols), now_ns)
        core.submit(orders)
        journal = core.journal.take()
        result = self.result
        result.fills.extend(journal.fills)
        result.orders.update(journal.orders)
        result.bars.append(start)
        result.equity.append(core.portfolio.equity())
        self._open_ns += self.interval_ns
        self._due += self.interval_ns

    def finish(self) -> SimulationResult:
        """What happened up to the last trade fed (the last interval stays open, as in the engine)."""
        journal = self.core.journal.take()
        self.result.fills.extend(journal.fills)
        self.result.orders.update(journal.orders)
        return self.result


def simulation_metrics(result: SimulationResult, *, interval_s: int) -> dict[str, float]:
    """Net PnL, Sharpe (annualized from per-bar equity changes), max drawdown, turnover, fees,
    orders and fills of a simulated run."""
    core = result.core
    portfolio = core.portfolio
    equity = np.array([float(e) for e in result.equity], dtype=np.float64)
    initial = float(portfolio.initial_cash)
    pnl = np.diff(np.r_[initial, equity]) if len(equity) else np.zeros(0)
    sharpe = annualized_sharpe(pnl, interval_s)
    peak = np.maximum.accumulate(np.r_[initial, equity])
    drawdown = float(((peak - np.r_[initial, equity]) / peak).max()) if len(equity) else 0.0
    traded = float(sum(f.quantity * f.price for f in result.fills))
    days = len(equity) * interval_s / 86400.0
    fees = float(sum(f.fee for f in result.fills))
    return {
        "net_pnl": float(portfolio.pnl()),
        "net_return": float(portfolio.pnl()) / initial,
        "sharpe": sharpe,
        "max_drawdown": drawdown,
        "turnover_per_day": traded / initial / days if days > 0 else float("nan"),
        "fees": fees,
        "orders": float(core.stats.orders),
        "fills": float(core.stats.fills),
        "bars": float(len(equity)),
        "pnl_per_bar": float(portfolio.pnl()) / len(equity) if len(equity) else float("nan"),
    }
