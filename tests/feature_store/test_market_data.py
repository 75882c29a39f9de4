"""The market-data store on a real PostgreSQL: exact round trips, all-or-nothing writes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
import pandas as pd
import pytest

from feature_store.database import open_pool
from feature_store.errors import StorageError
from feature_store.market_data import MarketDataStore
from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market

T = TypeVar("T")
DAY = 86_400 * 10**9


def with_store(url: str, body: Callable[[MarketDataStore], Awaitable[T]]) -> T:
    async def run() -> T:
        pool = await open_pool(url)
        try:
            return await body(MarketDataStore(pool))
        finally:
            await pool.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def small_market():
    return simulate_market(SyntheticMarketConfig(symbols=4, days=2, seed=3))


def test_trades_bars_and_news_round_trip_exactly(fresh_database_url: str, small_market) -> None:
    bars = small_market.bars()
    start = small_market.config.start_ns

    async def body(store: MarketDataStore):
        counts = (
            await store.write_trades(small_market.trades),
            await store.write_bars(bars),
            await store.write_news(small_market.news),
        )
        return counts, (
            await store.read_trades(start, start + 3 * DAY),
            await store.read_bars(start, start + 3 * DAY),
            await store.read_news(start, start + 3 * DAY),
        )

    counts, (trades, read_bars, news) = with_store(fresh_database_url, body)
    assert counts == (len(small_market.trades), len(bars), len(small_market.news))
    expected = small_market.trades.sort_values(["symbol", "ts_ns", "venue", "trade_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(trades, expected, check_dtype=False)
    pd.testing.assert_frame_equal(read_bars, bars.reset_index(drop=True), check_dtype=False)
    want_news = small_market.news.sort_values(["ts_ns", "source", "headline"]).reset_index(drop=True)
    assert news["headline"].tolist() == want_news["headline"].tolist()
    assert news["symbols"].tolist() == want_news["symbols"].tolist()
    assert news["label"].astype(int).tolist() == want_news["label"].tolist()


def test_reads_select_by_time_range_and_symbols(fresh_database_url: str, small_market) -> None:
    bars = small_market.bars()
    start = small_market.config.start_ns
    wanted = list(small_market.symbols[:2])

    async def body(store: MarketDataStore):
        await store.write_bars(bars)
        await store.write_news(small_market.news)
        return (
            await store.read_bars(start + DAY // 2, start + DAY, wanted),
            await store.read_news(start, start + DAY, [wanted[0]]),
        )

    got, news = with_store(fresh_database_url, body)
    mask = bars["symbol"].isin(wanted) & (bars["start_ns"] >= start + DAY // 2) & (bars["start_ns"] < start + DAY)
    assert len(got) == int(mask.sum()) > 0
    assert set(got["symbol"]) == set(wanted)
    assert all(wanted[0] in s for s in news["symbols"])
    assert (news["ts_ns"] < start + DAY).all()


@pytest.mark.parametrize(
    ("column", "value"),
    [("price", np.nan), ("price", -1.0), ("price", np.inf), ("size", -5.0), ("side", "both")],
)
def test_a_bad_row_fails_the_whole_trade_write(fresh_database_url: str, small_market, column, value) -> None:
    trades = small_market.trades.head(1000).copy()
    trades[column] = trades[column].astype(object)
    trades.loc[trades.index[700], column] = value

    async def body(store: MarketDataStore):
        with pytest.raises(StorageError, match="nothing was stored"):
            await store.write_trades(trades)
        return await store.count("trades")

    assert with_store(fresh_database_url, body) == 0


def test_inconsistent_or_duplicate_bars_fail_the_whole_write(fresh_database_url: str, small_market) -> None:
    bars = small_market.bars().head(500).reset_index(drop=True)
    broken = bars.copy()
    broken.loc[400, "high"] = broken.loc[400, "low"] * 0.5
    duplicated = pd.concat([bars, bars.iloc[[10]]], ignore_index=True)

    async def body(store: MarketDataStore):
        for frame in (broken, duplicated):
            with pytest.raises(StorageError):
                await store.write_bars(frame)
        return await store.count("bars")

    assert with_store(fresh_database_url, body) == 0


def test_replace_makes_a_rewrite_idempotent(fresh_database_url: str, small_market) -> None:
    bars = small_market.bars()

    async def body(store: MarketDataStore):
        await store.write_bars(bars)
        with pytest.raises(StorageError):
            await store.write_bars(bars)  # the same bars again collide
        await store.write_bars(bars, replace=True)
        await store.write_trades(small_market.trades, replace=True)
        await store.write_trades(small_market.trades, replace=True)
        await store.write_news(small_market.news, replace=True)
        await store.write_news(small_market.news, replace=True)
        return [await store.count(t) for t in ("bars", "trades", "news")]

    assert with_store(fresh_database_url, body) == [len(bars), len(small_market.trades), len(small_market.news)]


def test_writing_nothing_stores_nothing_and_unknown_tables_are_refused(fresh_database_url: str, small_market) -> None:
    async def body(store: MarketDataStore):
        written = await store.write_bars(small_market.bars().head(0))
        with pytest.raises(StorageError, match="unknown table"):
            await store.count("orders; DROP TABLE bars")
        with pytest.raises(StorageError, match="missing column"):
            await store.write_bars(small_market.bars().drop(columns=["vwap"]))
        return written, await store.read_bars(0, 1)

    written, empty = with_store(fresh_database_url, body)
    assert written == 0 and len(empty) == 0
