"""The trading plane end to end: 1,000 synthetic symbols, 1-second bars, a real ``bentoml serve``.

The engine runs ``python -m engine run``'s code in-process against the replay exchange (real
time, trades only), with its features warmed up from 800 bars of synthetic history, storing
every decision, order and fill in PostgreSQL. Figures: symbols decided per second
(``engine_decisions_per_s``; the target is every one of the 1,000 symbols each second), the
tick-to-decision latency (from the tick that closes a bar, through features to Redis, the
batched model call, strategy and risk, to the orders stored and sent; the target is p99 at
most 20 ms), and beside it the time spent inside the model call in the same run.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from benchmarks.results_file import Figure, write_results
from benchmarks.sample_service import sample_model_service
from benchmarks.scratch_database import scratch_database
from engine.record import RecordOptions
from engine.trade import TradingOptions, run_trading
from engine.trading.strategy import StrategyParams

SYMBOLS = int(os.environ.get("BENCH_SYMBOLS", "1000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))


async def _run(home: Path, service_url: str, redis_url: str) -> tuple[object, object]:
    async with scratch_database() as database_url:
        options = RecordOptions(
            venues=["coinbase"],
            replay_symbols=SYMBOLS,
            trades_per_s=1.0,
            bar_seconds=1,
            duration_s=SECONDS,
            books=False,
            metrics_port=-1,
            spool_dir=home / "spool",
        )
        trading = TradingOptions(
            account="bench", serving_url=service_url, params=StrategyParams(gross=0.02, cap=0.005), model_timeout_s=1.0
        )
        summary = await run_trading(options, trading, database_url=database_url, redis_url=redis_url)
        return summary, None


def main() -> int:
    with sample_model_service(interval_s=1, redis_db=13, prefix="rrr-bench-trading-") as (url, redis_url, home):
        summary, _ = asyncio.run(_run(home, url, redis_url))
    s = summary  # type: ignore[assignment]
    print("\n".join(s.lines()))  # type: ignore[attr-defined]
    bars = max(s.bars - 2, 1)  # type: ignore[attr-defined]
    per_s = s.decisions / max(s.bars, 1)  # type: ignore[attr-defined]
    p50, p99 = s.tick_to_decision_ms  # type: ignore[attr-defined]
    m50, m99 = s.model_call_ms  # type: ignore[attr-defined]
    write_results(
        "bench_engine_trading",
        [
            Figure("engine_decisions_per_s", per_s, "symbols/s", "every symbol each second", float(SYMBOLS)),
            Figure("engine_bars_decided", float(s.bars), "bars", "one per second of the run", float(bars)),  # type: ignore[attr-defined]
            Figure("engine_tick_to_decision_p50_ms", p50 or 0.0, "ms", "model call p50 in the same run", m50),
            Figure("engine_tick_to_decision_p99_ms", p99 or 0.0, "ms", "target 20 ms", 20.0),
            Figure("engine_model_call_p99_ms", m99 or 0.0, "ms", "tick-to-decision p99 in the same run", p99),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
