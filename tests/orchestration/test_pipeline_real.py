"""The whole loop on a real market: the S&P 500 and NASDAQ daily bars shipped inside ``arch``.

Two symbols, daily bars on the NYSE calendar, OHLCV only, no news: the pipeline must plan for
that (OHLCV feature set, per-symbol forecasts, no news features), and every asset must either
materialize or be blocked by a gate that names its figure.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from feature_store.services import ServiceUrls
from tests.orchestration.pipeline_helpers import check_result, dagster, instance, latest, pipeline_env

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")]

SETTINGS = {
    "RRR_SOURCE": "files",
    "RRR_BAR_SECONDS": "86400",
    "RRR_CALENDAR": "XNYS",
    "RRR_PARTITIONS_START": "2017-01-01",
    "RRR_PARTITIONS_END": "2019-01-01",
    "RRR_HORIZON_BARS": "5",
}


@pytest.fixture(scope="module")
def real_loop(
    tmp_path_factory: pytest.TempPathFactory, service_urls: ServiceUrls, scratch_redis
) -> Iterator[tuple[dict, str]]:
    from orchestration.real_data import export_index_bars

    home = tmp_path_factory.mktemp("real")
    source = home / "source"
    assert export_index_bars(source, SETTINGS["RRR_PARTITIONS_START"], SETTINGS["RRR_PARTITIONS_END"]) == 502
    redis_url = scratch_redis(10)
    with pipeline_env(home / "rrr", service_urls, redis_url=redis_url, RRR_SOURCE_DIR=str(source), **SETTINGS) as env:
        out = dagster(env, "job", "execute", "-m", "orchestration.definitions", "-j", "whole_loop")
        yield env, out.stdout + out.stderr


def test_the_plan_follows_the_data_daily_nyse_ohlcv_two_symbols_no_news(real_loop: tuple[dict, str]) -> None:
    from feature_store.features.catalog import resolve

    env, log = real_loop
    store = instance(env)
    for key in ("raw_bars", "bars", "offline_features", "online_features", "risk_training_set", "price_training_set"):
        assert latest(store, key) is not None, f"{key} not materialized:\n{log[-4000:]}"
    bars = latest(store, "raw_bars")
    assert bars is not None and bars["rows"] == 2 * 502 and bars["source"] == "files"
    offline = latest(store, "offline_features")
    assert offline is not None and offline["interval_s"] == 86400 and offline["calendar"] == "XNYS"
    assert offline["feature_set_versions"]["price_ohlcv"] == resolve("price_ohlcv", 86400, "XNYS").version  # type: ignore[index]
    plan = str(offline["plan"])
    assert "OHLCV only" in plan and "per-symbol forecasts" in plan and "no headlines" in plan
    # The quality suites ran on the session grid: no weekend gap-fill, no constant columns to trip on.
    for role in ("price", "risk", "sentiment"):
        result = check_result(store, "offline_features", f"{role}_features_quality")
        assert result is not None and result[0], result
    training = latest(store, "price_training_set")
    assert training is not None and training["symbols"] == 2 and training["label"] == "fwd_ret_5: 5 bars of 86400 s"
    assert "no news features" in str(training["news"])


def test_the_price_model_is_trained_for_this_market_and_gated_without_an_oracle(real_loop: tuple[dict, str]) -> None:
    from feature_store.features.catalog import resolve

    env, log = real_loop
    store = instance(env)
    candidate = latest(store, "price_model_candidate")
    assert candidate is not None, log[-4000:]
    assert candidate["interval_s"] == 86400 and candidate["calendar"] == "XNYS"
    assert candidate["forecasts"] == "per symbol"
    assert candidate["feature_sets"] == {"price_ohlcv": resolve("price_ohlcv", 86400, "XNYS").version}
    assert "tod_sin" in candidate["inputs_left_out"]  # type: ignore[operator]  # constant on daily bars
    result = check_result(store, "price_model_candidate", "price_model_gates")
    assert result is not None
    passed, meta = result
    gates = str(meta["gates"])
    assert "ic_significant" in gates and "ic_above_ridge_significant" in gates
    assert "oracle" not in gates  # no oracle on a real market: not gated
    if passed:
        assert latest(store, "price_strategy_backtest") is not None
    else:
        failed = meta["failed_gates"]
        assert failed, meta
        for gate in failed:  # type: ignore[union-attr]
            assert "t " in str(meta.get(gate, "")) or "vs" in str(meta.get(gate, "")), (gate, meta)
        assert latest(store, "price_model_production") is None


def test_sentiment_has_nothing_to_learn_and_blocks_nothing_else(real_loop: tuple[dict, str]) -> None:
    env, _ = real_loop
    store = instance(env)
    result = check_result(store, "sentiment_model_candidate", "sentiment_model_gates")
    assert result is not None and not result[0]
    assert result[1]["failed_gates"] == ["has_labelled_headlines"]
    assert latest(store, "sentiment_model_production") is None
    scores = latest(store, "news_sentiment_scores")
    assert scores is not None and scores["rows"] == 0


def test_the_risk_model_is_gated_on_the_weights_it_serves(real_loop: tuple[dict, str]) -> None:
    env, log = real_loop
    store = instance(env)
    result = check_result(store, "risk_model_candidate", "risk_model_gates")
    assert result is not None, log[-4000:]
    passed, meta = result
    gates = str(meta["gates"])
    assert "SP500_kupiec_accepts_at_5pct" in gates and "market_kupiec_accepts_at_5pct" in gates
    if passed:
        production = latest(store, "risk_model_production")
        assert production is not None and production["production"] == meta["candidate"]
