"""Offline (vectorized) and online (incremental) features agree, on synthetic and real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_store.bars import bars_from_trades
from feature_store.features import PRICE, RISK, SENTIMENT, FeatureSet, compute_features
from feature_store.features.online import replay_features
from feature_store.records import bars_from_frame, trades_frame
from feature_store.sources.recordings import read_recording_trades
from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market

RTOL = 1e-9


def online_frame(feature_set: FeatureSet, bars: pd.DataFrame, news: pd.DataFrame | None = None) -> pd.DataFrame:
    headlines = (
        [] if news is None else list(zip(news["ts_ns"].tolist(), news["symbols"], news["score"].tolist(), strict=True))
    )
    _, steps = replay_features(feature_set, bars_from_frame(bars), news=headlines)
    rows = [(s, step.ts_ns, *v) for step in steps for s, v in zip(step.symbols, step.values.tolist(), strict=True)]
    frame = pd.DataFrame(rows, columns=["symbol", "ts_ns", *feature_set.names])
    return frame.sort_values(["symbol", "ts_ns"]).reset_index(drop=True)


def assert_parity(feature_set: FeatureSet, bars: pd.DataFrame, news: pd.DataFrame | None = None) -> None:
    offline = compute_features(feature_set, bars, news=news)
    online = online_frame(feature_set, bars, news)
    pd.testing.assert_frame_equal(offline[["symbol", "ts_ns"]], online[["symbol", "ts_ns"]], check_dtype=False)
    a = offline[list(feature_set.names)].to_numpy()
    b = online[list(feature_set.names)].to_numpy()
    masked = np.isnan(a) != np.isnan(b)
    assert not masked.any(), f"warm-up masks differ in {np.array(feature_set.names)[masked.any(axis=0)]}"
    both = ~np.isnan(a)
    diff = np.abs(a[both] - b[both])
    assert (diff <= RTOL * np.maximum(np.abs(a[both]), np.abs(b[both]))).all(), f"max abs difference {diff.max()}"


@pytest.fixture(scope="module")
def market_with_gaps() -> tuple[pd.DataFrame, pd.DataFrame]:
    market = simulate_market(SyntheticMarketConfig(symbols=6, days=0.5, seed=11))
    bars = market.bars()
    keep = np.random.default_rng(3).random(len(bars)) > 0.05  # 5% of bars missing: gap filling is exercised
    news = market.news.assign(score=market.news["label"].astype(float))
    return bars[keep].reset_index(drop=True), news


@pytest.mark.parametrize("feature_set", [PRICE, RISK, SENTIMENT], ids=lambda fs: fs.name)
def test_offline_and_online_agree_on_synthetic_bars_with_gaps_and_news(
    feature_set: FeatureSet, market_with_gaps: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    bars, news = market_with_gaps
    assert_parity(feature_set, bars, news)


def test_symbols_that_start_late_agree_too(market_with_gaps: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    bars, news = market_with_gaps
    late = bars["symbol"] == bars["symbol"].iloc[0]
    cut = int(bars["start_ns"].quantile(0.4))
    bars = bars[~late | (bars["start_ns"] > cut)].reset_index(drop=True)
    assert_parity(PRICE, bars, news)


@pytest.mark.parametrize("feature_set", [PRICE, RISK], ids=lambda fs: fs.name)
def test_offline_and_online_agree_on_bars_from_real_coinbase_trades(
    feature_set: FeatureSet, recordings_dir: Path
) -> None:
    report = read_recording_trades(recordings_dir / "coinbase_exchange_ws_2021-04-17.cryptofeed.txt")
    bars = bars_from_trades(trades_frame(report.trades), 1)
    per_second = feature_set.with_interval(1)  # 30 s of trades: 1-second bars give a grid worth testing
    assert_parity(per_second, bars)
    values = compute_features(per_second, bars)
    assert values["ret_1"].notna().sum() > 100  # the short features do get values on real data


def test_warm_up_is_masked_for_exactly_the_lookback() -> None:
    market = simulate_market(SyntheticMarketConfig(symbols=4, days=0.6, seed=5))
    frame = compute_features(PRICE, market.bars())
    for feature in PRICE.features:
        first_valid = frame.groupby("symbol")[feature.name].apply(
            lambda s: int(np.flatnonzero(s.notna().to_numpy())[0])
        )
        assert (first_valid == feature.lookback).all(), feature.name


@pytest.mark.parametrize("bars_kept", [1, 2, 59, 61, 239, 241, 719, 721, 800])
def test_inputs_shorter_or_longer_than_the_lookback_agree(bars_kept: int) -> None:
    bars = simulate_market(SyntheticMarketConfig(symbols=2, days=0.6, seed=8)).bars()
    first = int(bars["start_ns"].min())
    assert_parity(PRICE, bars[bars["start_ns"] < first + bars_kept * 60 * 10**9].reset_index(drop=True))
