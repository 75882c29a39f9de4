"""Labels and point-in-time-correct training sets.

A training row is keyed by ``(symbol, ts_ns)``, the start of a bar. Its features were
computed from bars that started at or before ``ts_ns`` and from headlines published before
that bar closed (``ts_ns + interval``); its labels are forward log returns from that close
to the close ``H`` bars later. Nothing a feature uses is later than the bar's close, and
nothing a label uses is earlier.

:func:`audit_point_in_time` proves it for a built set: at sampled bars ``t`` it recomputes
every feature from only the data available at ``t``'s close and compares. A feature that
read one bar of the future, or a join that paired a row with the next bar's features,
shows up as a mismatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from feature_store.errors import DataValidationError
from feature_store.features.grid import bar_grid
from feature_store.features.offline import compute_features
from feature_store.features.registry import FeatureSet
from feature_store.offline_frames import LABEL_COLUMNS
from feature_store.records import NS_PER_S
from feature_store.stores import OfflineStore

__all__ = [
    "Leak",
    "audit_point_in_time",
    "build_training_set",
    "forward_return_labels",
    "label_name",
    "training_set_from_bars",
]


def label_name(horizon_bars: int) -> str:
    """Name of the forward-return label over ``horizon_bars`` bars (``fwd_ret_15``)."""
    return f"fwd_ret_{horizon_bars}"


def forward_return_labels(
    bars: pd.DataFrame,
    horizon_bars: int,
    interval_s: int = 60,
    *,
    symbols: Sequence[str] | None = None,
    calendar: str = "24/7",
) -> pd.DataFrame:
    """Forward log returns ``log(close[t + H] / close[t])`` on the gap-filled bar grid.

    Rows exist where both closes exist (so the last ``H`` bars of the input have none). With
    a ``calendar`` that closes, ``H`` counts session bars (over a weekend, Friday's last bar
    looks ahead to Monday's).

    Returns:
        A labels table (``name, symbol, ts_ns, horizon_s, value``) sorted by symbol and time.
    """
    if horizon_bars < 1:
        raise DataValidationError("labels", None, f"horizon must be >= 1 bar, got {horizon_bars}")
    grid = bar_grid(bars, interval_s, symbols=symbols, calendar=calendar)
    log_close = np.log(grid.inputs["close"])
    forward = np.full(log_close.shape, np.nan)
    ahead = max(len(forward) - horizon_bars, 0)
    forward[:ahead] = log_close[horizon_bars:] - log_close[:ahead]
    sym_index, time_index = np.nonzero(np.isfinite(forward.T))
    return pd.DataFrame(
        {
            "name": label_name(horizon_bars),
            "symbol": np.asarray(grid.symbols, dtype=object)[sym_index],
            "ts_ns": grid.times[time_index],
            "horizon_s": horizon_bars * interval_s,
            "value": forward[time_index, sym_index],
        },
        columns=list(LABEL_COLUMNS),
    )


async def build_training_set(
    store: OfflineStore,
    feature_sets: Sequence[FeatureSet],
    labels: Sequence[str],
    start_ns: int,
    end_ns: int,
    symbols: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Join stored features of ``feature_sets`` with stored ``labels`` for ``[start_ns, end_ns)``.

    Features are matched on the exact ``(symbol, ts_ns)`` of their bar, never the nearest
    one. A feature name that appears in several sets (the same declared feature) appears
    once. Rows without every label (the last bars of the data) are left out.

    Returns:
        ``symbol``, ``ts_ns``, the features (NaN while warming up) and one column per label,
        sorted by time then symbol.
    """
    frames = [await store.read_features(fs, start_ns, end_ns, symbols) for fs in feature_sets]
    label_rows = await store.read_labels(list(labels), start_ns, end_ns, symbols)
    return _join(feature_sets, frames, label_rows, labels)


def training_set_from_bars(
    feature_sets: Sequence[FeatureSet],
    bars: pd.DataFrame,
    horizons: Sequence[int],
    *,
    news: pd.DataFrame | None = None,
    symbols: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The same table as :func:`build_training_set`, computed in memory from bars and news."""
    frames = [compute_features(fs, bars, news=news, symbols=symbols) for fs in feature_sets]
    interval = _one_interval(feature_sets)
    calendar = feature_sets[0].calendar
    labels = pd.concat([forward_return_labels(bars, h, interval, symbols=symbols, calendar=calendar) for h in horizons])
    return _join(feature_sets, frames, labels, [label_name(h) for h in horizons])


def _one_interval(feature_sets: Sequence[FeatureSet]) -> int:
    intervals = {fs.interval_s for fs in feature_sets}
    if len(intervals) != 1:
        raise DataValidationError("training set", None, f"feature sets mix bar intervals {sorted(intervals)}")
    calendars = {fs.calendar for fs in feature_sets}
    if len(calendars) != 1:
        raise DataValidationError("training set", None, f"feature sets mix session calendars {sorted(calendars)}")
    return intervals.pop()


def _join(
    feature_sets: Sequence[FeatureSet], frames: list[pd.DataFrame], labels: pd.DataFrame, names: Sequence[str]
) -> pd.DataFrame:
    _one_interval(feature_sets)
    math: dict[str, str] = {}
    joined: pd.DataFrame | None = None
    for fs, frame in zip(feature_sets, frames, strict=True):
        new = []
        for feature in fs.features:
            known = math.setdefault(feature.name, feature.expr.key)
            if known != feature.expr.key:
                raise DataValidationError("training set", None, f"feature {feature.name!r} differs between sets")
            if joined is None or feature.name not in joined:
                new.append(feature.name)
        part = frame[["symbol", "ts_ns", *new]]
        joined = part if joined is None else joined.merge(part, on=["symbol", "ts_ns"], how="inner")
    assert joined is not None
    wide = labels.pivot(index=["symbol", "ts_ns"], columns="name", values="value").reset_index()
    missing = [n for n in names if n not in wide]
    for name in missing:
        wide[name] = np.nan
    wide = wide[["symbol", "ts_ns", *names]].dropna(subset=list(names))
    out = joined.merge(wide, on=["symbol", "ts_ns"], how="inner")
    return out.sort_values(["ts_ns", "symbol"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Leak:
    """A training-set value that differs from its point-in-time recomputation."""

    column: str
    symbol: str
    ts_ns: int
    in_training_set: float
    point_in_time: float


def audit_point_in_time(
    training_set: pd.DataFrame,
    feature_sets: Sequence[FeatureSet],
    bars: pd.DataFrame,
    *,
    news: pd.DataFrame | None = None,
    horizons: Sequence[int] = (),
    cuts: int = 8,
    seed: int = 0,
    rtol: float = 1e-9,
) -> list[Leak]:
    """Recompute sampled rows of ``training_set`` from only what was known at their bar's close.

    For ``cuts`` bar times ``t`` sampled from the set (the last one always included), the
    features are recomputed from bars starting at or before ``t`` and headlines published
    before ``t``'s close, over the full universe, and compared with the rows at ``t``;
    labels ``fwd_ret_H`` are recomputed from the closes at ``t`` and ``t + H``.

    Returns:
        Every mismatch beyond ``rtol`` (relative) or in NaN-ness; empty when the set is
        point-in-time correct.
    """
    interval_ns = _one_interval(feature_sets) * NS_PER_S
    times = np.unique(training_set["ts_ns"].to_numpy(np.int64))
    if len(times) == 0:
        return []
    rng = np.random.default_rng(seed)
    chosen = np.unique(np.append(rng.choice(times, size=min(cuts, len(times)) - 1, replace=False), times[-1]))
    universe = sorted(set(bars["symbol"].tolist()))
    interval_s = interval_ns // NS_PER_S
    calendar = feature_sets[0].calendar
    labels_by_horizon = {
        h: forward_return_labels(bars, h, interval_s, symbols=universe, calendar=calendar) for h in horizons
    }
    leaks: list[Leak] = []
    for cut in chosen.tolist():
        known_bars = bars[bars["start_ns"] <= cut]
        known_news = None if news is None else news[news["ts_ns"] < cut + interval_ns]
        rows = training_set[training_set["ts_ns"] == cut].set_index("symbol")
        for fs in feature_sets:
            recomputed = compute_features(fs, known_bars, news=known_news, symbols=universe)
            recomputed = recomputed[recomputed["ts_ns"] == cut].set_index("symbol")
            leaks += _compare(rows, recomputed, [n for n in fs.names if n in rows], cut, rtol)
        for horizon, all_labels in labels_by_horizon.items():
            name = label_name(horizon)
            if name in rows:
                labels = all_labels[all_labels["ts_ns"] == cut].set_index("symbol").rename(columns={"value": name})
                leaks += _compare(rows, labels, [name], cut, rtol)
    return leaks


def _compare(rows: pd.DataFrame, truth: pd.DataFrame, columns: list[str], cut: int, rtol: float) -> list[Leak]:
    leaks: list[Leak] = []
    for symbol in rows.index:
        for column in columns:
            got = float(rows.at[symbol, column])
            want = float(truth.at[symbol, column]) if symbol in truth.index else float("nan")
            same_nan = np.isnan(got) and np.isnan(want)
            close = abs(got - want) <= rtol * max(abs(got), abs(want))
            if not (same_nan or close):
                leaks.append(Leak(column, str(symbol), cut, got, want))
    return leaks
