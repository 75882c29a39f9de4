"""A cumulative latency histogram that costs one bisect per sample, plus recent samples.

Prometheus reads the cumulative buckets (``histogram_quantile`` works on them); the engine's
own summaries (p50/p99 at the end of a run, the benchmarks) read the recent samples.
"""

from __future__ import annotations

import bisect
from collections import deque

import numpy as np

__all__ = ["LatencyHistogram"]

DEFAULT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


class LatencyHistogram:
    """Seconds per observation: cumulative buckets and the last ``keep`` samples."""

    def __init__(self, buckets: tuple[float, ...] = DEFAULT_BUCKETS_S, keep: int = 8192) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0
        self.recent: deque[float] = deque(maxlen=keep)

    def append(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds
        self.count += 1
        self.recent.append(seconds)

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, observations at or below it), ending with ``+Inf``."""
        out, total = [], 0
        for bound, n in zip((*(repr(b) for b in self.buckets), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out

    def quantile_ms(self, q: float) -> float | None:
        """The ``q`` quantile of the recent samples in milliseconds (None without samples)."""
        if not self.recent:
            return None
        return float(np.quantile(np.fromiter(self.recent, float), q) * 1000.0)
