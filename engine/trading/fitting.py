"""Choosing the strategy on the price model's validation fold (never its holdout).

Two steps, both on the validation fold's forecasts:

1. **Screen** every candidate of a small grid (family x holding x band x order type) with a
   fast bar-level replay of :func:`~engine.trading.strategy.target_weights`: the book held
   from one close to the next, each unit of turnover charged the paper broker's cost for the
   order type (taker fee plus slippage for market orders, the maker fee for limit orders).
   It ranks the candidates; it does not know fills.
2. **Confirm** the best few of each order type with the engine's own trading core over the
   validation fold's stored trades (:class:`~engine.trading.simulator.StrategySimulator`:
   participation, limit fills, expiries, risk denials) and keep the one with the best net
   Sharpe. Its figures are the validation result stored with the model.

The grid scales with the model: holdings of 1, 2 and 4 horizons, bands as fractions of the
per-symbol cap, per-symbol entry thresholds at the 80th and 95th percentiles of the
forecasts' ``|mean / sd|``. Small universes (fewer than three symbols) only get the
per-symbol family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from engine.trading.execution import PaperCosts
from engine.trading.simulator import ForecastTable, PaperTerms, StrategySimulator, annualized_sharpe, simulation_metrics
from engine.trading.strategy import StrategyParams, target_weights
from feature_store.records import NS_PER_S, Trade

__all__ = ["StrategyFit", "candidate_grid", "fit_strategy", "screen"]


@dataclass(frozen=True)
class StrategyFit:
    """The chosen strategy and how every candidate did.

    Attributes:
        params: the strategy chosen.
        screened: one row per candidate: its parameters and the screen's net Sharpe.
        confirmed: one row per confirmed candidate: its parameters and the trading core's
            figures on the validation fold.
        metrics: the chosen strategy's figures on the validation fold (trading core).
    """

    params: StrategyParams
    screened: pd.DataFrame
    confirmed: pd.DataFrame
    metrics: dict[str, float]


def candidate_grid(
    symbols: int, horizon: int, z_levels: Sequence[float], base: StrategyParams | None = None
) -> list[StrategyParams]:
    """The strategies the validation chooses among (see the module docstring).

    ``z_levels`` are the per-symbol family's entry thresholds (quantiles of ``|mean / sd|``
    on the validation fold: a forecast's scale is the model's own); each exits at half.
    """
    base = base or StrategyParams()
    cap = base.cap
    holdings = sorted({max(1, horizon * k) for k in (1, 2, 4)})
    bands = (0.0, cap / 4, cap / 2)
    out = []
    for order_type in ("market", "limit"):
        for holding in holdings:
            for band in bands:
                rule = replace(base, holding=holding, band=band, order_type=order_type)
                if symbols >= 3:
                    out.append(replace(rule, family="cross_sectional"))
                for entry in z_levels:
                    out.append(replace(rule, family="per_symbol", entry_z=entry, exit_z=entry / 2))
    return out


def screen(
    forecasts: pd.DataFrame,
    closes: pd.DataFrame,
    candidates: Sequence[StrategyParams],
    costs: PaperCosts,
    *,
    interval_s: int,
) -> pd.DataFrame:
    """Net Sharpe of each candidate in the bar-level replay (see the module docstring).

    Args:
        forecasts: ``ts_ns, symbol, mean, sd`` of the bars to decide.
        closes: bar closes, one row per bar start, one column per symbol.
    """
    mean = forecasts.pivot(index="ts_ns", columns="symbol", values="mean")
    sd = forecasts.pivot(index="ts_ns", columns="symbol", values="sd").reindex_like(mean)
    prices = closes.reindex(index=mean.index, columns=mean.columns).ffill()
    # Held from this bar's close to the next one's.
    forward = np.log(prices).diff().shift(-1).fillna(0.0).to_numpy(np.float64)
    m, s = mean.to_numpy(np.float64), sd.to_numpy(np.float64)
    taker = float(costs.taker_fee_bps + costs.slippage_bps) / 1e4
    maker = float(costs.maker_fee_bps) / 1e4
    rows = []
    for params in candidates:
        cost = taker if params.order_type == "market" else maker
        held = np.zeros(m.shape[1])
        pnl = np.zeros(len(m))
        for t in range(len(m)):
            weights = target_weights(m[t], s[t], held, params).weights
            traded = float(np.abs(weights - held).sum())
            pnl[t] = float(weights @ forward[t]) - traded * cost
            held = weights * np.exp(forward[t])  # the weights drift with the prices until the next bar
        sharpe = annualized_sharpe(pnl, interval_s)
        rows.append({**params.to_json(), "screen_sharpe": sharpe, "screen_return": float(pnl.sum())})
    return pd.DataFrame(rows)


def fit_strategy(
    forecasts: pd.DataFrame,
    trades: Callable[[], Iterable[Trade]],
    *,
    horizon: int,
    interval_s: int,
    terms: PaperTerms,
    first_interval_ns: int,
    confirm: int = 2,
    origin: str = "",
) -> StrategyFit:
    """Choose the strategy on the validation fold (see the module docstring).

    Args:
        forecasts: the validation fold's ``ts_ns, symbol, mean, sd``.
        trades: a function returning the validation fold's stored trades, in stored order.
        terms: the engine's costs, limits, cash, order lifetime and grace.
        confirm: candidates of each order type replayed through the trading core.
        origin: recorded in the chosen parameters (the model version).
    """
    symbols = sorted(forecasts["symbol"].unique())
    closes = _closes(trades(), interval_s)
    z = np.abs(forecasts["mean"] / forecasts["sd"]).replace([np.inf, -np.inf], np.nan).dropna()
    levels = sorted({round(float(z.quantile(q)), 6) for q in (0.8, 0.95)} - {0.0}) if len(z) else [1.0]
    grid = candidate_grid(len(symbols), horizon, levels)
    screened = screen(forecasts, closes, grid, terms.costs, interval_s=interval_s)
    ranked = screened.sort_values("screen_sharpe", ascending=False, na_position="last", kind="stable")
    shortlist = pd.concat([ranked[ranked["order_type"] == kind].head(confirm) for kind in ("market", "limit")])
    table = ForecastTable(forecasts, "mean", "sd", models={}, feature_sets={}, horizon_bars=horizon)
    sims = []
    for _, row in shortlist.iterrows():
        params = StrategyParams.from_json({k: row[k] for k in StrategyParams().to_json()}, origin=origin)
        sims.append(
            StrategySimulator(
                "validation",
                table,
                symbols,
                params,
                interval_s=interval_s,
                first_interval_ns=first_interval_ns,
                terms=terms,
            )
        )
    for trade in trades():
        for sim in sims:
            sim.feed(trade)
    rows = []
    for sim in sims:
        metrics = simulation_metrics(sim.finish(), interval_s=interval_s)
        rows.append({**sim.core.params.to_json(), **metrics})
    confirmed = pd.DataFrame(rows)
    score = confirmed["sharpe"].fillna(-np.inf)
    best = int(np.argmax(score.to_numpy()))
    chosen = sims[best].core.params
    return StrategyFit(chosen, screened, confirmed, {k: float(v) for k, v in rows[best].items() if _number(v)})


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _closes(trades: Iterable[Trade], interval_s: int) -> pd.DataFrame:
    """Each bar's last trade price per symbol (the bar closes the engine marks to)."""
    interval_ns = interval_s * NS_PER_S
    last: dict[tuple[int, str], float] = {}
    for trade in trades:
        last[(trade.ts_ns // interval_ns * interval_ns, trade.symbol)] = trade.price
    if not last:
        return pd.DataFrame()
    index = pd.MultiIndex.from_tuples(list(last), names=["ts_ns", "symbol"])
    return pd.Series(list(last.values()), index=index).unstack("symbol").sort_index()
