"""In-memory stores for unit tests of logic that uses a store.

They keep the same bytes (online) and tables (offline) as the real backends and apply the
same checks, so code tested against them behaves the same on Redis and PostgreSQL; the
contract tests run every backend through the same cases. They are not shared between
processes and hold everything in memory: never use them to store real data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_store.features.registry import FeatureSet
from feature_store.offline_frames import check_features, check_labels, empty_features, empty_labels
from feature_store.online_layout import LayoutReads, OnlineLayout

__all__ = ["InMemoryOfflineStore", "InMemoryOnlineStore"]


class InMemoryOnlineStore(LayoutReads):
    """The online store's behaviour (layout, refusals, TTL, errors) in a dict.

    Args:
        layout: key prefix, window length and TTL.
        clock_ns: the time used for TTLs (default: the wall clock).
    """

    def __init__(self, layout: OnlineLayout | None = None, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.layout = layout or OnlineLayout()
        self._clock = clock_ns
        self._values: dict[str, bytearray] = {}
        self._expires: dict[str, int] = {}

    def write_latest(self, feature_set: FeatureSet, ts_ns: int, symbols: Sequence[str], values: npt.ArrayLike) -> int:
        """See :meth:`feature_store.stores.OnlineStore.write_latest`."""
        self.layout.check_symbols(feature_set, symbols)
        blob = self.layout.encode(feature_set, ts_ns, symbols, values)
        if not symbols:
            return 0
        layout = self.layout
        bar = layout.bar_number(feature_set, ts_ns)
        now, ttl_ns = self._clock(), int(layout.ttl_s * 1e9)
        latest_key = layout.latest_key(feature_set)
        latest = self._get(latest_key)
        latest_bar = -1 if latest is None else int(latest.decode())
        if latest_bar >= 0 and bar <= latest_bar - layout.window:
            return len(symbols)
        self._set(layout.version_key(feature_set), feature_set.version.encode(), now + ttl_ns)
        if bar > latest_bar:
            self._set(latest_key, str(bar).encode(), now + ttl_ns)
        rec, offset, full = (
            layout.record_bytes(feature_set),
            layout.slot_offset(feature_set, ts_ns),
            layout.value_bytes(feature_set),
        )
        for i, symbol in enumerate(symbols, start=3):  # numbered like the script's KEYS
            key = layout.key(feature_set, symbol)
            value = self._get(key)
            if value is None:
                value = self._values[key] = bytearray()
            if len(value) < offset + rec:
                value.extend(bytes(offset + rec - len(value)))
            value[offset : offset + rec] = blob[(i - 3) * rec : (i - 2) * rec]
            if len(value) < full:
                header = layout.header(feature_set)
                value.extend(bytes(full - len(value)))
                value[full - len(header) :] = header
                self._expires[key] = now + ttl_ns
            elif (bar + i) % layout.window == 0:
                self._expires[key] = now + ttl_ns
        return 0

    def _set(self, key: str, value: bytes, expires_ns: int) -> None:
        self._values[key] = bytearray(value)
        self._expires[key] = expires_ns

    def _get(self, key: str) -> bytearray | None:
        if key in self._expires and self._expires[key] <= self._clock():
            del self._expires[key]
            self._values.pop(key, None)
        return self._values.get(key)

    def _fetch(self, feature_set: FeatureSet, symbols: Sequence[str]) -> tuple[bytes | None, list[bytes | None]]:
        version = self._get(self.layout.version_key(feature_set))
        blobs = [self._get(self.layout.key(feature_set, s)) for s in symbols]
        return (None if version is None else bytes(version)), [None if b is None else bytes(b) for b in blobs]


class InMemoryOfflineStore:
    """The offline store's behaviour (checks, replace, range reads) on DataFrames."""

    def __init__(self) -> None:
        self._features: dict[tuple[str, str], pd.DataFrame] = {}
        self._labels = empty_labels()

    async def write_features(self, feature_set: FeatureSet, features: pd.DataFrame, *, replace: bool = False) -> int:
        """See :meth:`feature_store.stores.OfflineStore.write_features`."""
        frame = check_features(feature_set, features)
        if len(frame) == 0:
            return 0
        key = (feature_set.name, feature_set.version)
        current = self._features.get(key, empty_features(feature_set))
        if replace:
            current = current[~_in_written_range(current, frame)]
        merged = pd.concat([current, frame], ignore_index=True)
        check_features(feature_set, merged)  # a (symbol, ts_ns) stored twice fails, as in PostgreSQL
        self._features[key] = merged
        return len(frame)

    async def read_features(
        self, feature_set: FeatureSet, start_ns: int, end_ns: int, symbols: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """See :meth:`feature_store.stores.OfflineStore.read_features`."""
        frame = self._features.get((feature_set.name, feature_set.version), empty_features(feature_set))
        return _select(frame, start_ns, end_ns, symbols, ["symbol", "ts_ns"])

    async def write_labels(self, labels: pd.DataFrame, *, replace: bool = False) -> int:
        """See :meth:`feature_store.stores.OfflineStore.write_labels`."""
        frame = check_labels(labels)
        if len(frame) == 0:
            return 0
        current = self._labels
        if replace:
            current = current[~(_in_written_range(current, frame) & current["name"].isin(set(frame["name"])))]
        merged = pd.concat([current, frame], ignore_index=True)
        check_labels(merged)
        self._labels = merged
        return len(frame)

    async def read_labels(
        self, names: Sequence[str], start_ns: int, end_ns: int, symbols: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """See :meth:`feature_store.stores.OfflineStore.read_labels`."""
        frame = self._labels[self._labels["name"].isin(list(names))]
        return _select(frame, start_ns, end_ns, symbols, ["name", "symbol", "ts_ns"])


def _in_written_range(current: pd.DataFrame, written: pd.DataFrame) -> npt.NDArray[np.bool_]:
    ts = current["ts_ns"]
    in_time = (ts >= written["ts_ns"].min()) & (ts <= written["ts_ns"].max())
    mask: npt.NDArray[np.bool_] = np.asarray(in_time & current["symbol"].isin(set(written["symbol"])), dtype=bool)
    return mask


def _select(
    frame: pd.DataFrame, start_ns: int, end_ns: int, symbols: Sequence[str] | None, order: list[str]
) -> pd.DataFrame:
    if isinstance(symbols, str):
        raise TypeError("symbols must be a sequence of names, not one string")
    mask = (frame["ts_ns"] >= start_ns) & (frame["ts_ns"] < end_ns)
    if symbols is not None:
        mask &= frame["symbol"].isin(list(symbols))
    return frame[mask].sort_values(order, kind="stable").reset_index(drop=True)
