"""Offline feature computation: every feature of a set over a whole grid of bars at once.

Each node of the set's expression trees is computed once for the whole (time x symbol)
grid with numpy, in dependency order, and dropped as soon as nothing else needs it.
Running sums are cumulative sums differenced, decays are first-order recurrences
(``scipy.signal.lfilter``), and cross-sectional means reduce each time row: the same
operations, in the same order, as the online evaluator's per-bar updates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from feature_store.features.expressions import ELEMENTWISE, Expr
from feature_store.features.grid import BarGrid, bar_grid
from feature_store.features.kernels import Array, elementwise, recurrence_factor
from feature_store.features.registry import FeatureSet

__all__ = ["compute_features", "evaluate_grid", "features_frame"]


def compute_features(
    feature_set: FeatureSet,
    bars: pd.DataFrame,
    *,
    news: pd.DataFrame | None = None,
    symbols: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every feature of ``feature_set`` for every bar (gap-filled bars included).

    Args:
        bars: bars of the set's interval (``BAR_COLUMNS``).
        news: headlines with ``ts_ns``, ``symbols`` and ``score`` (for news features).
        symbols: the universe; cross-sectional features average over it (default: every
            symbol in ``bars``).

    Returns:
        One row per (symbol, bar) from each symbol's first bar to the last bar of the
        input, sorted by symbol and time: ``symbol``, ``ts_ns`` (the bar start; values are
        known at its close) and one float64 column per feature, NaN while warming up or
        where undefined.

    Raises:
        DataValidationError: the bars or news break the input policy of
            :mod:`feature_store.features.grid`; nothing is computed.
    """
    grid = bar_grid(bars, feature_set.interval_s, news=news, symbols=symbols, calendar=feature_set.calendar)
    return features_frame(feature_set, grid, evaluate_grid(feature_set, grid))


def features_frame(feature_set: FeatureSet, grid: BarGrid, values: Array) -> pd.DataFrame:
    """Long table (symbol-major) of ``values`` (times x symbols x features) where present."""
    present_t = grid.present.T  # (symbols, times): symbol-major row order
    sym_index, time_index = np.nonzero(present_t)
    frame = pd.DataFrame(
        {
            "symbol": np.asarray(grid.symbols, dtype=object)[sym_index],
            "ts_ns": grid.times[time_index],
        }
    )
    picked = values[time_index, sym_index, :]
    for j, name in enumerate(feature_set.names):
        frame[name] = picked[:, j]
    return frame


def evaluate_grid(feature_set: FeatureSet, grid: BarGrid) -> Array:
    """The set's features over ``grid`` as an array of shape (times, symbols, features)."""
    roots = [f.expr for f in feature_set.features]
    order: dict[str, Expr] = {}
    for root in roots:
        for node in root.nodes():
            order.setdefault(node.key, node)
    uses: Counter[str] = Counter(arg.key for node in order.values() for arg in node.args)
    uses.update(root.key for root in roots)
    values: dict[str, Array | float] = {}
    out = np.empty((len(grid.times), len(grid.symbols), len(roots)))
    for node in order.values():
        values[node.key] = _evaluate(node, [values[a.key] for a in node.args], grid)
        for arg in node.args:
            uses[arg.key] -= 1
            if uses[arg.key] == 0:
                del values[arg.key]
    for j, root in enumerate(roots):
        out[:, :, j] = values[root.key]
    return out


def _evaluate(node: Expr, args: list[Array | float], grid: BarGrid) -> Array | float:
    if node.op == "col":
        return grid.inputs[str(node.params[0])]
    if node.op == "const":
        return float(node.params[0])
    if node.op in ELEMENTWISE:
        return elementwise(node.op, args)
    x = np.asarray(args[0], dtype=np.float64)
    if node.op == "lag":
        k = int(node.params[0])
        lagged = np.full(x.shape, np.nan)
        lagged[k:] = x[: max(len(x) - k, 0)]
        return lagged
    if node.op == "rolling_sum":
        return _rolling_sum(x, int(node.params[0]))
    if node.op in ("ewm", "decay_sum"):
        return _recurrence(node, x)
    if node.op == "cross_mean":
        valid = np.isfinite(x)
        total = np.where(valid, x, 0.0).sum(axis=1)
        count = valid.sum(axis=1)
        mean = np.full(len(x), np.nan)
        np.divide(total, count, out=mean, where=count > 0)
        return np.where(grid.present, mean[:, None], np.nan)
    raise ValueError(f"unknown operator {node.op!r}")


def _rolling_sum(x: Array, window: int) -> Array:
    missing = np.isnan(x)
    running = np.cumsum(np.where(missing, 0.0, x), axis=0)
    running_missing = np.cumsum(missing, axis=0)
    earlier = np.zeros_like(running)
    earlier[window:] = running[: max(len(x) - window, 0)]
    earlier_missing = np.zeros_like(running_missing)
    earlier_missing[window:] = running_missing[: max(len(x) - window, 0)]
    out: Array = running - earlier
    # Rows before window - 1 reach back before the grid: unknown, like warm-up.
    out[(running_missing - earlier_missing > 0)] = np.nan
    out[: window - 1] = np.nan
    return out


def _recurrence(node: Expr, x: Array) -> Array:
    decay = recurrence_factor(node)
    min_periods = int(node.params[1])
    valid = np.isfinite(x)
    seen = np.cumsum(valid, axis=0)
    weighted = lfilter([1.0], [1.0, -decay], np.where(valid, x, 0.0), axis=0)
    if node.op == "ewm":
        weights = lfilter([1.0], [1.0, -decay], valid.astype(np.float64), axis=0)
        weighted = weighted / np.where(weights > 0.0, weights, np.nan)
    masked: Array = np.where(seen >= min_periods, weighted, np.nan)
    return masked
