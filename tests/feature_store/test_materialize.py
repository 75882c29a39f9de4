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
