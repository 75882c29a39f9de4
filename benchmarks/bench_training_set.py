"""Training set for 20 symbols x 30 days (the default synthetic market), from the offline store.

In one run, in a fresh database on the same server:

* ``offline_feature_write_rows_per_s``: ``PostgresOfflineStore.write_features`` of the
  price set (one ``float8[26]`` per row, primary key, one transaction); compare with
  ``copy_rows_per_s`` of ``bench_offline_copy`` (narrow trade rows) on the same server.
* ``training_set_build_s``: ``build_training_set`` reading the price and sentiment features
  and the 15-bar forward-return labels back and joining them, beside
  ``training_set_in_memory_s``: the same table computed from the bars in memory.
"""

from __future__ import annotations

import asyncio
import time

from benchmarks.results_file import Figure, write_results
from benchmarks.scratch_database import scratch_database
from feature_store.database import open_pool
from feature_store.features import PRICE, SENTIMENT, compute_features
from feature_store.postgres_store import PostgresOfflineStore
from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market
from feature_store.training import build_training_set, forward_return_labels, training_set_from_bars


async def run() -> None:
    async with scratch_database() as url:
        market = simulate_market(SyntheticMarketConfig())
        bars = market.bars()
        news = market.news.assign(score=market.news["label"].astype(float))
        started = time.perf_counter()
        in_memory = training_set_from_bars([PRICE, SENTIMENT], bars, [15], news=news)
        in_memory_s = time.perf_counter() - started
        price, sentiment = compute_features(PRICE, bars), compute_features(SENTIMENT, bars, news=news)
        pool = await open_pool(url)
        try:
            store = PostgresOfflineStore(pool)
            started = time.perf_counter()
            await store.write_features(PRICE, price)
            write_s = time.perf_counter() - started
            await store.write_features(SENTIMENT, sentiment)
            await store.write_labels(forward_return_labels(bars, 15))
            started = time.perf_counter()
            stored = await build_training_set(store, [PRICE, SENTIMENT], ["fwd_ret_15"], 0, 2**62)
            build_s = time.perf_counter() - started
        finally:
            await pool.close()
        assert len(stored) == len(in_memory), (len(stored), len(in_memory))
    write_results(
        "bench_training_set",
        [
            Figure("offline_feature_write_rows_per_s", len(price) / write_s, "rows/s", "rows written", len(price)),
            Figure("training_set_build_s", build_s, "s", "same table computed in memory from bars (s)", in_memory_s),
        ],
    )


if __name__ == "__main__":
    asyncio.run(run())
