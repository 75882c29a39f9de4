"""Offline input policy: one bad row rejects the input, and the error names it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_store.errors import DataValidationError, UnknownFeatureError
from feature_store.features import PRICE, SENTIMENT, compute_features
from feature_store.features.grid import bar_grid
from feature_store.records import NS_PER_S
from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return simulate_market(SyntheticMarketConfig(symbols=3, days=0.05, seed=2)).bars()


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("close", np.nan, "close is not a finite positive price"),
        ("open", -1.0, "open is not a finite positive price"),
        ("low", 1e9, "open is outside"),
        ("volume", np.inf, "volume is not finite"),
        ("start_ns", 123, "not a multiple of 60 s"),
    ],
)
def test_a_bad_bar_rejects_the_input_naming_its_row(
    bars: pd.DataFrame, column: str, value: float, problem: str
) -> None:
    broken = bars.copy()
    broken[column] = broken[column].astype(type(value) if column == "start_ns" else float)
    broken.loc[7, column] = value
    with pytest.raises(DataValidationError, match=problem) as info:
        compute_features(PRICE, broken)
    assert info.value.row == 8


def test_a_duplicated_bar_is_refused(bars: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match="appears twice"):
        compute_features(PRICE, pd.concat([bars, bars.iloc[[3]]], ignore_index=True))


def test_out_of_order_bars_give_the_same_features(bars: pd.DataFrame) -> None:
    shuffled = bars.sample(frac=1.0, random_state=1).reset_index(drop=True)
    pd.testing.assert_frame_equal(compute_features(PRICE, shuffled), compute_features(PRICE, bars))


def test_bars_outside_the_universe_are_refused(bars: pd.DataFrame) -> None:
    with pytest.raises(UnknownFeatureError, match="outside the universe"):
        bar_grid(bars, 60, symbols=[bars["symbol"].iloc[0]])


def test_a_headline_without_a_finite_score_is_refused(bars: pd.DataFrame) -> None:
    news = pd.DataFrame(
        {"ts_ns": [int(bars["start_ns"].iloc[5])], "symbols": [(bars["symbol"].iloc[0],)], "score": [np.nan]}
    )
    with pytest.raises(DataValidationError, match="not a finite number"):
        compute_features(SENTIMENT, bars, news=news)


def test_a_headline_counts_in_the_bar_it_was_published_in(bars: pd.DataFrame) -> None:
    symbol = bars["symbol"].iloc[0]
    t = int(bars["start_ns"].min()) + 30 * 60 * NS_PER_S
    news = pd.DataFrame({"ts_ns": [t + 59 * NS_PER_S], "symbols": [(symbol, "NOT-LISTED")], "score": [1.0]})
    grid = bar_grid(bars, 60, news=news)
    row, col = int((t - grid.times[0]) // (60 * NS_PER_S)), grid.symbols.index(symbol)
    assert grid.inputs["news_score"][row, col] == 1.0
    assert np.nansum(grid.inputs["news_count"]) == 1.0
