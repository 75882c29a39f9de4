"""The synthetic market: deterministic, realistic, with a learnable signal of known ceiling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kurtosis

from feature_store.sources.headlines import TEMPLATES
from feature_store.sources.synthetic import (
    SyntheticMarketConfig,
    cross_sectional_ic,
    simulate_market,
)


@pytest.fixture(scope="module")
def market():
    """The default market: 20 symbols, 30 days."""
    return simulate_market()


def _returns(market) -> np.ndarray:
    return market.truth.pivot(index="start_ns", columns="symbol", values="log_return").to_numpy()


def _autocorrelation(x: np.ndarray, lag: int) -> float:
    return float(np.mean([np.corrcoef(x[lag:, i], x[:-lag, i])[0, 1] for i in range(x.shape[1])]))


def test_same_seed_gives_the_same_market_and_another_seed_does_not() -> None:
    config = SyntheticMarketConfig(symbols=3, days=0.5, seed=42)
    a, b = simulate_market(config), simulate_market(config)
    pd.testing.assert_frame_equal(a.trades, b.trades)
    pd.testing.assert_frame_equal(a.news, b.news)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    c = simulate_market(SyntheticMarketConfig(symbols=3, days=0.5, seed=43))
    assert not np.array_equal(a.truth["log_return"].to_numpy(), c.truth["log_return"].to_numpy())


def test_default_market_has_the_promised_shape(market) -> None:
    assert len(market.symbols) == 20
    assert len(market.truth) == 20 * 30 * 1440
    assert len(market.trades) > 20 * 30 * 1440  # at least one trade per bar
    assert market.trades["ts_ns"].is_monotonic_increasing
    assert (market.trades["price"] > 0).all() and (market.trades["size"] > 0).all()
    assert set(market.trades["side"].unique()) == {"buy", "sell"}
    assert not market.trades.duplicated(["symbol", "trade_id"]).any()
    assert 20 * 30 * 6 < len(market.news) < 20 * 30 * 20


def test_bar_closes_are_the_simulated_prices(market) -> None:
    bars = market.bars()
    truth = market.truth.sort_values(["symbol", "start_ns"]).reset_index(drop=True)
    assert len(bars) == len(truth)
    np.testing.assert_array_equal(bars["close"].to_numpy(), truth["close"].to_numpy())


def test_returns_have_fat_tails_and_volatility_clustering(market) -> None:
    r = _returns(market)
    assert kurtosis(r, axis=0).mean() > 3.0  # excess kurtosis: a normal has 0
    assert _autocorrelation(np.abs(r), 1) > 0.1
    assert _autocorrelation(np.abs(r), 30) > 0.05
    assert abs(_autocorrelation(r, 1)) < 0.05  # but returns themselves barely autocorrelate


def test_intraday_seasonality_in_volatility_and_activity(market) -> None:
    truth = market.truth
    hour = (truth["start_ns"] // 10**9 % 86_400) // 3600
    by_hour = truth["log_return"].abs().groupby(hour).mean()
    assert by_hour.loc[14:16].mean() > 1.5 * by_hour.loc[2:4].mean()
    trades_hour = (market.trades["ts_ns"] // 10**9 % 86_400) // 3600
    counts = trades_hour.value_counts()
    assert counts.loc[[14, 15, 16]].mean() > 1.5 * counts.loc[[2, 3, 4]].mean()


def test_regimes_switch_and_the_volatile_one_is_more_volatile(market) -> None:
    truth = market.truth
    switches = (truth.groupby("symbol")["regime"].diff().abs() > 0).sum()
    assert switches > 20 * 10
    vol = truth.groupby("regime")["log_return"].std()
    assert vol.loc[1] > 1.4 * vol.loc[0]


def test_oracle_ic_is_realistic_and_clearly_positive(market) -> None:
    ic = market.oracle_ic()
    assert 0.03 <= ic <= 0.10
    daily = [
        cross_sectional_ic(day, "oracle", "forward_return")
        for _, day in market.truth.groupby(market.truth["start_ns"] // (86_400 * 10**9))
    ]
    assert np.mean(np.asarray(daily) > 0) > 0.9  # positive on (nearly) every day
    noise = market.truth.assign(noise=np.random.default_rng(0).standard_normal(len(market.truth)))
    assert abs(cross_sectional_ic(noise, "noise", "forward_return")) < 0.01


def test_the_lagged_return_effect_flips_sign_with_the_regime(market) -> None:
    # A linear model without the hidden regime cannot capture this: the ceiling needs it.
    truth = market.truth.sort_values(["symbol", "start_ns"]).copy()
    truth["next_drift"] = truth.groupby("symbol")["drift"].shift(-1)
    slopes = {}
    for regime, part in truth.dropna(subset=["next_drift"]).groupby("regime"):
        x, y = part["log_return"].to_numpy(), part["next_drift"].to_numpy()
        slopes[regime] = np.cov(x, y)[0, 1] / np.var(x)
    assert slopes[0] < 0 < slopes[1]


def test_news_sentiment_moves_the_drift_after_publication(market) -> None:
    news = market.news[market.news["symbols"].map(len) == 1]
    truth = market.truth.set_index(["symbol", "start_ns"])["drift"]
    interval = 60 * 10**9
    effect = {}
    for label in (-1, 1):
        rows = news[news["label"] == label]
        after = [
            truth.get((s[0], (ts // interval + 2) * interval), np.nan)
            for s, ts in zip(rows["symbols"], rows["ts_ns"], strict=False)
        ]
        effect[label] = np.nanmean(after)
    assert effect[-1] < 0 < effect[1]


def test_headlines_come_from_the_templates_with_known_labels(market) -> None:
    news = market.news
    assert set(news["label"].unique()) == {-1, 0, 1}
    assert news["headline"].str.len().min() > 10
    positive_verbs = ("surges", "rallies", "jumps", "climbs", "gains", "soar", "wins", "upgrade")
    positives = news[news["label"] == 1]["headline"]
    assert positives.map(lambda h: any(v in h for v in positive_verbs)).all()
    assert all(len(v) >= 6 for v in TEMPLATES.values())


def test_invalid_configs_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least"):
        simulate_market(SyntheticMarketConfig(symbols=0))
