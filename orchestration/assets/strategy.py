"""The price model's money: its strategy fitted on the validation fold, then backtested on the
holdout's stored trades through the engine's own trading core.

``price_strategy_backtest`` drives :class:`engine.trading.simulator.StrategySimulator` (the
same ``TradingCore``, paper broker, pre-trade risk and portfolio as ``engine run`` and
``engine backtest``, with the engine's default fees, slippage and participation) over the
stored trades of the candidate's holdout, once with the candidate's forecasts, once with
ridge's, once with the oracle's where the source has one and once with production's, each
through the candidate's strategy (production through its own). Its blocking check
``price_strategy_gates`` is the promotion gate on money:

``strategy_net_positive``               the candidate's net PnL after costs is above zero;
``strategy_beats_ridge``                it is above ridge's through the same strategy;
``strategy_not_worse_than_production``  it is not below production's on the same holdout
                                        (production re-scored on the candidate's holdout and
                                        traded with its own strategy; when it reads other
                                        feature-set versions it cannot be, and this gate is
                                        not set: the candidate's own gates decide).

The candidate's orders and fills are written to the lake
(``$RRR_HOME/lake/models/price_strategy_{orders,fills}.parquet``): ``python -m engine
backtest`` over the same trades with the promoted model reproduces them.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

import json
from collections.abc import Iterator
from typing import Any

import dagster as dg

from orchestration.assets.common import settings
from orchestration.assets.models import candidate_file, validation_file
from orchestration.resources import ModelStoreResource, PostgresResource

GROUP = "validation"
NAMES = {"forecast": "model", "ridge": "ridge", "oracle": "oracle"}


def strategy_file(kind: str) -> Any:
    """``$RRR_HOME/lake/models/price_strategy_<kind>.parquet`` (``orders``, ``fills``, ``equity``)."""
    return settings().lake / "models" / f"price_strategy_{kind}.parquet"


def load_trades(postgres: PostgresResource, symbols: list[str], start_ns: int, end_ns: int) -> tuple[list[Any], str]:
    """The stored trades of ``symbols`` with ``start_ns <= ts <= end_ns``, in the engine's order,
    and where they came from.

    A source of bars alone (OHLCV files, venue history) stores no trades: four trades per
    stored bar stand in for them (:func:`feature_store.bars.trades_from_bars`).
    """
    from feature_store.bars import trades_from_bars
    from feature_store.market_data import MarketDataStore

    interval_s = settings().bar_seconds

    async def read(pool: Any) -> tuple[list[Any], str]:
        stored = MarketDataStore(pool).iter_trades(start_ns, end_ns + 1, symbols)
        trades = [t async for t in stored]
        if trades:
            return trades, "stored trades"
        bars = await MarketDataStore(pool).read_bars(start_ns, end_ns + 1, interval_s=interval_s)
        bars = bars[bars["symbol"].isin(symbols)]
        return trades_from_bars(bars), "no stored trades: four trades per stored bar (open, extremes, close)"

    return postgres.run(read)


def fit_price_strategy(postgres: PostgresResource, validation: Any, config: Any, tag: str) -> Any:
    """Fit the candidate's strategy on its validation fold (never the holdout); see
    :mod:`engine.trading.fitting`. Without a validation fold the default strategy is kept."""
    from engine.trade import TradingOptions
    from engine.trading.fitting import StrategyFit, fit_strategy
    from engine.trading.simulator import trade_window
    from engine.trading.strategy import StrategyParams

    if validation.empty:
        import pandas as pd

        params = StrategyParams(origin=f"{tag} (default: no validation fold to fit on)")
        return StrategyFit(params, pd.DataFrame(), pd.DataFrame(), {})
    frame = validation.rename(columns={"forecast": "mean", "forecast_std": "sd"})[["ts_ns", "symbol", "mean", "sd"]]
    first, last = trade_window(frame, config.interval_s)
    trades, _ = load_trades(postgres, sorted(frame["symbol"].unique()), first, last)
    return fit_strategy(
        frame,
        lambda: trades,
        horizon=config.horizon,
        interval_s=config.interval_s,
        terms=TradingOptions().terms(),
        first_interval_ns=first,
        origin=tag,
    )


def _production_forecasts(registry: Any, candidate: Any, holdout: Any) -> tuple[Any, Any, str]:
    """Production's forecasts of the holdout rows and its strategy, or why there are none.

    Returns ``(frame or None, params or None, note)``.
    """
    from engine.trading.strategy import StrategyParams

    current = registry.list_models("price", "production")
    if not current or current[0].tag == candidate.tag:
        return None, None, "no other production model"
    champion = current[0]
    params = StrategyParams.from_json(champion.metadata.get("strategy") or {}, origin=champion.tag)
    if champion.metadata.get("feature_sets") != candidate.metadata.get("feature_sets"):
        return None, params, f"production {champion.tag} reads other feature-set versions: it cannot be re-scored"
    from orchestration import lake
    from orchestration.assets.training_sets import training_path
    from serving.models import price

    state, config_json, _ = registry.load_state(champion.tag)
    config = price.PriceConfig.from_json(config_json)
    model = price.build_model(config)
    model.load_state_dict(state)
    data = price.PriceData(lake.read_frame(training_path("price")), candidate.metadata["feature_sets"])
    window = (int(holdout["ts_ns"].min()), int(holdout["ts_ns"].max()) + 1)
    frame = price.forecast_rows(model, data, config, window)
    return frame, params, f"production {champion.tag} re-scored on the candidate's holdout"


def run_strategy_backtests(
    postgres: PostgresResource, holdout: Any, runs: dict[str, tuple[Any, str, Any]], interval_s: int, horizon: int
) -> tuple[dict[str, Any], str]:
    """Replay the holdout's trades once, through one simulator per run.

    ``runs`` maps a name to ``(frame, mean column, params)``; every run reads ``forecast_std``
    as its sd. Returns the simulators' results by name and where the trades came from.
    """
    from engine.trade import TradingOptions
    from engine.trading.simulator import ForecastTable, StrategySimulator, trade_window

    terms = TradingOptions().terms()
    first, last = trade_window(holdout, interval_s)
    symbols = sorted(holdout["symbol"].unique())
    sims = {}
    for name, (frame, column, params) in runs.items():
        table = ForecastTable(
            frame, column, "forecast_std", models={"price": name}, feature_sets={}, horizon_bars=horizon
        )
        sims[name] = StrategySimulator(
            name,
            table,
            symbols,
            params,
            interval_s=interval_s,
            first_interval_ns=first,
            terms=terms,
        )

    trades, origin = load_trades(postgres, symbols, first, last)
    for trade in trades:
        for sim in sims.values():
            sim.feed(trade)
    return {name: sim.finish() for name, sim in sims.items()}, origin


@dg.asset(
    group_name=GROUP,
    deps=["price_model_candidate", "trades"],
    kinds={"markdown"},
    check_specs=[
        dg.AssetCheckSpec(
            "price_strategy_gates",
            asset="price_strategy_backtest",
            blocking=True,
            description="The candidate's holdout strategy backtest: net positive, above ridge, not below production.",
        )
    ],
)
def price_strategy_backtest(
    context: dg.AssetExecutionContext, postgres: PostgresResource, model_store: ModelStoreResource
) -> Iterator[Any]:
    """The engine's trading core over the holdout's stored trades: model vs ridge vs oracle, net of costs."""
    import time

    import numpy as np
    import pandas as pd

    from engine.trading.simulator import simulation_metrics
    from engine.trading.strategy import StrategyParams
    from orchestration import lake, plots
    from orchestration.assets.reports import _result
    from serving.models.price import PriceConfig

    registry = model_store.registry()
    record = registry.get(json.loads(candidate_file("price").read_text())["tag"])
    config = PriceConfig.from_json(json.loads((record.path / "config.json").read_text()))
    params = StrategyParams.from_json(record.metadata.get("strategy") or {}, origin=record.tag)
    holdout = lake.read_frame(validation_file("price"))
    runs = {NAMES[c]: (holdout, c, params) for c in NAMES if c in holdout}
    production, production_params, note = _production_forecasts(registry, record, holdout)
    if production is not None:
        runs["production"] = (production, "forecast", production_params)
    started = time.perf_counter()
    results, origin = run_strategy_backtests(postgres, holdout, runs, config.interval_s, config.horizon)
    seconds = time.perf_counter() - started
    figures = {name: simulation_metrics(r, interval_s=config.interval_s) for name, r in results.items()}
    model = figures["model"]
    production_pnl = figures["production"]["net_pnl"] if "production" in figures else None
    current = registry.list_models("price", "production")
    if production_pnl is None and current and current[0].tag != record.tag:
        stored = current[0].metadata.get("strategy_backtest") or {}
        same = current[0].metadata.get("validation_fingerprint") == record.metadata.get("validation_fingerprint")
        if same and isinstance(stored.get("net_pnl"), int | float):
            production_pnl = float(stored["net_pnl"])
            note = f"production {current[0].tag} was validated on the same data"
    gates = {
        "strategy_net_positive": bool(model["net_pnl"] > 0),
        "strategy_beats_ridge": bool(model["net_pnl"] > figures["ridge"]["net_pnl"]),
    }
    if production_pnl is not None:
        gates["strategy_not_worse_than_production"] = bool(model["net_pnl"] >= production_pnl)
    registry.annotate(record.tag, {"strategy_backtest": model, "strategy_backtest_s": seconds}, gates)

    candidate = results["model"]
    lake.write_frame(strategy_file("orders"), _orders_frame(candidate.orders.values()))
    lake.write_frame(strategy_file("fills"), _fills_frame(candidate.fills))
    equity = pd.DataFrame({"ts_ns": candidate.bars, "equity": [float(e) for e in candidate.equity]})
    lake.write_frame(strategy_file("equity"), equity)

    initial = float(candidate.core.portfolio.initial_cash) if candidate.core else 0.0
    lines = {}
    for name, result in results.items():
        when = np.asarray(result.bars, dtype=np.float64) / 1e9
        lines[name] = (when, np.asarray([float(e) for e in result.equity]) - initial)
    chart = plots.line_chart(
        lines,
        title="Holdout strategy backtest: PnL net of costs",
        x_label="UTC",
        y_label="PnL (quote currency)",
        x_dates=True,
    )
    rows = [{"forecast": name, **{k: _round(v) for k, v in f.items()}} for name, f in figures.items()]
    fit_rows = record.metadata.get("strategy_validation") or {}
    markdown = "\n\n".join(
        [
            f"# Price model {record.tag}: strategy backtest on the holdout",
            f"Strategy: {params.describe()}. The engine's trading core over {candidate.trades:,} trades "
            f"({origin}; {len(candidate.bars):,} bars), costs as the engine's (taker fee, slippage, participation, "
            f"maker fee for limit orders). {note}.",
            plots.markdown_table(rows),
            "Sharpe: the mean over the standard deviation of the net PnL per bar, times the square root of "
            "the bars in a year (365 days of bars of this length).",
            "## The strategy on the validation fold (where it was chosen)",
            plots.markdown_table([{k: _round(v) for k, v in fit_rows.items()}]) if fit_rows else "not fitted",
            "## Gates",
            plots.markdown_table([{"gate": g, "result": "pass" if ok else "FAIL"} for g, ok in gates.items()]),
        ]
    )
    numbers = {
        "net_pnl": model["net_pnl"],
        "sharpe": model["sharpe"],
        "ridge_net_pnl": figures["ridge"]["net_pnl"],
        "orders": int(model["orders"]),
        "fills": int(model["fills"]),
        "backtest_s": round(seconds, 2),
    }
    if "oracle" in figures:
        numbers["oracle_net_pnl"] = figures["oracle"]["net_pnl"]
    yield _result("price_strategy", record, markdown, {"equity": chart}, **numbers)
    failed = [g for g, ok in gates.items() if not ok]
    metadata: dict[str, Any] = {
        "candidate": record.tag,
        "failed_gates": dg.MetadataValue.json(failed),
        "net_pnl": model["net_pnl"],
        "ridge_net_pnl": figures["ridge"]["net_pnl"],
        "note": note,
    }
    if production_pnl is not None:
        metadata["production_net_pnl"] = production_pnl
    for gate in failed:
        metadata[gate] = _why(gate, model["net_pnl"], figures["ridge"]["net_pnl"], production_pnl)
    yield dg.AssetCheckResult(
        asset_key="price_strategy_backtest",
        check_name="price_strategy_gates",
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )


def _why(gate: str, pnl: float, ridge: float, production: float | None) -> str:
    if gate == "strategy_net_positive":
        return f"net PnL {pnl:.2f} is not above 0"
    if gate == "strategy_beats_ridge":
        return f"net PnL {pnl:.2f} is not above ridge's {ridge:.2f}"
    return f"net PnL {pnl:.2f} is below production's {production:.2f}"


def _round(value: Any) -> Any:
    return round(float(value), 4) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _orders_frame(orders: Any) -> Any:
    import pandas as pd

    rows = [
        (o.client_order_id.split("-", 1)[1], o.symbol, o.side, str(o.quantity), o.order_type, o.status,
         str(o.filled_quantity), o.created_ns)
        for o in orders
    ]  # fmt: skip
    columns = ["order", "symbol", "side", "quantity", "order_type", "status", "filled_quantity", "created_ns"]
    return pd.DataFrame(rows, columns=columns).sort_values("order").reset_index(drop=True)


def _fills_frame(fills: Any) -> Any:
    import pandas as pd

    rows = [
        (f.client_order_id.split("-", 1)[1], f.fill_id, f.ts_ns, str(f.quantity), str(f.price), str(f.fee))
        for f in fills
    ]
    return pd.DataFrame(rows, columns=["order", "fill_id", "ts_ns", "quantity", "price", "fee"])
