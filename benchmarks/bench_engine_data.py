"""Trades to bars to features to Redis for 1,000 synthetic symbols through the replay exchange.

The replay exchange runs in its own process at full speed (``--speed 0``: the market moves
as fast as the client reads, with back-pressure) and trades only. First a client that
decodes and drops everything measures what the exchange and the feed can deliver on these
2 cores (the limit); then the engine's data plane (bars, three online feature sets, one
Redis round trip per 1-second bar close) takes the same stream. Figures: sustained trades/s,
the receive lag early and late in the run (a growing lag is a growing backlog), and the
bar-close-to-features-in-Redis latency.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.results_file import Figure, write_results
from engine.config import BarInterval
from engine.dataplane import DataPlane
from engine.feeds.client import NullSink
from engine.feeds.venues import CoinbaseFeed
from engine.replay.market import SyntheticFeed
from feature_store.features.catalog import FEATURE_SETS
from feature_store.records import Trade
from feature_store.redis_store import RedisOnlineStore
from feature_store.services import resolve_service_urls, scratch_redis_db
from serving.launcher import free_port

SYMBOLS = 1000
SECONDS = float(os.environ.get("BENCH_SECONDS", "15"))


class _Lag:
    """Receive lag (local time minus the exchange's stamp), per second of the run."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.count = 0

    def trade(self, trade: Trade) -> None:
        self.count += 1
        if self.count % 97 == 0:
            self.samples.append((time.monotonic(), (time.time_ns() - trade.ts_ns) / 1e6))


class _CountingSink(NullSink):
    def __init__(self) -> None:
        self.lag = _Lag()

    def on_trade(self, trade: Trade) -> None:
        self.lag.trade(trade)


class _TimedPlane(DataPlane):
    lag: _Lag

    def on_trade(self, trade: Trade) -> None:
        self.lag.trade(trade)
        super().on_trade(trade)


async def _stream(url: str, symbols: list[str], sink: object, plane: DataPlane | None) -> tuple[float, _Lag]:
    feed = CoinbaseFeed(symbols, sink, url=url, books=False)  # type: ignore[arg-type]
    tasks = [asyncio.create_task(feed.run())]
    if plane is not None:
        tasks.append(asyncio.create_task(plane.run()))
    await asyncio.sleep(2.0)  # connect and warm up
    start_count, started = feed.stats.trades, time.monotonic()
    await asyncio.sleep(SECONDS)
    rate = (feed.stats.trades - start_count) / (time.monotonic() - started)
    feed.stop()
    if plane is not None:
        plane.stop()
    await asyncio.gather(*tasks)
    lag = sink.lag if hasattr(sink, "lag") else _Lag()
    return rate, lag


def _lag_p50(lag: _Lag, first: bool) -> float:
    if not lag.samples:
        return float("nan")
    t0, t1 = lag.samples[0][0], lag.samples[-1][0]
    window = [v for t, v in lag.samples if (t < t0 + 4 if first else t > t1 - 4)]
    return float(np.median(window)) if window else float("nan")


def main() -> int:
    urls = resolve_service_urls()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "engine", "replay", "--symbols", str(SYMBOLS), "--speed", "0", "--no-books",
         "--trades-per-s", "4", "--port", str(port)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        server.stdout.readline()  # the exchange prints its URLs once listening
        url = f"ws://127.0.0.1:{port}/"
        symbols = list(SyntheticFeed(SYMBOLS, books=False).symbols)
        limit_rate, _ = asyncio.run(_stream(url, symbols, _CountingSink(), None))
        online = RedisOnlineStore.from_url(scratch_redis_db(urls, 14))  # never a user's keys
        plane = _TimedPlane(symbols, list(FEATURE_SETS.values()), online=online, recorder=None, interval=BarInterval(1))
        plane.lag = _Lag()
        rate, lag = asyncio.run(_stream(url, symbols, plane, plane))
        online.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"limit {limit_rate:,.0f} trades/s; data plane {rate:,.0f} trades/s; {plane.stats}", file=sys.stderr)
    close = np.array(plane.stats.close_to_online_s) * 1000
    end = np.array(plane.stats.interval_end_to_online_s) * 1000
    write_results(
        "bench_engine_data",
        [
            Figure("engine_data_trades_per_s", rate, "trades/s", "decode-and-drop client, same exchange", limit_rate),
            Figure("engine_data_lag_first_4s_ms", _lag_p50(lag, True), "ms", "median receive lag", None),
            Figure("engine_data_lag_last_4s_ms", _lag_p50(lag, False), "ms", "median receive lag", None),
            Figure("bar_close_to_online_p50_ms", float(np.percentile(close, 50)), "ms", "", None),
            Figure("bar_close_to_online_p99_ms", float(np.percentile(close, 99)), "ms", "bar length", 1000.0),
            Figure("interval_end_to_online_p99_ms", float(np.percentile(end, 99)), "ms", "grace 250 ms + bar", 1250.0),
            Figure("engine_data_symbols", SYMBOLS, "symbols", "", None),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
