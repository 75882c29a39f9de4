"""Training sets are point-in-time correct, and the audit catches a one-bar leak."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from feature_store.database import open_pool
from feature_store.features import PRICE, SENTIMENT, compute_features
from feature_store.postgres_store import PostgresOfflineStore
from feature_store.records import NS_PER_S
from feature_store.sources.synthetic import SyntheticMarket, SyntheticMarketConfig, simulate_market
from feature_store.training import (
    audit_point_in_time,
    build_training_set,
    forward_return_labels,
    training_set_from_bars,
)

MINUTE = 60 * NS_PER_S


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return simulate_market(SyntheticMarketConfig(symbols=5, days=0.5, seed=9))


@pytest.fixture(scope="module")
def news(market: SyntheticMarket) -> pd.DataFrame:
    return market.news.assign(score=market.news["label"].astype(float))


@pytest.fixture(scope="module")
def training_set(market: SyntheticMarket, news: pd.DataFrame) -> pd.DataFrame:
    return training_set_from_bars([PRICE, SENTIMENT], market.bars(), [15], news=news)


def test_labels_are_the_realized_forward_returns(market: SyntheticMarket) -> None:
    labels = forward_return_labels(market.bars(), 15)
    truth = market.truth.dropna(subset=["forward_return"])
    merged = labels.merge(truth, left_on=["symbol", "ts_ns"], right_on=["symbol", "start_ns"])
    assert len(merged) == len(truth)
    np.testing.assert_allclose(merged["value"], merged["forward_return"], rtol=1e-9, atol=1e-12)


def test_a_clean_training_set_passes_the_audit(
    training_set: pd.DataFrame, market: SyntheticMarket, news: pd.DataFrame
) -> None:
    assert {"ret_1", "news_score_hl_15", "fwd_ret_15"} <= set(training_set.columns)
    assert training_set["fwd_ret_15"].notna().all()
    leaks = audit_point_in_time(training_set, [PRICE, SENTIMENT], market.bars(), news=news, horizons=[15], cuts=6)
    assert leaks == []


def test_features_joined_one_bar_late_are_caught(training_set: pd.DataFrame, market: SyntheticMarket) -> None:
    leaked = training_set.copy()
    # The row at t gets the features of t + 1 bar: the classic off-by-one join.
    leaked["ret_1"] = leaked.groupby("symbol")["ret_1"].shift(-1)
    leaked = leaked.dropna(subset=["ret_1"])
    leaks = audit_point_in_time(leaked, [PRICE], market.bars(), cuts=4)
    assert leaks and {leak.column for leak in leaks} == {"ret_1"}


def test_headlines_counted_one_bar_before_publication_are_caught(market: SyntheticMarket, news: pd.DataFrame) -> None:
    early = news.assign(ts_ns=news["ts_ns"] - MINUTE)
    leaked = training_set_from_bars([SENTIMENT], market.bars(), [15], news=early)
    leaks = audit_point_in_time(leaked, [SENTIMENT], market.bars(), news=news, cuts=4)
    assert {leak.column for leak in leaks} >= {"news_score_hl_15"}


def test_a_label_over_the_wrong_horizon_is_caught(training_set: pd.DataFrame, market: SyntheticMarket) -> None:
    wrong = training_set.copy()
    wrong["fwd_ret_15"] = training_set_from_bars([PRICE], market.bars(), [16])["fwd_ret_16"]
    leaks = audit_point_in_time(wrong.dropna(subset=["fwd_ret_15"]), [PRICE], market.bars(), horizons=[15], cuts=3)
    assert {leak.column for leak in leaks} == {"fwd_ret_15"}


def test_the_stored_training_set_equals_the_in_memory_one(
    fresh_database_url: str, market: SyntheticMarket, news: pd.DataFrame, training_set: pd.DataFrame
) -> None:
    async def build() -> pd.DataFrame:
        pool = await open_pool(fresh_database_url)
        try:
            store = PostgresOfflineStore(pool)
            bars = market.bars()
            await store.write_features(PRICE, compute_features(PRICE, bars))
            await store.write_features(SENTIMENT, compute_features(SENTIMENT, bars, news=news))
            await store.write_labels(forward_return_labels(bars, 15))
            return await build_training_set(store, [PRICE, SENTIMENT], ["fwd_ret_15"], 0, 2**62)
        finally:
            await pool.close()

    stored = asyncio.run(build())
    pd.testing.assert_frame_equal(stored, training_set, check_dtype=False)
