"""Offline writes: our COPY of trades and bars beside PostgreSQL's own ceiling.

Measured in one fresh database on the same server, in the same run, on the same rows:

* ``server_insert_<table>_rows_per_s``: ``INSERT INTO <table> SELECT * FROM <staged copy>``:
  the server alone moving the very same rows into the real partitioned, indexed table (no
  client, no protocol): the most any client write into that table can reach.
* ``asyncpg_copy_unindexed_rows_per_s``: asyncpg binary COPY of the trades into an unlogged
  table with no index: the client-and-protocol ceiling.
* ``copy_rows_per_s``: ``MarketDataStore.write_trades`` end to end (DataFrame to records,
  partition routing, BRIN index, WAL, one transaction).
* ``copy_bar_rows_per_s``: ``MarketDataStore.write_bars`` (primary-key btree and checks).
* ``server_insert_select_generated_rows_per_s``: ``INSERT ... SELECT generate_series`` of
  trades-shaped rows the server builds itself (text columns included).
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from benchmarks.results_file import Figure, write_results
from benchmarks.scratch_database import scratch_database
from feature_store.database import ensure_partitions, open_pool
from feature_store.market_data import MarketDataStore, to_records
from feature_store.records import BAR_COLUMNS, TRADE_COLUMNS
from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market

ROWS_GENERATED = 2_000_000


async def _server_ceiling(conn: asyncpg.Connection, table: str, staged: str, first: int, last: int) -> float:
    await ensure_partitions(conn, table, first, last)
    # Table names here are this script's own constants, never input.
    rows = await conn.fetchval("SELECT count(*) FROM " + staged)  # noqa: S608
    started = time.perf_counter()
    await conn.execute("INSERT INTO " + table + " SELECT * FROM " + staged)  # noqa: S608
    rate = rows / (time.perf_counter() - started)
    await conn.execute("TRUNCATE " + table)
    return rate


async def run() -> None:
    async with scratch_database() as url:
        market = simulate_market(SyntheticMarketConfig(days=7))
        trades, bars = market.trades, market.bars()
        pool = await open_pool(url)
        try:
            store = MarketDataStore(pool)
            async with pool.acquire() as conn:
                await conn.execute("CREATE UNLOGGED TABLE staged_trades (LIKE trades)")
                await conn.execute("CREATE UNLOGGED TABLE staged_bars (LIKE bars)")
                records = to_records(trades, TRADE_COLUMNS)
                started = time.perf_counter()
                await conn.copy_records_to_table("staged_trades", records=records)
                client_rate = len(records) / (time.perf_counter() - started)
                await conn.copy_records_to_table(
                    "staged_bars", records=to_records(bars, BAR_COLUMNS), columns=list(BAR_COLUMNS)
                )
                span = (int(trades["ts_ns"].min()), int(trades["ts_ns"].max()))
                trades_ceiling = await _server_ceiling(conn, "trades", "staged_trades", *span)
                bars_ceiling = await _server_ceiling(conn, "bars", "staged_bars", *span)
                await conn.execute("CREATE UNLOGGED TABLE generated (LIKE trades)")
                started = time.perf_counter()
                await conn.execute(
                    "INSERT INTO generated SELECT 'synthetic', 'SYM' || (i % 20), i, 100 + (i % 97) * 0.01, "
                    "1 + (i % 13), CASE WHEN i % 2 = 0 THEN 'buy' ELSE 'sell' END, i::text "
                    "FROM generate_series(1, $1::bigint) i",
                    ROWS_GENERATED,
                )
                generated_rate = ROWS_GENERATED / (time.perf_counter() - started)
            started = time.perf_counter()
            await store.write_trades(trades)
            trades_rate = len(trades) / (time.perf_counter() - started)
            started = time.perf_counter()
            await store.write_bars(bars)
            bars_rate = len(bars) / (time.perf_counter() - started)
        finally:
            await pool.close()

    into_trades = "server INSERT INTO trades SELECT (same rows) rows/s"
    write_results(
        "bench_offline_copy",
        [
            Figure("copy_rows_per_s", trades_rate, "rows/s", into_trades, trades_ceiling),
            Figure(
                "copy_bar_rows_per_s",
                bars_rate,
                "rows/s",
                "server INSERT INTO bars SELECT (same rows) rows/s",
                bars_ceiling,
            ),
            Figure("asyncpg_copy_unindexed_rows_per_s", client_rate, "rows/s", into_trades, trades_ceiling),
            Figure("server_insert_select_generated_rows_per_s", generated_rate, "rows/s", into_trades, trades_ceiling),
        ],
    )
    print(f"bench_offline_copy: {len(trades):,} trades, {len(bars):,} bars")


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
