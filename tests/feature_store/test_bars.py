"""Trades to bars: the vectorized and incremental paths give identical bars."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from feature_store.bars import BarAggregator, bars_from_trades
from feature_store.errors import DataValidationError
from feature_store.records import Trade, bars_frame, trades_frame, trades_from_frame
from feature_store.sources.recordings import read_recording_trades
from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market


def _incremental(trades: list[Trade], interval_s: int) -> pd.DataFrame:
    agg = BarAggregator(interval_s)
    bars = [bar for trade in trades for bar in agg.add(trade)] + agg.flush()
    return bars_frame(bars).sort_values(["symbol", "start_ns"]).reset_index(drop=True)


def _assert_identical(left: pd.DataFrame, right: pd.DataFrame) -> None:
    # Exact: no tolerance. Both paths sum each bar's trades in the same order.
    pd.testing.assert_frame_equal(left, right, check_dtype=False, check_exact=True)


@pytest.mark.parametrize("interval_s", [1, 60, 300])
def test_vectorized_and_incremental_bars_are_identical_on_synthetic_trades(interval_s: int) -> None:
    market = simulate_market(SyntheticMarketConfig(symbols=5, days=0.5, seed=11, trades_per_bar=12))
    trades = market.trades
    vectorized = bars_from_trades(trades, interval_s)
    _assert_identical(vectorized, _incremental(trades_from_frame(trades), interval_s))
    assert vectorized["trades"].sum() == len(trades)
    if interval_s >= 60:
        assert vectorized["trades"].max() > 8  # long enough to expose pairwise-summation rounding


@pytest.mark.parametrize(
    ("name", "interval_s"),
    [
        ("coinbase_exchange_ws_2021-04-17.cryptofeed.txt", 1),
        ("coinbase_exchange_ws_2021-04-17.cryptofeed.txt", 60),
        ("binance_spot_ws_2021-10-12.cryptofeed.txt", 60),
    ],
)
def test_bars_are_identical_on_real_recorded_trades(recordings_dir: Path, name: str, interval_s: int) -> None:
    trades = read_recording_trades(recordings_dir / name).trades
    trades = sorted(trades, key=lambda t: t.ts_ns)
    vectorized = bars_from_trades(trades_frame(trades), interval_s)
    assert len(vectorized) > 0
    _assert_identical(vectorized, _incremental(trades, interval_s))


def test_bars_of_known_trades() -> None:
    trades = [
        Trade("x", "A", 0, 10.0, 1.0, "buy", "1"),
        Trade("x", "A", 10 * 10**9, 12.0, 3.0, "sell", "2"),
        Trade("x", "A", 59 * 10**9, 11.0, 1.0, "buy", "3"),
        Trade("x", "A", 61 * 10**9, 9.0, 2.0, "sell", "4"),
    ]
    bars = bars_from_trades(trades_frame(trades), 60)
    first = bars.iloc[0]
    assert (first.open, first.high, first.low, first.close) == (10.0, 12.0, 10.0, 11.0)
    assert (first.volume, first.buy_volume, first.trades) == (5.0, 2.0, 3)
    assert first.vwap == pytest.approx((10 + 36 + 11) / 5)
    assert bars.iloc[1].start_ns == 60 * 10**9 and bars.iloc[1].buy_volume == 0.0


def test_a_late_trade_is_counted_and_dropped() -> None:
    agg = BarAggregator(60)
    agg.add(Trade("x", "A", 120 * 10**9, 10.0, 1.0, "buy", "1"))
    assert agg.add(Trade("x", "A", 30 * 10**9, 99.0, 1.0, "buy", "2")) == []
    assert agg.late_trades == 1
    (bar,) = agg.flush()
    assert bar.high == 10.0 and bar.trades == 1


def test_flush_closes_only_bars_whose_interval_ended() -> None:
    agg = BarAggregator(60)
    agg.add(Trade("x", "A", 10 * 10**9, 10.0, 1.0, "buy", "1"))
    agg.add(Trade("x", "B", 70 * 10**9, 10.0, 1.0, "buy", "1"))
    closed = agg.flush(now_ns=60 * 10**9)
    assert [b.symbol for b in closed] == ["A"]
    assert [b.symbol for b in agg.flush()] == ["B"]


def test_bad_interval_is_rejected() -> None:
    with pytest.raises(DataValidationError, match="interval_s"):
        BarAggregator(0)
    with pytest.raises(DataValidationError, match="interval_s"):
        bars_from_trades(trades_frame([]), -1)


def test_trades_from_bars_walk_each_bar_open_extremes_close() -> None:
    from feature_store.bars import trades_from_bars

    bars = pd.DataFrame(
        {
            "symbol": ["A", "B"], "interval_s": 3600, "start_ns": [0, 0], "open": [10.0, 10.0],
            "high": [12.0, 11.0], "low": [9.0, 7.0], "close": [11.0, 8.0], "volume": [8.0, 0.0],
            "buy_volume": [4.0, 0.0], "vwap": [10.5, 9.0], "trades": 0,
        }
    )  # fmt: skip
    trades = trades_from_bars(bars)
    a = [t for t in trades if t.symbol == "A"]
    b = [t for t in trades if t.symbol == "B"]
    assert [t.price for t in a] == [10.0, 9.0, 12.0, 11.0]  # closed up: low first
    assert [t.price for t in b] == [10.0, 11.0, 7.0, 8.0]  # closed down: high first
    assert [t.ts_ns for t in a] == [0, 900 * 10**9, 1800 * 10**9, 2700 * 10**9]
    assert sum(t.size for t in a) == 8.0 and all(t.size == 1.0 for t in b)  # no volume: one unit each
    assert [t.side for t in a] == ["buy", "sell", "buy", "sell"]
    assert [t.ts_ns for t in trades] == sorted(t.ts_ns for t in trades)
