"""The two store interfaces and the values they return.

* :class:`OnlineStore`: the latest feature vectors and a short recent window per
  (feature set, symbol), for serving and the engine. Redis in production
  (:class:`~feature_store.redis_store.RedisOnlineStore`), memory in unit tests
  (:class:`~feature_store.memory_store.InMemoryOnlineStore`).
* :class:`OfflineStore`: features and labels over time, for training.
  PostgreSQL (:class:`~feature_store.postgres_store.PostgresOfflineStore`) and memory
  (:class:`~feature_store.memory_store.InMemoryOfflineStore`).

Every backend passes the same contract tests (``tests/feature_store/test_store_contract.py``).
The online store is synchronous: one call is one round trip of a few milliseconds, and
redis-py's synchronous client is about twice as fast as its asyncio one for these calls;
asyncio code calls it through ``asyncio.to_thread``. The offline store is asynchronous
(asyncpg).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_store.features.registry import FeatureSet

__all__ = ["FeatureVectors", "FeatureWindows", "OfflineStore", "OnlineStore"]


@dataclass(frozen=True)
class FeatureVectors:
    """The latest feature vector of each symbol read.

    Attributes:
        feature_set: set name.
        version: the feature-set version the values were computed with.
        symbols: in the order asked for.
        ts_ns: bar start of each symbol's vector (values are known at that bar's close).
        values: float32 array (symbols x features); NaN where a feature was warming up.
    """

    feature_set: str
    version: str
    symbols: tuple[str, ...]
    ts_ns: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]


@dataclass(frozen=True)
class FeatureWindows:
    """The last ``length`` feature vectors of each symbol, oldest first.

    Attributes:
        ts_ns: bar start of each window's last vector.
        values: float32 array (symbols x length x features); a bar the store does not hold
            (never written, or overwritten) is all NaN and False in ``stored``.
        stored: bool array (symbols x length), True where the bar's vector was stored.
    """

    feature_set: str
    version: str
    symbols: tuple[str, ...]
    ts_ns: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]
    stored: npt.NDArray[np.bool_]


class OnlineStore(Protocol):
    """Latest features and recent windows per (feature set version, symbol)."""

    def write_latest(self, feature_set: FeatureSet, ts_ns: int, symbols: Sequence[str], values: npt.ArrayLike) -> int:
        """Store each symbol's vector for the bar starting at ``ts_ns``, all in one round trip.

        Returns the number of symbols refused because the store already holds a newer bar
        in the same window slot (a late write never overwrites newer data).

        Raises:
            DataValidationError: wrong shape, an infinite value, a repeated or malformed
                symbol, or a ``ts_ns`` off the set's interval; nothing is written.
        """
        ...

    def read_latest(
        self,
        feature_set: FeatureSet,
        symbols: Sequence[str],
        *,
        as_of_ns: int | None = None,
        max_age_s: float | None = None,
        now_ns: int | None = None,
    ) -> FeatureVectors:
        """Each symbol's latest vector, in one round trip.

        Args:
            as_of_ns: when given, every symbol's latest bar must start exactly then.
            max_age_s: when given, every symbol's latest bar must have closed at most
                this long before ``now_ns`` (default: the wall clock).

        Raises:
            FeatureVersionError: the store holds another version of the set.
            MissingFeaturesError: some symbols have no stored features.
            StaleFeaturesError: some symbols fail ``as_of_ns`` or ``max_age_s``.
        """
        ...

    def read_windows(
        self,
        feature_set: FeatureSet,
        symbols: Sequence[str],
        length: int,
        *,
        as_of_ns: int | None = None,
        max_age_s: float | None = None,
        now_ns: int | None = None,
    ) -> FeatureWindows:
        """Each symbol's last ``length`` vectors ending at its latest bar, in one round trip.

        Raises the same errors as :meth:`read_latest`, and ``ValueError`` when ``length``
        exceeds the window the store keeps.
        """
        ...

    def read_windows_many(
        self,
        feature_sets: Sequence[FeatureSet],
        symbols: Sequence[str],
        length: int,
        *,
        as_of_ns: int | None = None,
        max_age_s: float | None = None,
        now_ns: int | None = None,
    ) -> list[FeatureWindows]:
        """:meth:`read_windows` of each set for the same symbols, in one round trip where the
        backend can; raises the first set's error first."""
        ...


class OfflineStore(Protocol):
    """Features and labels over time, written in bulk and read by time range and symbols."""

    async def write_features(self, feature_set: FeatureSet, features: pd.DataFrame, *, replace: bool = False) -> int:
        """Store a features table (``symbol, ts_ns`` and the set's feature columns).

        ``replace=True`` first removes the set version's rows of the same symbols in the
        written time range. All or nothing.

        Raises:
            DataValidationError: a column is missing, a value is infinite or a
                (symbol, ts_ns) repeats; nothing is written.
            StorageError: the write failed; nothing is written.
        """
        ...

    async def read_features(
        self, feature_set: FeatureSet, start_ns: int, end_ns: int, symbols: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Rows of this set version with ``start_ns <= ts_ns < end_ns``, sorted by symbol and time."""
        ...

    async def write_labels(self, labels: pd.DataFrame, *, replace: bool = False) -> int:
        """Store labels (``name, symbol, ts_ns, horizon_s, value``); all or nothing."""
        ...

    async def read_labels(
        self, names: Sequence[str], start_ns: int, end_ns: int, symbols: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Labels ``names`` with ``start_ns <= ts_ns < end_ns``, sorted by name, symbol and time."""
        ...
