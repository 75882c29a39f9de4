"""Feature computation speed: offline over a bars table, online per bar per symbol.

* ``offline_bar_features_per_s``: ``compute_features(PRICE, bars)`` over the default
  synthetic market (20 symbols x 30 days of 1-minute bars), bars times features per second,
  beside the 5 million target; ``offline_grid_bar_features_per_s`` is the evaluator alone
  (without checking the bars and building the long table).
* ``online_update_us_per_bar``: ``OnlineFeatures.update`` for 1,000 symbols whose bars all
  closed (the engine's batch), wall time per bar per symbol, beside the 20 us target;
  ``online_update_us_per_bar_20_symbols`` and ``_1_symbol`` show the fixed cost per update
  that a small universe cannot spread.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.results_file import Figure, write_results
from feature_store.features import PRICE, OnlineFeatures, compute_features
from feature_store.features.grid import bar_grid
from feature_store.features.offline import evaluate_grid
from feature_store.records import NS_PER_S, Bar
from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market

OFFLINE_TARGET = 5_000_000
ONLINE_TARGET_US = 20.0


def online_us_per_bar(symbols: int, steps: int = 400) -> float:
    names = [f"S{i:04d}-USD" for i in range(symbols)]
    online = OnlineFeatures(PRICE, names)
    rng = np.random.default_rng(1)
    t0 = 1_767_571_200 * NS_PER_S
    minute = 60 * NS_PER_S
    price = np.full(symbols, 100.0)
    batches = []
    for i in range(steps):
        price *= np.exp(rng.normal(0, 1e-3, symbols))
        batches.append(
            [
                Bar(n, t0 + i * minute, 60, p, p * 1.001, p * 0.999, p, 10.0, 6.0, p, 5)
                for n, p in zip(names, price.tolist(), strict=True)
            ]
        )
    for i in range(steps // 2):  # warm up past the longest lookback
        online.update(t0 + i * minute, batches[i])
    started = time.perf_counter()
    for i in range(steps // 2, steps):
        online.update(t0 + i * minute, batches[i])
    elapsed = time.perf_counter() - started
    return elapsed / (steps - steps // 2) / symbols * 1e6


def main() -> None:
    bars = simulate_market(SyntheticMarketConfig()).bars()
    compute_features(PRICE, bars.head(5000))  # warm imports
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        frame = compute_features(PRICE, bars)
        timings.append(time.perf_counter() - started)
    grid = bar_grid(bars, 60)
    started = time.perf_counter()
    evaluate_grid(PRICE, grid)
    grid_s = time.perf_counter() - started
    cells = len(frame) * len(PRICE)
    write_results(
        "bench_features",
        [
            Figure("offline_bar_features_per_s", cells / min(timings), "bar-features/s", "target", OFFLINE_TARGET),
            Figure("offline_grid_bar_features_per_s", cells / grid_s, "bar-features/s", "target", OFFLINE_TARGET),
            Figure("online_update_us_per_bar", online_us_per_bar(1000), "us", "target", ONLINE_TARGET_US),
            Figure("online_update_us_per_bar_20_symbols", online_us_per_bar(20), "us", "target", ONLINE_TARGET_US),
            Figure("online_update_us_per_bar_1_symbol", online_us_per_bar(1), "us", "target", ONLINE_TARGET_US),
        ],
    )


if __name__ == "__main__":
    main()
