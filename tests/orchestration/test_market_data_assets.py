"""Raw partitions land, are checked by Great Expectations, and only clean days are stored."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market
from orchestration.assets.market_data import market_data_tables, raw_market_data
from orchestration.resources import PostgresResource, SourceResource

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

DAY = "2026-01-06"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data folder for the module (one Great Expectations context per folder per process)."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def day_of_market() -> dict[str, pd.DataFrame]:
    start = int(pd.Timestamp(DAY, tz="UTC").value)
    market = simulate_market(SyntheticMarketConfig(symbols=3, days=0.25, seed=11, start_ns=start))
    news = market.news[["ts_ns", "symbols", "headline", "source", "label"]]
    return {"trades": market.trades, "bars": market.bars(), "news": news}


def _write_day(folder: Path, frames: dict[str, pd.DataFrame]) -> None:
    for table, frame in frames.items():
        (folder / table).mkdir(parents=True, exist_ok=True)
        frame.to_parquet(folder / table / f"{DAY}.parquet", index=False)


def _run(folder: Path, database_url: str) -> dg.ExecuteInProcessResult:
    resources = {
        "source": SourceResource(kind="files", directory=str(folder)),
        "postgres": PostgresResource(url=database_url),
    }
    (folder.parent / "dagster").mkdir(exist_ok=True)
    with dg.DagsterInstance.from_config(str(folder.parent / "dagster")) as instance:
        return dg.materialize(
            [raw_market_data, market_data_tables],
            partition_key=DAY,
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def _stored_bars(database_url: str) -> int:
    return int(PostgresResource(url=database_url).run(lambda pool: pool.fetchval("SELECT count(*) FROM bars")))


def test_clean_files_pass_the_checks_and_are_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_database_url: str, day_of_market, home: Path
) -> None:
    monkeypatch.setenv("RRR_HOME", str(home))
    _write_day(tmp_path / "files", day_of_market)
    result = _run(tmp_path / "files", fresh_database_url)
    assert result.success
    assert _check(result, "bars_quality").passed and _check(result, "news_quality").passed
    assert _stored_bars(fresh_database_url) == len(day_of_market["bars"])
    landed = pd.read_parquet(home / "lake" / "raw" / "bars" / f"{DAY}.parquet")
    assert len(landed) == len(day_of_market["bars"])


def test_bad_rows_fail_the_check_block_the_store_and_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_database_url: str, day_of_market, home: Path
) -> None:
    monkeypatch.setenv("RRR_HOME", str(home))
    bars = day_of_market["bars"].copy()
    bars.loc[3, "close"] = np.nan  # a NaN price
    bars.loc[5, ["high", "low"]] = [bars.loc[5, "low"] * 0.99, bars.loc[5, "high"]]  # high < low
    bad = pd.concat([bars, bars.iloc[[10]]], ignore_index=True)  # a duplicated bar
    _write_day(tmp_path / "files", {**day_of_market, "bars": bad})
    result = _run(tmp_path / "files", fresh_database_url)

    assert not result.success
    check = _check(result, "bars_quality")
    assert not check.passed
    failures = check.metadata["failures"].value
    for expectation in (
        "expect_column_values_to_not_be_null",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_compound_columns_to_be_unique",
    ):
        assert expectation in failures
    samples = check.metadata["sample_rows"].value
    null_close = samples["expect_column_values_to_not_be_null close"]
    assert [r["row"] for r in null_close] == [3]
    docs = check.metadata["data_docs"].value
    assert Path(docs.removeprefix("file://")).is_file()
    # Nothing downstream: the stored tables never saw the day.
    stored = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "raw_bars" in stored and not {"trades", "bars", "news"} & stored
    assert _stored_bars(fresh_database_url) == 0
    assert json.dumps(samples)  # plain JSON for the UI


def test_ohlcv_only_files_are_completed_and_another_bar_length_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_database_url: str, home: Path
) -> None:
    monkeypatch.setenv("RRR_HOME", str(home))
    monkeypatch.setenv("RRR_BAR_SECONDS", "3600")
    hours = pd.date_range(f"{DAY} 00:00", periods=24, freq="h", tz="UTC")
    close = 100 + np.arange(24.0)
    ohlcv = pd.DataFrame(
        {"timestamp": hours.strftime("%Y-%m-%dT%H:%M:%SZ"), "symbol": "SPY", "open": close, "high": close + 1,
         "low": close - 1, "close": close, "volume": 1000.0}
    )  # fmt: skip
    (tmp_path / "files" / "bars").mkdir(parents=True)
    ohlcv.to_csv(tmp_path / "files" / "bars" / f"{DAY}.csv", index=False)
    result = _run(tmp_path / "files", fresh_database_url)
    assert result.success and _check(result, "bars_quality").passed
    landed = pd.read_parquet(home / "lake" / "raw" / "bars" / f"{DAY}.parquet")
    assert (landed["interval_s"] == 3600).all() and (landed["trades"] == 0).all()
    assert np.allclose(landed["buy_volume"], landed["volume"] / 2)  # neutral flow: the OHLCV feature set's cue
    monkeypatch.setenv("RRR_BAR_SECONDS", "60")
    failed = _run(tmp_path / "files", fresh_database_url)
    assert not failed.success
    (failure,) = [e for e in failed.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.to_string()
    assert "holds 3600-second bars; the pipeline runs on 60-second bars (set RRR_BAR_SECONDS=3600" in message
