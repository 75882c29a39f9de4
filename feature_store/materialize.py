"""Compute features for a time range and put them where training and serving read them.

:func:`materialize_features` reads bars and news from PostgreSQL, computes every feature
set offline, writes features and forward-return labels to the offline store (replacing the
range, so a re-run is idempotent) and the last ``window`` bars of vectors to the online
store, then reads the online windows back and checks they match what was computed.

Headline scores: until a sentiment model scores headlines, the score is the headline's
known ``label`` (synthetic news carries one); headlines without a label are left out and
counted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from feature_store.errors import FeatureVersionError, MissingFeaturesError, StorageError
from feature_store.features.offline import compute_features
from feature_store.features.registry import FeatureSet
from feature_store.market_data import MarketDataStore
from feature_store.stores import OfflineStore, OnlineStore
from feature_store.training import forward_return_labels

__all__ = ["MaterializeSummary", "OnlineWrite", "materialize_features", "write_online_windows"]


@dataclass
class MaterializeSummary:
    """What a materialization did: rows per table and seconds per step."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    latest_ts_ns: int | None = None
    symbols: int = 0


async def materialize_features(
    market: MarketDataStore,
    offline: OfflineStore,
    online: OnlineStore | None,
    feature_sets: Sequence[FeatureSet],
    start_ns: int,
    end_ns: int,
    *,
    horizons: Sequence[int] = (15,),
    online_bars: int = 32,
) -> MaterializeSummary:
    """Features and labels of ``[start_ns, end_ns)`` to the offline store, the latest bars online.

    Raises:
        StorageError: a store failed, or the online read-back differs from what was written.
        DataValidationError: the stored bars or news break the feature input policy.
    """
    summary = MaterializeSummary()
    intervals = {fs.interval_s for fs in feature_sets}
    if len(intervals) != 1:
        raise ValueError(f"feature sets mix bar intervals {sorted(intervals)}")
    if len({fs.calendar for fs in feature_sets}) != 1:
        raise ValueError(f"feature sets mix session calendars {sorted({fs.calendar for fs in feature_sets})}")
    interval_s = intervals.pop()
    clock = time.perf_counter()
    bars = await market.read_bars(start_ns, end_ns, interval_s=interval_s)
    news = await market.read_news(start_ns, end_ns)
    scored = news[news["label"].notna()].assign(score=lambda f: f["label"].astype(float))
    summary.rows["headlines_without_score"] = len(news) - len(scored)
    summary.seconds["read"] = time.perf_counter() - clock
    if len(bars) == 0:
        return summary
    frames: dict[str, pd.DataFrame] = {}
    for fs in feature_sets:
        clock = time.perf_counter()
        frames[fs.name] = compute_features(fs, bars, news=scored)
        summary.seconds[f"compute_{fs.name}"] = time.perf_counter() - clock
        clock = time.perf_counter()
        summary.rows[f"features_{fs.name}"] = await offline.write_features(fs, frames[fs.name], replace=True)
        summary.seconds[f"offline_{fs.name}"] = time.perf_counter() - clock
    clock = time.perf_counter()
    calendar = feature_sets[0].calendar
    labels = pd.concat(
        [forward_return_labels(bars, h, interval_s, calendar=calendar) for h in horizons], ignore_index=True
    )
    summary.rows["labels"] = await offline.write_labels(labels, replace=True)
    summary.seconds["labels"] = time.perf_counter() - clock
    if online is not None:
        clock = time.perf_counter()
        for fs in feature_sets:
            written = write_online_windows(online, fs, frames[fs.name], online_bars)
            summary.latest_ts_ns, summary.symbols = written.latest_ts_ns, written.symbols
        summary.seconds["online"] = time.perf_counter() - clock
    return summary


@dataclass(frozen=True)
class OnlineWrite:
    """What :func:`write_online_windows` wrote.

    Attributes:
        latest_ts_ns: the latest bar written.
        symbols: symbols written with it (and read back equal).
        newer: symbols left alone because the online store already holds a newer bar of theirs
            (a live engine writes the same keys): history never overwrites live data.
        too_old: bars the store refused because they are a window or more older than the
            newest bar it holds of the set (live data again); they read back as missing.
    """

    latest_ts_ns: int
    symbols: int
    newer: tuple[str, ...] = ()
    too_old: int = 0


def write_online_windows(online: OnlineStore, fs: FeatureSet, frame: pd.DataFrame, bars: int) -> OnlineWrite:
    """Write the last ``bars`` timestamps of ``frame`` online, read them back and compare.

    Symbols whose stored latest bar is newer than ``frame``'s are not written (see
    :class:`OnlineWrite`).

    Raises:
        StorageError: what was read back differs from what was written.
    """
    times = np.sort(frame["ts_ns"].unique())[-bars:]
    recent = frame[frame["ts_ns"].isin(times)]
    latest = int(times[-1])
    stored = _stored_latest(online, fs, sorted(recent["symbol"].unique().tolist()))
    newer = tuple(sorted(s for s, ts in stored.items() if ts > latest))
    if newer:
        recent = recent[~recent["symbol"].isin(newer)]
    refused = np.zeros(len(times), dtype=bool)
    for i, (ts, group) in enumerate(recent.groupby("ts_ns", sort=True)):
        assert int(ts) == int(times[i])
        refused[i] = online.write_latest(fs, int(ts), group["symbol"].tolist(), group[list(fs.names)].to_numpy()) > 0
    if refused.all():  # the store holds bars of this set a window or more newer: nothing of this lands
        return OnlineWrite(latest, 0, newer, int(refused.sum()))
    symbols = sorted(recent.loc[recent["ts_ns"] == latest, "symbol"].tolist())
    if symbols:
        back = online.read_windows(fs, symbols, len(times), as_of_ns=latest)
        want = recent.set_index(["symbol", "ts_ns"]).loc[[(s, int(t)) for s in symbols for t in times], list(fs.names)]
        expected = want.to_numpy(np.float32, copy=True).reshape(len(symbols), len(times), len(fs))
        expected[:, refused, :] = np.nan  # refused whole as too old: nothing of them is stored
        if not np.array_equal(back.values, expected, equal_nan=True) or back.stored[:, refused].any():
            raise StorageError(f"online features of {fs.name!r} read back differ from what was written")
    return OnlineWrite(latest, len(symbols), newer, int(refused.sum()))


def _stored_latest(online: OnlineStore, fs: FeatureSet, symbols: list[str]) -> dict[str, int]:
    """The latest stored bar of each of ``symbols`` that has one online."""
    present = list(symbols)
    while present:
        try:
            vectors = online.read_latest(fs, present)
        except (MissingFeaturesError, FeatureVersionError) as exc:  # never written (for this version): no bar
            present = [s for s in present if s not in set(exc.symbols)]
            continue
        return dict(zip(vectors.symbols, (int(t) for t in vectors.ts_ns), strict=True))
    return {}
