"""History backfill and the engine's warm start against the replay exchange (its own process).

1. ``backfill_bars_per_s``: ``python -m engine backfill``'s code fetching 20 symbols x 10,000
   one-second klines (200 pages of 1,000) from the replay exchange into an empty database,
   beside ``backfill_copy_rows_per_s``, the rate of writing the same rows again through the
   same ``COPY`` path in one go (the ceiling the network and paging leave room for).
2. ``warm_start_first_decision_s``: ``engine run --venue binance`` on a fresh database with
   20 symbols and one-minute bars served by a real ``bentoml serve``: from the call to the
   first decision stored (backfill of 800 bars per symbol, warm-up, model call, decision),
   against the 30 s target.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from benchmarks.results_file import Figure, write_results
from benchmarks.sample_service import sample_model_service
from benchmarks.scratch_database import scratch_database
from engine.backfill import BackfillOptions, backfill
from engine.record import RecordOptions
from engine.replay.market import SyntheticFeed
from engine.trade import TradingOptions, run_trading
from engine.trading.strategy import StrategyParams
from feature_store.database import open_pool
from feature_store.market_data import MarketDataStore
from serving import launcher

SYMBOLS = 20
BACKFILL_BARS = 10_000


def _exchange(port: int, history_bars: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "replay", "--symbols", str(SYMBOLS), "--port", str(port), "--no-books",
         "--history-bars", str(history_bars)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.readline()  # it prints its URLs once listening
    return proc


async def _backfill(rest_url: str, symbols: list[str]) -> tuple[float, float, int]:
    async with scratch_database() as database_url:
        pool = await open_pool(database_url, min_size=1, max_size=2)
        try:
            now = time.time_ns() // 10**9 * 10**9
            options = BackfillOptions(
                "binance", tuple(symbols), now - BACKFILL_BARS * 10**9, now, 1, rest_url=rest_url,
                max_requests_per_s=1000.0,
            )  # fmt: skip
            summary = await backfill(options, pool)
            frame = await MarketDataStore(pool).read_bars(0, now, symbols, interval_s=1)
            began = time.perf_counter()
            await MarketDataStore(pool).write_bars(frame, replace=True)
            copy_rate = len(frame) / (time.perf_counter() - began)
        finally:
            await pool.close()
    print("\n".join(summary.lines()[:1]))
    return summary.bars_per_s, copy_rate, summary.bars_stored


async def _warm_start(url: str, redis_url: str, home: Path, port: int, symbols: list[str]) -> float | None:
    async with scratch_database() as database_url:
        options = RecordOptions(
            venues=["binance"], symbols=symbols, binance_url=f"ws://127.0.0.1:{port}",
            binance_rest_url=f"http://127.0.0.1:{port}", bar_seconds=60, books=False, metrics_port=-1,
            spool_dir=home / "spool", duration_s=90.0,
        )  # fmt: skip
        trading = TradingOptions(account="warm", serving_url=url, params=StrategyParams(gross=0.02, cap=0.005),
                                 model_timeout_s=5.0)  # fmt: skip
        stop = asyncio.Event()
        began = time.monotonic()
        task = asyncio.create_task(run_trading(options, trading, database_url=database_url, redis_url=redis_url,
                                               stop=stop))  # fmt: skip
        conn = await asyncpg.connect(database_url)
        first = None
        try:
            while first is None and time.monotonic() - began < 85 and not task.done():
                try:
                    if await conn.fetchval("SELECT count(*) FROM decisions WHERE account = 'warm'"):
                        first = time.monotonic() - began
                except asyncpg.UndefinedTableError:
                    pass  # the engine migrates the database at start
                await asyncio.sleep(0.05)
        finally:
            await conn.close()
            stop.set()
            summary = await task
        print("\n".join(summary.lines()))
        return first


def main() -> int:
    symbols = list(SyntheticFeed(SYMBOLS, books=False).symbols)
    port = launcher.free_port()
    exchange = _exchange(port, BACKFILL_BARS + 10)
    try:
        backfill_rate, copy_rate, stored = asyncio.run(_backfill(f"http://127.0.0.1:{port}", symbols))
    finally:
        exchange.terminate()
        exchange.wait()
    port = launcher.free_port()
    exchange = _exchange(port, 1000)
    try:
        with sample_model_service(interval_s=60, redis_db=13, prefix="rrr-bench-warm-") as (url, redis_url, home):
            first = asyncio.run(_warm_start(url, redis_url, home, port, symbols))
    finally:
        exchange.terminate()
        exchange.wait()
    figures = [
        Figure("backfill_bars_per_s", backfill_rate, "bars/s", "backfill_copy_rows_per_s (same rows, one COPY)",
               copy_rate),
        Figure("backfill_copy_rows_per_s", copy_rate, "rows/s", "none", None),
        Figure("backfill_bars_stored", stored, "bars", "asked for", SYMBOLS * BACKFILL_BARS),
    ]  # fmt: skip
    if first is not None:
        figures.append(Figure("warm_start_first_decision_s", first, "s", "target", 30.0))
    else:
        print("warm start: no decision within 85 s", file=sys.stderr)
    write_results("bench_engine_warm_start", figures)
    return 0 if first is not None else 1


if __name__ == "__main__":
    sys.exit(main())
