"""The whole asset graph, run as a user runs it: the documented CLI command, then checks.

The graph runs in subprocesses with their own ``RRR_HOME``, ``DAGSTER_HOME`` and BentoML
store (BentoML fixes its store once per process), against the session's real PostgreSQL
and Redis. What ran is read back from the Dagster instance the CLI wrote.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from feature_store.services import ServiceUrls
from tests.orchestration.pipeline_helpers import dagster, instance, latest, pipeline_env

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")]

PRODUCTION = ("price_model_production", "sentiment_model_production", "risk_model_production")


@pytest.fixture(scope="module")
def loop_env(
    tmp_path_factory: pytest.TempPathFactory, service_urls: ServiceUrls, scratch_redis
) -> Iterator[dict[str, str]]:
    with pipeline_env(tmp_path_factory.mktemp("rrr"), service_urls, redis_url=scratch_redis(10)) as env:
        yield env


_STRAY_ROWS = textwrap.dedent(
    """
    import asyncio, os, sys
    import pandas as pd
    from feature_store.database import open_pool
    from feature_store.market_data import MarketDataStore

    async def main():
        pool = await open_pool(os.environ["DATABASE_URL"])
        try:
            for symbol, ts in zip(sys.argv[1::2], sys.argv[2::2]):  # one write each: one day's partition each
                bar = {
                    "symbol": [symbol], "interval_s": 60, "start_ns": [int(ts)], "open": 10.0, "high": 10.0,
                    "low": 10.0, "close": 10.0, "volume": 1.0, "buy_volume": 0.5, "vwap": 10.0, "trades": 1,
                }
                await MarketDataStore(pool).write_bars(pd.DataFrame(bar))
                headline = {"ts_ns": [int(ts)], "symbols": [(symbol,)], "headline": [f"{symbol} stray"],
                            "source": ["test"], "label": [1]}
                await MarketDataStore(pool).write_news(pd.DataFrame(headline))
        finally:
            await pool.close()

    asyncio.run(main())
    """
)


def _partition_bounds_ns(env: dict[str, str]) -> tuple[int, int]:
    from orchestration.config import OrchestrationSettings

    s = OrchestrationSettings.from_env(env)
    assert s.partitions_end is not None
    start = s.synthetic_start_ns()
    return start, start + (s.partitions_end - s.partitions_start).days * 86_400 * 10**9


@pytest.fixture(scope="module")
def whole_loop(loop_env: dict[str, str]) -> dict[str, str]:
    # Bars and headlines outside the partitions' days, as an engine session or an old recording leaves them:
    # the features and training sets must keep to the partitions' days.
    start, end = _partition_bounds_ns(loop_env)
    stray = ["EARLY-USD", str(start - 400 * 86_400 * 10**9), "LATE-USD", str(end + 3 * 86_400 * 10**9)]
    out = subprocess.run(
        [sys.executable, "-c", _STRAY_ROWS, *stray], env=loop_env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    out = dagster(loop_env, "job", "execute", "-m", "orchestration.definitions", "-j", "whole_loop")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    return loop_env


def test_the_documented_command_runs_the_whole_graph_and_promotes_three_models(whole_loop: dict[str, str]) -> None:
    import orchestration.definitions as d

    store = instance(whole_loop)
    keys = [k.to_user_string() for k in d.defs.resolve_asset_graph().get_all_asset_keys()]
    missing = [k for k in keys if latest(store, k) is None]
    assert not missing, f"not materialized: {missing}"
    # The engine's half of the loop is in the run: the service (not running here) says so.
    assert str(latest(store, "model_service")["state"]).startswith("not answering")  # type: ignore[index]
    # Every check ran and passed: GX on bars, news and features, and the three model gates.
    graph = d.defs.resolve_asset_graph()
    for check in graph.asset_check_keys:
        record = store.event_log_storage.get_latest_asset_check_execution_by_key([check])[check]
        assert record is not None, f"{check} never ran"
        evaluation = record.event.dagster_event.event_specific_data  # type: ignore[union-attr]
        assert evaluation.passed, f"{check.name} failed: {evaluation.metadata}"
    # The promoted versions are in the BentoML store under the data folder.
    models = Path(whole_loop["BENTOML_HOME"]) / "models"
    for key in PRODUCTION:
        tag = str(latest(store, key)["production"])  # type: ignore[index]
        name, version = tag.split(":")
        assert (models / name / version / "weights.pt").is_file(), tag
    # Reports with charts, and Data Docs, in the data folder.
    home = Path(whole_loop["RRR_HOME"])
    assert list((home / "reports" / "price").glob("*_cumulative_ic.svg"))
    var_chart = next((home / "reports" / "risk").glob("*_SP500_var.svg")).read_text()
    assert re.search(r">20\d\d-\d\d-\d\d<", var_chart), "the chart's time axis shows dates"
    risk_md = next((home / "reports" / "risk").glob("*.md")).read_text()
    assert "Christoffersen p (independence)" in risk_md and "Kupiec p (rate)" in risk_md
    strategy_md = next((home / "reports" / "price_strategy").glob("*.md")).read_text()
    assert "square root of the bars in a year" in strategy_md
    docs = home / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"
    assert "<!-- rrr offline validations -->" in (docs / "index.html").read_text()
    first, end = (int(x) for x in str(latest(store, "offline_features")["window"]).split()[::2])  # type: ignore[index]
    low, high = _partition_bounds_ns(whole_loop)
    assert low <= first and end <= high, "features were computed outside the partitions' days"
    first, end = (int(x) for x in str(latest(store, "sentiment_training_set")["window"]).split()[::2])  # type: ignore[index]
    assert low <= first and end <= high, "the sentiment training set reads news outside the partitions' days"
    price_report = latest(store, "price_validation_report")
    assert price_report is not None and "Cumulative IC" not in str(price_report["summary"])  # charts are separate
    assert "data:image/svg+xml;base64," in str(price_report["charts"])


_GATE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import dagster as dg
    import orchestration.definitions as d
    from serving.models import price

    instance = dg.DagsterInstance.get()
    assets = list(d.defs.assets)

    def downstream(key):  # `key*`
        return dg.AssetSelection.assets(key).downstream()
    if sys.argv[1] == "fail":
        real = price.gates
        price.gates = lambda metrics: {**real(metrics), "ic_at_least_0.7_oracle": False}
    if sys.argv[1] == "costly":  # fees of 5% a side: no strategy pays, the candidate's must fail its gate
        from decimal import Decimal
        import engine.trade as trade
        from engine.trading.execution import PaperCosts
        real = trade.TradingOptions
        costs = PaperCosts(taker_fee_bps=Decimal(500), maker_fee_bps=Decimal(500))
        trade.TradingOptions = lambda **kw: real(costs=costs, **kw)
        result = dg.materialize(
            assets, selection=downstream("price_strategy_backtest"), instance=instance, raise_on_error=False,
            resources=d.defs.resources,
        )
        done = sorted(e.asset_key.to_user_string() for e in result.get_asset_materialization_events())
        print(json.dumps({"success": result.success, "materialized": done}))
    elif sys.argv[1] in ("fail", "pass"):
        result = dg.materialize(
            assets, selection=downstream("price_model_candidate"), instance=instance, raise_on_error=False,
            resources=d.defs.resources,
        )
        done = sorted(e.asset_key.to_user_string() for e in result.get_asset_materialization_events())
        print(json.dumps({"success": result.success, "materialized": done}))
    else:
        job = d.defs.resolve_job_def("rollback_job")
        result = job.execute_in_process(
            instance=instance, run_config={"ops": {"rollback_models": {"config": {"model": "price"}}}},
            raise_on_error=False,
        )
        print(json.dumps({"success": result.success, "materialized": []}))
    """
)


def _gate_run(env: dict[str, str], mode: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _GATE_SCRIPT, mode], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _production(env: dict[str, str], name: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "serving.registry", "list", name], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.split()[1:2] == ["production"]]
    assert len(rows) == 1, out.stdout
    return rows[0][0]


def test_a_failed_gate_blocks_promotion_and_rollback_restores_the_previous_version(
    whole_loop: dict[str, str],
) -> None:
    first = _production(whole_loop, "price")
    failed = _gate_run(whole_loop, "fail")
    assert failed["success"] is False
    assert "price_model_candidate" in failed["materialized"]
    assert "price_model_production" not in failed["materialized"]
    assert "price_validation_report" not in failed["materialized"]
    assert _production(whole_loop, "price") == first  # production unchanged
    store = instance(whole_loop)
    check = dg.AssetCheckKey(dg.AssetKey("price_model_candidate"), "price_model_gates")
    record = store.event_log_storage.get_latest_asset_check_execution_by_key([check])[check]
    evaluation = record.event.dagster_event.event_specific_data  # type: ignore[union-attr]
    assert not evaluation.passed
    assert evaluation.metadata["failed_gates"].value == ["ic_at_least_0.7_oracle"]

    # A candidate whose strategy loses after costs is not promoted either, and the check says why.
    costly = _gate_run(whole_loop, "costly")
    assert costly["success"] is False
    assert "price_strategy_backtest" in costly["materialized"]
    assert "price_model_production" not in costly["materialized"]
    assert _production(whole_loop, "price") == first
    check = dg.AssetCheckKey(dg.AssetKey("price_strategy_backtest"), "price_strategy_gates")
    record = instance(whole_loop).event_log_storage.get_latest_asset_check_execution_by_key([check])[check]
    evaluation = record.event.dagster_event.event_specific_data  # type: ignore[union-attr]
    assert not evaluation.passed
    assert "strategy_net_positive" in evaluation.metadata["failed_gates"].value
    assert "is not above 0" in str(evaluation.metadata["strategy_net_positive"].value)

    passed = _gate_run(whole_loop, "pass")  # same data and seed: as good as production, so promoted
    assert passed["success"] is True and "price_model_production" in passed["materialized"]
    second = _production(whole_loop, "price")
    assert second != first
    assert _gate_run(whole_loop, "rollback")["success"] is True
    assert _production(whole_loop, "price") == first


# --- the strategy: validated = traded ----------------------------------------------------------

_PARITY_BARS = 120  # the first two hours of the holdout: every HTTP round trip of the engine is in it


async def _account_rows(url: str, account: str, symbols: list[str], last_bar: int) -> dict[str, object]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        orders = await conn.fetch(
            "SELECT client_order_id, symbol, side, quantity, order_type, status, filled_quantity, created_ns "
            "FROM orders WHERE account = $1",
            account,
        )
        fills = await conn.fetch(
            "SELECT f.client_order_id, fill_id, f.ts_ns, f.quantity, price, fee FROM fills f "
            "JOIN orders o USING (client_order_id) WHERE o.account = $1 ORDER BY seq",
            account,
        )
        decisions = await conn.fetch("SELECT ts_ns, symbol, forecast FROM decisions WHERE account = $1", account)
        marks = await conn.fetch(
            "SELECT DISTINCT ON (symbol) symbol, close FROM bars WHERE interval_s = 60 AND start_ns <= $1 "
            "AND symbol = ANY($2::text[]) ORDER BY symbol, start_ns DESC",
            last_bar,
            symbols,
        )
    finally:
        await conn.close()
    return {"orders": orders, "fills": fills, "decisions": decisions, "marks": {r["symbol"]: r["close"] for r in marks}}


def test_engine_backtest_through_the_service_reproduces_the_validation_strategy_backtest(
    whole_loop: dict[str, str],
) -> None:
    """The validation's strategy backtest (the trading core over the holdout's stored trades with
    the candidate's forecasts) and ``python -m engine backtest`` with the promoted model behind a
    real ``bentoml serve``: the same orders, fills and PnL to the cent.

    The one difference that cannot be avoided is in the forecasts: the engine's come from the
    service (features computed online from the stored trades, read from Redis as float32, run
    in a batch of one bar), the validation's from the training job's offline windows. They
    agree to a relative 1e-4 (asserted); the strategy ranks them, so such differences change
    no order unless two symbols' views tie to that precision.
    """
    import asyncio
    from decimal import Decimal

    import pandas as pd

    from engine.trading.orders import OPEN_STATUSES, Fill
    from engine.trading.portfolio import Portfolio
    from serving import launcher

    home = Path(whole_loop["RRR_HOME"])
    lake = home / "lake" / "models"
    holdout = pd.read_parquet(lake / "price_validation.parquet")
    want_orders = pd.read_parquet(lake / "price_strategy_orders.parquet")
    want_fills = pd.read_parquet(lake / "price_strategy_fills.parquet")
    symbols = sorted(holdout["symbol"].unique())
    interval = 60 * 10**9
    first = int(holdout["ts_ns"].min())
    last_bar = first + (_PARITY_BARS - 1) * interval
    end = last_bar + 2 * interval - 1  # the bar after the last one decided never closes
    service = launcher.start(port=launcher.free_port(), env=whole_loop, log_path=home / "parity-serving.log")
    try:
        argv = [
            sys.executable, "-m", "engine", "backtest", "--symbols", ",".join(symbols), "--start-ns", str(first),
            "--end-ns", str(end), "--warmup-bars", "100000", "--account", "parity", "--serving-url", service.url,
            "--json",
        ]  # fmt: skip
        out = subprocess.run(argv, env=whole_loop, capture_output=True, text=True, timeout=900)
    finally:
        service.stop()
    assert out.returncode == 0, out.stderr[-4000:]
    summary = json.loads(out.stdout)
    got = asyncio.run(_account_rows(whole_loop["DATABASE_URL"], "parity", symbols, last_bar))
    assert "price:" in summary["strategy"] and "overridden" not in summary["strategy"], summary["strategy"]

    served = {(r["ts_ns"], r["symbol"]): r["forecast"] for r in got["decisions"]}  # type: ignore[union-attr]
    offline = holdout[holdout["ts_ns"] <= last_bar].set_index(["ts_ns", "symbol"])["forecast"]
    assert len(served) == len(offline) == _PARITY_BARS * len(symbols)
    diff = max(abs(served[k] - v) / max(abs(v), 1e-6) for k, v in offline.items())
    assert diff < 1e-4, f"served and offline forecasts differ by {diff:.2e} (relative)"

    def strip(oid: str) -> str:
        return oid.split("-", 1)[1]

    decided_until = last_bar + interval + 10**9  # the last decision's venue time (grace < 1 s)
    engine_orders = {strip(r["client_order_id"]): r for r in got["orders"]}  # type: ignore[union-attr]
    mine = want_orders[want_orders["created_ns"] <= decided_until]
    assert len(engine_orders) == len(mine) > 20, (len(engine_orders), len(mine))
    for row in mine.itertuples(index=False):
        e = engine_orders[row.order]
        assert (e["symbol"], e["side"], str(e["quantity"]), e["order_type"], e["created_ns"]) == (
            row.symbol, row.side, row.quantity, row.order_type, row.created_ns,
        )  # fmt: skip
        if e["status"] not in OPEN_STATUSES:  # still open where the engine's data ends: may go on filling
            assert (e["status"], str(e["filled_quantity"])) == (row.status, row.filled_quantity), row.order
    engine_fills = [
        (strip(r["client_order_id"]), r["fill_id"], r["ts_ns"], str(r["quantity"]), str(r["price"]), str(r["fee"]))
        for r in got["fills"]  # type: ignore[union-attr]
    ]
    validation_fills = [tuple(f) for f in want_fills[want_fills["ts_ns"] <= end].itertuples(index=False)]
    assert engine_fills == validation_fills and len(engine_fills) > 20

    # PnL to the cent: the validation's fills up to the engine's end, marked at the same closes.
    portfolio = Portfolio(Decimal(1_000_000))
    for f in want_fills[want_fills["ts_ns"] <= end].itertuples(index=False):
        order = engine_orders[f.order]
        qty, price, fee = Decimal(f.quantity), Decimal(f.price), Decimal(f.fee)
        portfolio.apply(Fill(f.order, f.fill_id, f.ts_ns, order["symbol"], order["side"], qty, price, fee, "taker"))
    for symbol, close in got["marks"].items():  # type: ignore[union-attr]
        portfolio.mark(symbol, Decimal(repr(close)))
    assert Decimal(summary["realized_pnl"]).quantize(Decimal("0.01")) == portfolio.realized_pnl().quantize(
        Decimal("0.01")
    )
    assert Decimal(summary["pnl"]).quantize(Decimal("0.01")) == portfolio.pnl().quantize(Decimal("0.01"))

    # `engine status` names the strategy in force and the model version it came from.
    status = subprocess.run(
        [sys.executable, "-m", "engine", "status", "--account", "parity"],
        env=whole_loop,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr[-3000:]
    production = _production(whole_loop, "price")
    assert f"from {production})" in status.stdout and "holding=" in status.stdout, status.stdout
