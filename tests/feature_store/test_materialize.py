"""Materializing features end to end against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import secrets

import numpy as np

from feature_store.database import open_pool
from feature_store.features import PRICE, RISK, SENTIMENT, compute_features
from feature_store.ingest import store_synthetic_market
from feature_store.market_data import MarketDataStore
from feature_store.materialize import materialize_features
from feature_store.online_layout import OnlineLayout
from feature_store.postgres_store import PostgresOfflineStore
from feature_store.redis_store import RedisOnlineStore
from feature_store.services import ServiceUrls
from feature_store.sources.synthetic import SyntheticMarketConfig


def test_features_land_offline_and_the_latest_windows_online(
    fresh_database_url: str, service_urls: ServiceUrls
) -> None:
    config = SyntheticMarketConfig(symbols=3, days=0.3, seed=6)
    layout = OnlineLayout(prefix="test:" + secrets.token_hex(4), window=16)
    online = RedisOnlineStore.from_url(service_urls.redis_url, layout)

    async def scenario() -> None:
        pool = await open_pool(fresh_database_url)
        try:
            market_store = MarketDataStore(pool)
            market, _ = await store_synthetic_market(market_store, config)
            offline = PostgresOfflineStore(pool)
            end = config.start_ns + config.bars * 60 * 10**9
            for _ in range(2):  # a re-run replaces, it does not duplicate
                done = await materialize_features(
                    market_store, offline, online, [PRICE, RISK, SENTIMENT], config.start_ns, end, online_bars=16
                )
            assert done.rows["features_price"] == config.bars * 3
            stored = await offline.read_features(PRICE, 0, 2**62)
            assert len(stored) == config.bars * 3
            expected = compute_features(PRICE, market.bars())
            np.testing.assert_array_equal(stored[list(PRICE.names)].to_numpy(), expected[list(PRICE.names)].to_numpy())
            windows = online.read_windows(PRICE, list(market.symbols), 16, as_of_ns=done.latest_ts_ns)
            assert windows.stored.all()
            last = expected[expected["ts_ns"] == done.latest_ts_ns].set_index("symbol").loc[list(market.symbols)]
            np.testing.assert_array_equal(windows.values[:, -1, :], last[list(PRICE.names)].to_numpy(np.float32))
        finally:
            await pool.close()

    try:
        asyncio.run(scenario())
    finally:
        online.close()


def test_history_never_overwrites_newer_live_bars_online(service_urls: ServiceUrls) -> None:
    from feature_store.materialize import write_online_windows
    from feature_store.sources.synthetic import simulate_market

    market = simulate_market(SyntheticMarketConfig(symbols=3, days=0.1, seed=4))
    frame = compute_features(RISK, market.bars())
    layout = OnlineLayout(prefix="test:" + secrets.token_hex(4), window=16)
    online = RedisOnlineStore.from_url(service_urls.redis_url, layout)
    try:
        live, quiet = market.symbols[0], list(market.symbols[1:])
        newer = int(frame["ts_ns"].max()) + 60 * 10**9
        live_values = np.full((1, len(RISK)), 7.0)
        online.write_latest(RISK, newer, [live], live_values)  # a live engine got one bar further
        written = write_online_windows(online, RISK, frame, 16)
        assert written.newer == (live,) and written.symbols == len(quiet)
        kept = online.read_latest(RISK, [live])
        assert kept.ts_ns.tolist() == [newer] and (kept.values == 7.0).all()
        # The oldest bar is a whole window behind the live one: refused as too old, and reported.
        assert written.too_old == 1
        stored = online.read_windows(RISK, quiet, 16, as_of_ns=written.latest_ts_ns).stored
        assert not stored[:, 0].any() and stored[:, 1:].all()
    finally:
        online.close()
