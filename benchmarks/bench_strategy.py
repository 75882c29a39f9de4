"""The price model's strategy on the default market (20 symbols x 30 days), as the pipeline runs it.

The price model is trained with the full settings (the news features read the headlines'
known labels, the sentiment model's ceiling, so that this measures the strategy and not the
sentiment model), its strategy is fitted on the validation fold, then the engine's trading
core trades the holdout's trades with the model's, ridge's and the oracle's forecasts.

Figures:

* ``strategy_backtest_s``: the holdout strategy backtest (three forecasts through the trading
  core, one pass over the trades), against the 30-second target; ``signal_backtest_s``: the
  idealized long-short signal backtest of the same three forecasts in the same run.
* ``strategy_holdout_net_sharpe`` / ``_ridge`` / ``_oracle`` and ``strategy_holdout_net_pnl``:
  what the strategy made after the engine's costs on the holdout.
* ``engine_backtest_bars_per_s``: ``engine backtest`` over the same holdout trades (stored in a
  scratch database) through a real ``bentoml serve`` with sample models (the loop's speed does
  not depend on the weights) trading the fitted strategy, beside the validation simulator's
  bars per second.
"""

from __future__ import annotations

import asyncio
import os
import time

import pandas as pd

from benchmarks.results_file import Figure, write_results
from benchmarks.sample_service import sample_model_service
from benchmarks.scratch_database import scratch_database

TARGET_S = 30.0
ENGINE_HOURS = float(os.environ.get("BENCH_ENGINE_HOURS", "0"))  # 0: the whole holdout


def _trades(frame: pd.DataFrame) -> list[object]:
    from feature_store.records import Trade

    ordered = frame.assign(_n=frame["trade_id"].str.len()).sort_values(
        ["ts_ns", "symbol", "venue", "_n", "trade_id"], kind="stable"
    )
    columns = ["venue", "symbol", "ts_ns", "price", "size", "side", "trade_id"]
    return [Trade(*row) for row in ordered[columns].itertuples(index=False)]


def _in_process() -> tuple[list[Figure], dict[str, object]]:
    from engine.trade import TradingOptions
    from engine.trading.fitting import fit_strategy
    from engine.trading.simulator import ForecastTable, StrategySimulator, simulation_metrics, trade_window
    from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market
    from serving.models.common import long_short_backtest
    from serving.training import FULL, price_frame, train_price

    market = simulate_market(SyntheticMarketConfig())
    bars = market.bars()
    scored = market.news[["ts_ns", "symbols"]].assign(score=market.news["label"].astype(float))
    frame = price_frame(bars, scored, FULL.price.horizon, market.truth.rename(columns={"start_ns": "ts_ns"}))
    _, result = train_price(frame, FULL.price, data_id={"source": "synthetic"}, register=False)
    common = {"interval_s": 60, "terms": TradingOptions().terms()}
    validation = result.validation.rename(columns={"forecast": "mean", "forecast_std": "sd"})
    lo, hi = trade_window(validation, 60)
    fit_trades = _trades(market.trades[market.trades["ts_ns"].between(lo, hi)])
    started = time.perf_counter()
    fit = fit_strategy(
        validation[["ts_ns", "symbol", "mean", "sd"]],
        lambda: fit_trades,
        horizon=FULL.price.horizon,
        first_interval_ns=lo,
        origin="bench",
        **common,  # type: ignore[arg-type]
    )
    fit_s = time.perf_counter() - started
    print(f"strategy fitted on the validation fold in {fit_s:.1f} s: {fit.params.describe()}")

    holdout = result.holdout
    lo, hi = trade_window(holdout, 60)
    trades = _trades(market.trades[market.trades["ts_ns"].between(lo, hi)])
    symbols = sorted(holdout["symbol"].unique())
    started = time.perf_counter()
    sims = {
        name: StrategySimulator(
            name,
            ForecastTable(holdout, column, "forecast_std", models={}, feature_sets={}, horizon_bars=15),
            symbols,
            fit.params,
            first_interval_ns=lo,
            **common,  # type: ignore[arg-type]
        )
        for name, column in (("model", "forecast"), ("ridge", "ridge"), ("oracle", "oracle"))
    }
    for trade in trades:
        for sim in sims.values():
            sim.feed(trade)  # type: ignore[arg-type]
    figures = {name: simulation_metrics(sim.finish(), interval_s=60) for name, sim in sims.items()}
    strategy_s = time.perf_counter() - started
    started = time.perf_counter()
    for column in ("forecast", "ridge", "oracle"):
        long_short_backtest(holdout, column, FULL.price.label, horizon=FULL.price.horizon, interval_s=60)
    signal_s = time.perf_counter() - started
    for name, f in figures.items():
        print(f"  {name}: " + ", ".join(f"{k} {v:,.4g}" for k, v in f.items()))
    m, r, o = figures["model"], figures["ridge"], figures["oracle"]
    bars_per_s = m["bars"] / (strategy_s / 3)
    out = [
        Figure("strategy_backtest_s", strategy_s, "s", "target, 2 CPU cores", TARGET_S),
        Figure("signal_backtest_s", signal_s, "s", "strategy backtest in the same run", strategy_s),
        Figure("strategy_fit_s", fit_s, "s", "holdout strategy backtest in the same run", strategy_s),
        Figure("strategy_holdout_net_sharpe", m["sharpe"], "", "ridge through the same strategy", r["sharpe"]),
        Figure("strategy_holdout_net_sharpe_ridge", r["sharpe"], "", "the model's", m["sharpe"]),
        Figure("strategy_holdout_net_sharpe_oracle", o["sharpe"], "", "the model's", m["sharpe"]),
        Figure("strategy_holdout_net_pnl", m["net_pnl"], "quote", "the gate: above", 0.0),
        Figure("strategy_holdout_fees", m["fees"], "quote", "net PnL", m["net_pnl"]),
        Figure("strategy_simulator_bars_per_s", bars_per_s, "bars/s", "one forecast's share of the backtest", None),
    ]
    context = {"market": market, "params": fit.params, "bars_per_s": bars_per_s, "window": (lo, hi)}
    return out, context


async def _engine_backtest(context: dict[str, object], service_url: str, redis_url: str) -> object:
    from engine.backtest import BacktestOptions, backtest
    from engine.trade import TradingOptions
    from feature_store.database import open_pool
    from feature_store.market_data import MarketDataStore

    market = context["market"]
    lo, hi = context["window"]  # type: ignore[misc]
    if ENGINE_HOURS:
        hi = min(hi, lo + int(ENGINE_HOURS * 3600 * 10**9))
    async with scratch_database() as database_url:
        pool = await open_pool(database_url)
        try:
            store = MarketDataStore(pool)
            trades = market.trades  # type: ignore[attr-defined]
            await store.write_trades(trades[trades["ts_ns"].between(lo, hi)])
            bars = market.bars()  # type: ignore[attr-defined]
            await store.write_bars(bars[bars["start_ns"] < lo])
        finally:
            await pool.close()
        return await backtest(
            BacktestOptions(start_ns=lo, end_ns=hi),
            # The fitted strategy (the sample model publishes none), so that the loop trades as the pipeline's would.
            TradingOptions(account="bench", serving_url=service_url, params=context["params"]),  # type: ignore[arg-type]
            database_url=database_url,
            redis_url=redis_url,
        )


def main() -> int:
    figures, context = _in_process()
    with sample_model_service(interval_s=60, redis_db=14, prefix="rrr-bench-strategy-") as (url, redis_url, _):
        started = time.perf_counter()
        summary = asyncio.run(_engine_backtest(context, url, redis_url))
        seconds = time.perf_counter() - started
    print("\n".join(summary.lines()))  # type: ignore[attr-defined]
    bars = float(summary.bars)  # type: ignore[attr-defined]
    figures.append(
        Figure(
            "engine_backtest_bars_per_s",
            bars / seconds,
            "bars/s",
            "the validation's simulator, same days",
            float(context["bars_per_s"]),  # type: ignore[arg-type]
        )
    )
    write_results("bench_strategy", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
