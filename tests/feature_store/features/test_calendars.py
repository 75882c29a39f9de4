"""Markets that close: bars, features and labels on an exchange's sessions, offline and online alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_store.errors import DataValidationError
from feature_store.features.calendars import session_calendar
from feature_store.features.catalog import resolve
from feature_store.features.grid import bar_grid
from feature_store.records import NS_PER_S
from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market
from feature_store.training import forward_return_labels
from tests.feature_store.features.test_parity import assert_parity

HOUR = 3600 * NS_PER_S


def _ns(text: str) -> int:
    return pd.Timestamp(text, tz="UTC").value


@pytest.fixture(scope="module")
def nyse_hours() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hourly bars of 4 symbols over 40 days from 2018-11-20 (Thanksgiving, a half day, Christmas),
    kept only where NYSE is open, 5% of them missing; headlines at any hour, weekends included."""
    config = SyntheticMarketConfig(symbols=4, days=40, seed=5, interval_s=3600, start_ns=_ns("2018-11-20"))
    market = simulate_market(config)
    bars = market.bars()
    sessions = session_calendar("XNYS", 3600)
    bars = bars[sessions.is_open(bars["start_ns"].to_numpy())]
    keep = np.random.default_rng(1).random(len(bars)) > 0.05
    news = market.news.assign(score=market.news["label"].astype(float))
    return bars[keep].reset_index(drop=True), news


@pytest.mark.parametrize("name", ["price", "price_ohlcv", "risk", "sentiment"])
def test_offline_and_online_agree_on_an_exchange_calendar(
    name: str, nyse_hours: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    bars, news = nyse_hours
    assert_parity(resolve(name, 3600, "XNYS"), bars, news)


def test_closed_hours_weekends_and_holidays_are_not_bars(nyse_hours: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    bars, _ = nyse_hours
    nyse = bar_grid(bars, 3600, calendar="XNYS")
    around_the_clock = bar_grid(bars, 3600)
    times = pd.to_datetime(nyse.times, utc=True)
    assert set(times.day_of_week) <= {0, 1, 2, 3, 4}
    assert not ((times >= "2018-11-22") & (times < "2018-11-23")).any()  # Thanksgiving
    assert not ((times >= "2018-12-25") & (times < "2018-12-26")).any()  # Christmas
    assert set(times.hour) == {14, 15, 16, 17, 18, 19, 20}  # 9:30-16:00 New York in winter, hour slots
    assert len(around_the_clock.times) > 3 * len(nyse.times)  # what a 24/7 grid would gap-fill
    # Time of day is the time of the session: the first slot of a day starts it, later ones run on.
    angle = nyse.inputs["day_angle"][:, 0]
    first = times.hour == 14
    assert np.allclose(angle[first & np.isfinite(angle)], 0.0)
    at_20 = (times.hour == 20) & (times.day == 3) & (times.month == 12)
    expected = 2 * np.pi * (20 - 14.5) / 6.5
    assert np.allclose(angle[at_20], expected)


def test_a_bar_outside_the_sessions_is_refused_naming_it(nyse_hours: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    bars, _ = nyse_hours
    saturday = bars.iloc[[0]].assign(start_ns=_ns("2018-12-01 15:00"))
    with pytest.raises(DataValidationError, match="outside the XNYS sessions"):
        bar_grid(pd.concat([bars, saturday], ignore_index=True), 3600, calendar="XNYS")


def test_a_headline_published_while_closed_counts_in_the_next_session_bar() -> None:
    bars = pd.DataFrame(
        {
            "symbol": "SPY",
            "interval_s": 86400,
            "start_ns": [_ns("2018-11-30"), _ns("2018-12-03")],  # Friday, Monday
            "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0, "buy_volume": 0.5, "vwap": 1.0,
            "trades": 1,
        }
    )  # fmt: skip
    news = pd.DataFrame({"ts_ns": [_ns("2018-12-01 12:00")], "symbols": [("SPY",)], "score": [1.0]})
    grid = bar_grid(bars, 86400, news=news, calendar="XNYS")
    assert grid.inputs["news_count"][:, 0].tolist() == [0.0, 1.0]  # Saturday's headline: Monday's bar


def test_forward_returns_count_session_bars() -> None:
    days = ["2018-11-29", "2018-11-30", "2018-12-03", "2018-12-04"]  # Thu, Fri, Mon, Tue
    closes = [10.0, 11.0, 12.0, 13.0]
    bars = pd.DataFrame(
        {
            "symbol": "SPY", "interval_s": 86400, "start_ns": [_ns(d) for d in days], "open": closes,
            "high": closes, "low": closes, "close": closes, "volume": 1.0, "buy_volume": 0.5, "vwap": closes,
            "trades": 0,
        }
    )  # fmt: skip
    labels = forward_return_labels(bars, 1, 86400, calendar="XNYS")
    friday = labels[labels["ts_ns"] == _ns("2018-11-30")]["value"].item()
    assert friday == pytest.approx(np.log(12.0 / 11.0))  # to Monday, not to an empty Saturday
    assert len(labels) == 3


def test_calendars_version_feature_sets_and_unknown_names_are_clear() -> None:
    price = resolve("price", 60)
    assert price.version == resolve("price").version  # 24/7 keeps the versions it always had
    assert resolve("price", 60, "XNYS").version != price.version
    assert resolve("price", 3600).version != price.version
    with pytest.raises(DataValidationError, match="unknown session calendar 'NOPE'"):
        session_calendar("NOPE", 60)
