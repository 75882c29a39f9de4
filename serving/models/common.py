"""What the three models share: devices, seeds, validation metrics and input checks.

Metrics follow the usual quant conventions:

- **IC**: the Pearson correlation, across symbols at one timestamp, of the forecast with the
  realized forward return, averaged over timestamps. **Rank IC** is the same with ranks
  (Spearman). **ICIR** is the mean of the per-timestamp IC over its standard deviation.
- **Hit rate**: the share of (symbol, time) forecasts whose sign matches the realized
  return (zero forecasts count as misses).
- **Long-short backtest**: every ``horizon`` bars (non-overlapping holding periods), go long
  the symbols with forecasts above the cross-sectional mean and short those below, weights
  proportional to the demeaned forecast rank and scaled to a gross exposure of 1. The period
  return is the weighted realized return less ``fee_bps`` per unit of turnover (the sum of
  absolute weight changes). Sharpe is annualized from the holding period's length.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Self

import numpy as np
import pandas as pd

from serving.errors import TrainingDataError

__all__ = [
    "JsonConfig",
    "LongShort",
    "Split",
    "autocast",
    "check_finite_columns",
    "cross_sectional_ics",
    "long_short_backtest",
    "pick_device",
    "seed_everything",
    "signal_metrics",
    "walk_forward_splits",
]

SECONDS_PER_YEAR = 365.0 * 86400.0


class JsonConfig:
    """``to_json``/``from_json`` for the frozen config dataclasses: tuples travel as JSON lists."""

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def pick_device(requested: str | None = None) -> str:
    """``cuda`` when a GPU is there (or ``requested``), else ``cpu``."""
    import torch

    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} was asked for but CUDA is not available on this machine")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a training run reproduces."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast(device: str) -> contextlib.AbstractContextManager[object]:
    """Mixed precision (bfloat16) on CUDA; a no-op on CPU, where float32 is faster here."""
    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def check_finite_columns(model: str, frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Refuse NaN, infinite or constant columns, naming them and counting the bad rows."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TrainingDataError(model, f"missing column(s) {missing}")
    values = frame[list(columns)].to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        counts = {c: int(n) for c, n in zip(columns, bad.sum(axis=0), strict=True) if n}
        raise TrainingDataError(model, f"NaN or infinite values in {counts} (rows of {len(frame)})")
    spread = values.max(axis=0) - values.min(axis=0) if len(values) else np.zeros(len(columns))
    constant = [c for c, s in zip(columns, spread, strict=True) if s == 0.0]
    if constant:
        raise TrainingDataError(model, f"constant column(s) {constant}: they carry no information")


def cross_sectional_ics(
    frame: pd.DataFrame, forecast: str, realized: str, *, time: str = "ts_ns", rank: bool = False
) -> pd.Series:
    """Per-timestamp correlation of ``forecast`` and ``realized`` across symbols (``ts_ns`` rows)."""
    from feature_store.sources.synthetic import cross_sectional_ics as per_timestamp

    return per_timestamp(frame, forecast, realized, time=time, rank=rank)


@dataclass(frozen=True, slots=True)
class LongShort:
    """Result of :func:`long_short_backtest`.

    ``returns`` holds one net return per bar: the book's return over the ``horizon`` bars that
    start there, divided by ``horizon`` (the share of capital that sleeve holds).
    """

    returns: pd.Series
    sharpe: float
    max_drawdown: float
    turnover: float
    total_return: float


def long_short_backtest(
    frame: pd.DataFrame,
    forecast: str,
    realized: str,
    *,
    horizon: int,
    interval_s: int,
    fee_bps: float = 2.0,
    time: str = "ts_ns",
    demean: bool = True,
) -> LongShort:
    """Dollar-neutral rank-weighted long-short book, held ``horizon`` bars, net of fees.

    ``demean=False`` (one or two symbols) holds each symbol long or short by the sign of its
    forecast, equally weighted: a time-series book.

    The capital is split into ``horizon`` staggered sleeves, one rebalancing at each bar offset
    (overlapping portfolios): every timestamp's forecast trades, and the result does not hang
    on which bar the rebalancing clock happens to start at. ``turnover`` is the mean one-way
    turnover of a sleeve per rebalance; fees are charged on it. The Sharpe ratio is annualized
    from non-overlapping blocks of ``horizon`` bars.
    """
    data = frame[[time, "symbol", forecast, realized]].dropna()
    if demean:
        ranks = data.groupby(time)[forecast].rank()
        centered = ranks - ranks.groupby(data[time]).transform("mean")
    else:
        centered = np.sign(data[forecast])
    gross = centered.abs().groupby(data[time]).transform("sum")
    data = data.assign(w=(centered / gross.where(gross > 0)).fillna(0.0))
    wide_w = data.pivot(index=time, columns="symbol", values="w").fillna(0.0)
    wide_r = data.pivot(index=time, columns="symbol", values=realized).reindex_like(wide_w).fillna(0.0)
    nets, turnovers = [], []
    for offset in range(min(horizon, len(wide_w))):
        w, r = wide_w.iloc[offset::horizon], wide_r.iloc[offset::horizon]
        turnover = w.diff().abs().sum(axis=1)
        turnover.iloc[:1] = w.iloc[:1].abs().sum(axis=1)
        nets.append((w * r).sum(axis=1) - turnover * fee_bps / 1e4)
        turnovers.append(turnover)
    if not nets:
        return LongShort(pd.Series(dtype=float), float("nan"), float("nan"), float("nan"), 0.0)
    net = pd.concat(nets).sort_index() / horizon
    blocks = net.groupby(np.arange(len(net)) // horizon).sum()
    periods_per_year = SECONDS_PER_YEAR / (horizon * interval_s)
    sd = float(blocks.std(ddof=1)) if len(blocks) > 1 else float("nan")
    sharpe = float(blocks.mean() / sd * math.sqrt(periods_per_year)) if sd and sd > 0 else float("nan")
    equity = net.cumsum()
    drawdown = float((equity.cummax().clip(lower=0.0) - equity).max())
    return LongShort(net, sharpe, drawdown, float(pd.concat(turnovers).mean()), float(net.sum()))


def pooled_ics(
    frame: pd.DataFrame, forecast: str, realized: str, *, time: str = "ts_ns", rank: bool = False
) -> pd.Series:
    """Per-timestamp parts of the pooled (time-series) correlation of ``forecast`` and ``realized``.

    Both sides are standardized over every row (all symbols, all times); the value at a
    timestamp is the mean product of its rows, so the series' mean is the pooled correlation
    (exactly, when every timestamp has the same number of symbols). What one or two symbols
    are scored by: there is no cross-section to correlate across.
    """
    data = frame[[time, forecast, realized]].dropna()
    x = data[forecast].astype(np.float64)
    y = data[realized].astype(np.float64)
    if rank:
        x, y = x.rank(), y.rank()
    sx, sy = float(x.std(ddof=0)), float(y.std(ddof=0))
    if not (sx > 0 and sy > 0):
        return pd.Series(dtype=float)
    parts = ((x - x.mean()) / sx) * ((y - y.mean()) / sy)
    return parts.groupby(data[time].to_numpy()).mean()


def ic_series(
    frame: pd.DataFrame, forecast: str, realized: str, *, cross_sectional: bool = True, rank: bool = False
) -> pd.Series:
    """Per-timestamp IC: cross-sectional correlations, or the pooled correlation's parts."""
    if cross_sectional:
        return cross_sectional_ics(frame, forecast, realized, rank=rank)
    return pooled_ics(frame, forecast, realized, rank=rank)


def newey_west_t(values: np.ndarray | pd.Series, lags: int) -> tuple[float, float]:
    """t-statistic and standard error of the mean of ``values`` with Newey-West (Bartlett) weights.

    Overlapping forward returns make neighbouring ICs correlated for ``horizon`` bars: a plain
    t-test would count each piece of information ``horizon`` times. NaN when fewer than
    ``lags + 2`` values or no variation.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < lags + 2:
        return float("nan"), float("nan")
    mean = float(x.mean())
    d = x - mean
    long_run = float(d @ d) / n
    for k in range(1, lags + 1):
        long_run += 2.0 * (1.0 - k / (lags + 1)) * float(d[k:] @ d[:-k]) / n
    if not long_run > 0:
        return float("nan"), float("nan")
    se = math.sqrt(long_run / n)
    return mean / se, se


def signal_metrics(
    frame: pd.DataFrame,
    forecast: str,
    realized: str,
    *,
    horizon: int,
    interval_s: int,
    fee_bps: float = 2.0,
    cross_sectional: bool = True,
) -> dict[str, float]:
    """IC, rank IC, ICIR, the IC's Newey-West t-statistic, hit rate and the long-short backtest.

    ``cross_sectional=False`` scores by the pooled time-series IC and trades each symbol's
    own sign in the backtest (no demeaning across symbols).
    """
    ics = ic_series(frame, forecast, realized, cross_sectional=cross_sectional)
    rank_ics = ic_series(frame, forecast, realized, cross_sectional=cross_sectional, rank=True)
    valid = frame[[forecast, realized]].dropna()
    hits = float((np.sign(valid[forecast]) == np.sign(valid[realized])).mean()) if len(valid) else float("nan")
    book = long_short_backtest(
        frame, forecast, realized, horizon=horizon, interval_s=interval_s, fee_bps=fee_bps, demean=cross_sectional
    )
    ic_sd = float(ics.std(ddof=1)) if len(ics) > 1 else float("nan")
    t, se = newey_west_t(ics.to_numpy(), horizon)
    return {
        "ic": float(ics.mean()) if len(ics) else float("nan"),
        "ic_nw_t": t,
        "ic_se": se,
        "rank_ic": float(rank_ics.mean()) if len(rank_ics) else float("nan"),
        "icir": float(ics.mean() / ic_sd) if ic_sd and ic_sd > 0 else float("nan"),
        "hit_rate": hits,
        "ls_sharpe": book.sharpe,
        "ls_max_drawdown": book.max_drawdown,
        "ls_turnover": book.turnover,
        "ls_total_return": book.total_return,
    }


@dataclass(frozen=True, slots=True)
class Split:
    """One walk-forward fold: train on ``[train_start, train_end)``, test on ``[test_start, test_end)``.

    The gap between ``train_end`` and ``test_start`` is the embargo: labels of the last training
    rows look ``horizon`` bars ahead and would otherwise overlap the test period.
    """

    train_start: int
    train_end: int
    test_start: int
    test_end: int


def walk_forward_splits(times: np.ndarray, folds: int, *, test_share: float, embargo: int) -> list[Split]:
    """Expanding-window folds over sorted unique ``times``; the last fold is the holdout.

    The final ``test_share`` of the timestamps is cut into ``folds`` consecutive test blocks;
    each fold trains on everything before its block less ``embargo`` timestamps.
    """
    times = np.unique(times)
    if folds < 1 or not 0.0 < test_share < 1.0:
        raise ValueError(f"need folds >= 1 and 0 < test_share < 1, got {folds} and {test_share}")
    first_test = int(len(times) * (1.0 - test_share))
    edges = np.linspace(first_test, len(times), folds + 1).astype(int)
    splits = []
    for a, b in itertools.pairwise(edges):
        train_end = a - embargo
        if train_end <= 0 or b <= a:
            raise ValueError(f"not enough timestamps ({len(times)}) for {folds} folds with an embargo of {embargo}")
        end = int(times[b]) if b < len(times) else int(times[-1]) + 1
        splits.append(Split(int(times[0]), int(times[train_end]), int(times[a]), end))
    return splits


def batches(count: int, size: int, *, shuffle: np.random.Generator | None = None) -> Iterator[np.ndarray]:
    """Index batches over ``range(count)``, shuffled when a generator is given."""
    order = shuffle.permutation(count) if shuffle is not None else np.arange(count)
    for start in range(0, count, size):
        yield order[start : start + size]
