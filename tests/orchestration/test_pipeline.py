"""The whole asset graph, run as a user runs it: the documented CLI command, then checks.

The graph runs in subprocesses with their own ``RRR_HOME``, ``DAGSTER_HOME`` and BentoML
store (BentoML fixes its store once per process), against the session's real PostgreSQL
and Redis. What ran is read back from the Dagster instance the CLI wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from feature_store.services import ServiceUrls

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")]

PRODUCTION = ("price_model_production", "sentiment_model_production", "risk_model_production")


@pytest.fixture(scope="module")
def loop_env(tmp_path_factory: pytest.TempPathFactory, service_urls: ServiceUrls) -> dict[str, str]:
    from tests.conftest import create_database, drop_database

    home = tmp_path_factory.mktemp("rrr")
    url = create_database(service_urls.database_url)
    env = {
        **os.environ,
        "RRR_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "BENTOML_HOME": str(home / "bentoml"),
        "DATABASE_URL": url,
        "REDIS_URL": service_urls.redis_url,
        "RRR_TRAIN": "small",
        "PYTHONWARNINGS": "ignore",
    }
    (home / "dagster").mkdir()
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    yield env
    drop_database(url)


def _dagster(env: dict[str, str], *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("dagster")), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=Path.cwd())


def _instance(env: dict[str, str]) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])


def _latest(instance: dg.DagsterInstance, key: str) -> dict[str, object] | None:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    if event is None or event.asset_materialization is None:
        return None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


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
    out = _dagster(loop_env, "job", "execute", "-m", "orchestration.definitions", "-j", "whole_loop")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    return loop_env


def test_the_documented_command_runs_the_whole_graph_and_promotes_three_models(whole_loop: dict[str, str]) -> None:
    import orchestration.definitions as d

    instance = _instance(whole_loop)
    keys = [k.to_user_string() for k in d.defs.resolve_asset_graph().get_all_asset_keys()]
    missing = [k for k in keys if _latest(instance, k) is None]
    assert not missing, f"not materialized: {missing}"
    # Every check ran and passed: GX on bars, news and features, and the three model gates.
    graph = d.defs.resolve_asset_graph()
    for check in graph.asset_check_keys:
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([check])[check]
        assert record is not None, f"{check} never ran"
        evaluation = record.event.dagster_event.event_specific_data  # type: ignore[union-attr]
        assert evaluation.passed, f"{check.name} failed: {evaluation.metadata}"
    # The promoted versions are in the BentoML store under the data folder.
    store = Path(whole_loop["BENTOML_HOME"]) / "models"
    for key in PRODUCTION:
        tag = str(_latest(instance, key)["production"])  # type: ignore[index]
        name, version = tag.split(":")
        assert (store / name / version / "weights.pt").is_file(), tag
    # Reports with charts, and Data Docs, in the data folder.
    home = Path(whole_loop["RRR_HOME"])
    assert list((home / "reports" / "price").glob("*_cumulative_ic.svg"))
    assert list((home / "reports" / "risk").glob("*_SP500_var.svg"))
    assert (home / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").is_file()
    first, end = (int(x) for x in str(_latest(instance, "offline_features")["window"]).split()[::2])  # type: ignore[index]
    low, high = _partition_bounds_ns(whole_loop)
    assert low <= first and end <= high, "features were computed outside the partitions' days"
    first, end = (int(x) for x in str(_latest(instance, "sentiment_training_set")["window"]).split()[::2])  # type: ignore[index]
    assert low <= first and end <= high, "the sentiment training set reads news outside the partitions' days"
    price_report = _latest(instance, "price_validation_report")
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
    if sys.argv[1] == "fail":
        real = price.gates
        price.gates = lambda metrics: {**real(metrics), "ic_at_least_0.7_oracle": False}
    if sys.argv[1] in ("fail", "pass"):
        result = dg.materialize(
            assets, selection="price_model_candidate*", instance=instance, raise_on_error=False,
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
    instance = _instance(whole_loop)
    check = dg.AssetCheckKey(dg.AssetKey("price_model_candidate"), "price_model_gates")
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([check])[check]
    evaluation = record.event.dagster_event.event_specific_data  # type: ignore[union-attr]
    assert not evaluation.passed
    assert evaluation.metadata["failed_gates"].value == ["ic_at_least_0.7_oracle"]

    passed = _gate_run(whole_loop, "pass")  # same data and seed: as good as production, so promoted
    assert passed["success"] is True and "price_model_production" in passed["materialized"]
    second = _production(whole_loop, "price")
    assert second != first
    assert _gate_run(whole_loop, "rollback")["success"] is True
    assert _production(whole_loop, "price") == first
