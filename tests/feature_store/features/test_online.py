"""Online features: bad input is counted and dropped, never raised, never stored as values."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from feature_store.errors import UnknownFeatureError
from feature_store.features import PRICE, SENTIMENT, OnlineFeatures
from feature_store.records import NS_PER_S, Bar

T0 = 1_700_000_040 * NS_PER_S - (1_700_000_040 * NS_PER_S) % (60 * NS_PER_S)
MINUTE = 60 * NS_PER_S


def bar(symbol: str, i: int, close: float = 100.0) -> Bar:
    return Bar(symbol, T0 + i * MINUTE, 60, close, close * 1.001, close * 0.999, close, 5.0, 3.0, close, 4)


def test_a_good_bar_updates_its_symbol_and_others_are_gap_filled() -> None:
    online = OnlineFeatures(PRICE, ["AAA", "BBB"])
    online.update(T0, [bar("AAA", 0), bar("BBB", 0)])
    step = online.update(T0 + MINUTE, [bar("AAA", 1, 101.0)])
    assert step is not None
    assert step.symbols == ("AAA", "BBB")
    assert step.observed.tolist() == [True, False]
    ret_1 = step.values[:, PRICE.index(["ret_1"])[0]]
    assert ret_1[0] == pytest.approx(math.log(1.01))
    assert ret_1[1] == 0.0  # gap-filled at the last close
    assert not online.dropped


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (replace(bar("AAA", 1), close=float("nan")), "invalid_bar"),
        (replace(bar("AAA", 1), high=90.0), "invalid_bar"),
        (replace(bar("AAA", 1), volume=-1.0, buy_volume=0.0), "invalid_bar"),
        (bar("ZZZ", 1), "unknown_symbol"),
        (bar("AAA", 2), "misaligned_bar"),
    ],
)
def test_bad_bars_are_counted_dropped_and_the_symbol_is_gap_filled(bad: Bar, reason: str) -> None:
    online = OnlineFeatures(PRICE, ["AAA"])
    online.update(T0, [bar("AAA", 0)])
    step = online.update(T0 + MINUTE, [bad])
    assert step is not None
    assert online.dropped == {reason: 1}
    assert step.observed.tolist() == [False]
    assert np.isfinite(step.values[0, PRICE.index(["ret_1"])[0]])


def test_a_second_bar_in_the_same_interval_is_a_duplicate() -> None:
    online = OnlineFeatures(PRICE, ["AAA"])
    step = online.update(T0, [bar("AAA", 0, 100.0), bar("AAA", 0, 120.0)])
    assert step is not None
    assert online.dropped == {"duplicate_bar": 1}
    assert online.update(T0 + MINUTE, [bar("AAA", 1, 100.0)]) is not None


def test_an_interval_already_closed_is_a_late_update() -> None:
    online = OnlineFeatures(PRICE, ["AAA"])
    online.update(T0, [bar("AAA", 0)])
    online.update(T0 + MINUTE, [bar("AAA", 1)])
    assert online.update(T0, [bar("AAA", 0)]) is None
    assert online.dropped == {"late_update": 1}


def test_skipped_intervals_are_filled_before_the_next_one() -> None:
    online = OnlineFeatures(PRICE, ["AAA"])
    for i in range(3):
        online.update(T0 + i * MINUTE, [bar("AAA", i, 100.0 + i)])
    step = online.update(T0 + 10 * MINUTE, [bar("AAA", 10, 110.0)])
    assert step is not None
    ret_5 = step.values[0, PRICE.index(["ret_5"])[0]]
    assert ret_5 == pytest.approx(math.log(110.0 / 102.0))  # bars 5..9 carried the close of bar 2


def test_late_and_invalid_headlines_are_counted() -> None:
    online = OnlineFeatures(SENTIMENT, ["AAA"])
    online.update(T0, [bar("AAA", 0)])
    online.add_news(T0 + 10, ["AAA"], 1.0)  # its interval closed already
    online.add_news(T0 + MINUTE + 10, ["AAA"], float("inf"))
    online.add_news(T0 + MINUTE + 10, ["ZZZ"], 1.0)  # not in the universe: ignored
    assert online.dropped == {"late_news": 1, "invalid_news": 1}


def test_an_empty_universe_is_refused() -> None:
    with pytest.raises(UnknownFeatureError):
        OnlineFeatures(PRICE, [])
