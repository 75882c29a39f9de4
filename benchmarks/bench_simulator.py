"""Synthetic market generation speed (default market: 20 symbols x 30 days).

Compared with: numpy's own rate of drawing normal variates on this machine (the simulator
draws several random numbers per trade, so it cannot beat this), and the 10 s budget we set
for generating the default market.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.results_file import Figure, write_results
from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market

DEFAULT_MARKET_BUDGET_S = 10.0


def main() -> None:
    config = SyntheticMarketConfig()
    simulate_market(SyntheticMarketConfig(symbols=2, days=0.1))  # warm imports and caches
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        market = simulate_market(config)
        timings.append(time.perf_counter() - started)
    seconds = min(timings)
    trades = len(market.trades)

    rng = np.random.default_rng(0)
    started = time.perf_counter()
    rng.standard_normal(trades * 4)
    draws_per_s = trades * 4 / (time.perf_counter() - started)

    started = time.perf_counter()
    bars = market.bars()
    bars_s = time.perf_counter() - started

    write_results(
        "bench_simulator",
        [
            Figure("sim_trades_per_s", trades / seconds, "trades/s", "numpy normal draws/s", draws_per_s),
            Figure("sim_default_market_s", seconds, "s", "budget for 20 symbols x 30 days", DEFAULT_MARKET_BUDGET_S),
            Figure("bars_from_trades_per_s", trades / bars_s, "trades/s", "simulator trades/s", trades / seconds),
            Figure("oracle_rank_ic", market.oracle_ic(), "IC", "target range upper bound", 0.10),
        ],
    )
    print(f"bench_simulator: {trades:,} trades, {len(bars):,} bars, runs {[round(t, 2) for t in timings]} s")


if __name__ == "__main__":
    main()
