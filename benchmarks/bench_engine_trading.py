"""The trading plane end to end: 1,000 synthetic symbols, 1-second bars, a real ``bentoml serve``.

The replay exchange runs in a process of its own (``python -m engine replay``), the model
service in another; the engine runs ``python -m engine run``'s code in this one against the
exchange (real time, trades only), its features warmed up from 800 bars of the exchange's
history, storing every decision, order and fill in PostgreSQL. After a settling period the
run is measured over ``BENCH_SECONDS`` of wall time (the latencies: every bar decided in the run).

Figures:

* ``engine_tick_to_decision_p50_ms`` / ``_p99_ms``: from the arrival of the message that
  closes a bar (or, in a quiet market, the moment the clock reached its close) through the
  bars, features to Redis, the batched model call, strategy and risk, to the decision's
  orders stored. Target: p99 at most 20 ms. Beside the p50: the model call's p50 in the same run.
* ``engine_decisions_per_wall_s``: symbols decided over the measured window divided by its
  wall seconds. Target: every symbol each second (1,000).
* ``engine_bars_decided``: bars decided in the measured window, beside the bars that closed in
  it (its wall seconds over the bar length).
* ``engine_model_call_p99_ms``: the batched ``/forecast`` call alone, beside tick-to-decision p99.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from benchmarks.replay_process import replay_exchange
from benchmarks.results_file import Figure, write_results
from benchmarks.sample_service import sample_model_service
from benchmarks.scratch_database import scratch_database
from engine.record import RecordOptions
from engine.summary import TradeSummary
from engine.trade import TradingOptions, run_trading
from engine.trading.strategy import StrategyParams

SYMBOLS = int(os.environ.get("BENCH_SYMBOLS", "1000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
SETTLE_S = 10.0
TICK_TARGET_MS = 20.0


async def _run(home: Path, service_url: str, redis_url: str, replay_url: str) -> tuple[TradeSummary, list]:
    samples: list[tuple[float, int, int]] = []  # (monotonic, decisions, bars) once live
    stop = asyncio.Event()

    def progress(summary: TradeSummary) -> None:
        if summary.bars < 2:
            return  # warming up
        samples.append((time.monotonic(), summary.decisions, summary.bars))
        if samples[-1][0] - samples[0][0] >= SETTLE_S + SECONDS:
            stop.set()

    async with scratch_database() as database_url:
        options = RecordOptions(
            venues=["coinbase"],
            replay_url=replay_url,
            bar_seconds=1,
            books=False,
            metrics_port=-1,
            spool_dir=home / "spool",
        )
        trading = TradingOptions(
            account="bench", serving_url=service_url, params=StrategyParams(gross=0.02, cap=0.005), model_timeout_s=1.0
        )
        summary = await run_trading(
            options, trading, database_url=database_url, redis_url=redis_url, progress=progress,
            progress_every_s=1.0, stop=stop,
        )  # fmt: skip
    return summary, samples


def main() -> int:
    with (
        replay_exchange(SYMBOLS, 1.0) as replay_url,
        sample_model_service(interval_s=1, redis_db=13, prefix="rrr-bench-trading-") as (url, redis_url, home),
    ):
        summary, samples = asyncio.run(_run(home, url, redis_url, replay_url))
    print("\n".join(summary.lines()))
    for venue, feed in summary.feeds.items():
        print(f"  feed {venue}: " + ", ".join(f"{k} {v}" for k, v in feed.items() if isinstance(v, int | float)))
    first = next(i for i, s in enumerate(samples) if s[0] >= samples[0][0] + SETTLE_S)
    (t0, d0, b0), (t1, d1, b1) = samples[first], samples[-1]
    window_s = t1 - t0
    p50, p99 = summary.tick_to_decision_ms
    m50, m99 = summary.model_call_ms
    write_results(
        "bench_engine_trading",
        [
            Figure("engine_tick_to_decision_p50_ms", p50 or 0.0, "ms", "model call p50 in the same run", m50),
            Figure("engine_tick_to_decision_p99_ms", p99 or 0.0, "ms", "target", TICK_TARGET_MS),
            Figure(
                "engine_decisions_per_wall_s",
                (d1 - d0) / window_s,
                "symbols/s",
                "target: every symbol each second",
                float(SYMBOLS),
            ),
            Figure(
                "engine_bars_decided", float(b1 - b0), "bars", f"bars closed in the {window_s:.1f} s window", window_s
            ),
            Figure("engine_model_call_p99_ms", m99 or 0.0, "ms", "tick-to-decision p99 in the same run", p99),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
