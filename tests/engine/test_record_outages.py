"""``record`` against its own PostgreSQL and Redis, both killed and restarted mid-stream.

The servers are private to this test (their own RRR_HOME); PostgreSQL gets an immediate
shutdown (a crash: no checkpoint) and Valkey a SIGKILL, then both start again on the same
ports. Every row the recorder acknowledged must be stored exactly once, and the features of
the intervals that closed while Redis was away must be written when it returns.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import asyncpg
import pytest

from engine.record import RecordOptions, RecordSummary, record
from feature_store import services
from feature_store.features.catalog import PRICE
from feature_store.redis_store import RedisOnlineStore

pytestmark = pytest.mark.slow


def _kill_both(home: Path) -> None:
    pgdata = services._pg_data(home)
    services._run_pg(
        services._postgres_run_as(pgdata.parent),
        [str(services._pg_bin() / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "stop"],
    )
    pid = services._valkey_pid(home)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


async def _scenario(home: Path, database_url: str, redis_url: str) -> RecordSummary:
    stop = asyncio.Event()
    options = RecordOptions(
        replay_symbols=6, trades_per_s=6, speed=1, bar_seconds=1, metrics_port=-1, spool_dir=home / "spool",
        venues=["coinbase", "binance"],
    )  # fmt: skip
    run = asyncio.create_task(record(options, database_url=database_url, redis_url=redis_url, stop=stop))
    await asyncio.sleep(4)
    await asyncio.to_thread(_kill_both, home)
    await asyncio.sleep(4)  # both away: rows wait in the buffer, features in memory
    state = await asyncio.to_thread(services.start_embedded, home)
    assert state["postgres"]["url"] == database_url and state["redis"]["url"] == redis_url  # same ports
    await asyncio.sleep(5)
    stop.set()
    return await run


def test_every_acknowledged_row_is_stored_once_across_outages(tmp_path: Path) -> None:
    home = tmp_path / "home"
    state = services.start_embedded(home)
    database_url, redis_url = state["postgres"]["url"], state["redis"]["url"]
    try:
        summary = asyncio.run(_scenario(home, database_url, redis_url))
        counts = asyncio.run(_stored(database_url))
        online = RedisOnlineStore.from_url(redis_url)
        try:
            latest = online.read_latest(PRICE.with_interval(1), ["ARC-USD"])
        finally:
            online.close()
    finally:
        services.stop_embedded(home)

    assert summary.plane["online_failures"] > 0 and summary.write_failures > 0  # both were really away
    assert summary.plane["online_unwritten"] == 0  # and every interval reached it afterwards
    assert summary.pending_rows == 0 and summary.spooled_batches == 0
    for table in ("trades", "bars", "book_snapshots", "features"):
        assert summary.accepted[table] > 0, table
        assert counts[table] == summary.accepted[table], f"{table}: rows in the database vs accepted"
        assert summary.written[table] == summary.accepted[table], f"{table}: rows counted written vs accepted"
    assert counts["duplicate_trades"] == 0 and counts["duplicate_books"] == 0
    assert int(latest.ts_ns[0]) == summary.plane["last_close_ns"]


async def _stored(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        out = {
            "trades": int(await conn.fetchval("SELECT count(*) FROM trades")),
            "bars": int(await conn.fetchval("SELECT count(*) FROM bars")),
            "book_snapshots": int(await conn.fetchval("SELECT count(*) FROM book_snapshots")),
            "features": int(await conn.fetchval("SELECT count(*) FROM features")),
        }
        out["duplicate_trades"] = int(await conn.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM trades GROUP BY venue, symbol, trade_id HAVING count(*) > 1) d"
        ))  # fmt: skip
        out["duplicate_books"] = int(await conn.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM book_snapshots GROUP BY venue, symbol, ts_ns HAVING count(*) > 1) d"
        ))  # fmt: skip
    finally:
        await conn.close()
    return out
