"""The price model on a user's market: one or two symbols, other bar lengths, OHLCV only, no oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_store.features.catalog import resolve
from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market
from feature_store.training import training_set_from_bars
from serving.models import common, price
from serving.training import SMALL, price_config_for, train_price

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


def _frame(
    symbols: int, *, interval_s: int = 60, days: float = 3, name: str = "price", horizon: int = 15
) -> pd.DataFrame:
    market = simulate_market(SyntheticMarketConfig(symbols=symbols, days=days, seed=11, interval_s=interval_s))
    return training_set_from_bars([resolve(name, interval_s)], market.bars(), [horizon])


@pytest.mark.parametrize("symbols", [1, 2])
def test_one_or_two_symbols_forecast_their_own_returns_with_finite_scores(symbols: int) -> None:
    frame = _frame(symbols)
    config, left_out = price_config_for(frame, SMALL.price, price_set="price", interval_s=60)
    assert not config.cross_sectional
    assert "news_score_hl_60" in left_out  # no news in this training set
    if symbols == 1:  # a residual against a one-symbol market is zero
        assert left_out["resid_z_ewm_10"] == "constant"
    report, result = train_price(frame, config, data_id={"source": "test"}, register=False)
    m = report.metrics
    for key in ("ic", "ic_nw_t", "rank_ic", "ridge_ic", "ic_minus_ridge_nw_t", "ls_sharpe"):
        assert np.isfinite(m[key]), (key, m)
    assert "ic_at_least_0.7_oracle" not in report.gates  # no oracle: not gated
    assert set(report.gates) == {"outputs_finite", "ic_significant", "ic_above_ridge_significant"}
    # Two symbols are not mirror images of each other (nothing is demeaned across them).
    if symbols == 2:
        wide = result.holdout.pivot(index="ts_ns", columns="symbol", values="forecast")
        assert not np.allclose(wide.iloc[:, 0], -wide.iloc[:, 1])


def test_hourly_ohlcv_bars_train_with_that_interval_and_its_feature_set_versions() -> None:
    frame = _frame(4, interval_s=3600, days=60, name="price_ohlcv", horizon=5)
    fs = resolve("price_ohlcv", 3600)
    config, _ = price_config_for(frame, SMALL.price, price_set="price_ohlcv", interval_s=3600, horizon=5)
    assert config.cross_sectional and config.interval_s == 3600 and config.horizon == 5
    report, _ = train_price(frame, config, data_id={"source": "test"}, register=False, versions={fs.name: fs.version})
    assert report.metrics["horizon_s"] == 5 * 3600
    assert np.isfinite(report.metrics["ic"])
    # Training data of another bar length is refused, naming it.
    wrong = price.PriceData(frame, {fs.name: fs.version})
    with pytest.raises(Exception, match="feature set 'price_ohlcv' is version"):
        price.train(wrong, config.__class__(**{**config.to_json(), "interval_s": 60}))


def test_newey_west_widens_the_error_of_overlapping_values() -> None:
    rng = np.random.default_rng(0)
    iid = rng.normal(0.1, 1.0, 20_000)
    t, se = common.newey_west_t(iid, 0)
    assert se == pytest.approx(1.0 / np.sqrt(len(iid)), rel=0.05) and t == pytest.approx(iid.mean() / se, rel=1e-9)
    overlapping = np.convolve(rng.normal(0.0, 1.0, 20_014), np.ones(15) / 15, mode="valid")  # a 15-bar moving sum
    naive = common.newey_west_t(overlapping, 0)[1]
    assert common.newey_west_t(overlapping, 15)[1] > 3 * naive
    assert np.isnan(common.newey_west_t(np.ones(10), 2)[0])  # no variation: no statistic


def test_the_gates_need_significance_and_the_oracle_only_where_there_is_one() -> None:
    base = {"outputs_finite": 1.0, "ic": 0.05, "ridge_ic": 0.01, "ic_nw_t": 3.0, "ic_minus_ridge_nw_t": 2.0}
    assert all(price.gates(base).values())
    assert not price.gates({**base, "ic_nw_t": 1.2})["ic_significant"]
    assert not price.gates({**base, "ic_minus_ridge_nw_t": 0.5})["ic_above_ridge_significant"]
    assert not price.gates({**base, "oracle_ic": 0.1})["ic_at_least_0.7_oracle"]
    figures = price.gate_figures({**base, "ic_nw_t": 1.2})
    assert "t 1.20 >= 1.645" in figures["ic_significant"]


def test_the_sentiment_feature_ic_is_measured_at_the_bars_own_length() -> None:
    from serving.models import sentiment

    market = simulate_market(SyntheticMarketConfig(symbols=4, days=30, seed=3, interval_s=3600))
    scored = market.news.assign(score=market.news["label"].astype(float))[["ts_ns", "symbols", "score"]]
    assert np.isfinite(sentiment.sentiment_feature_ic(scored, market.bars(), horizon=5))
