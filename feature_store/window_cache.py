"""An in-memory copy of the online store's rings, brought up to date by reading only new bars.

A model reads the same symbols' windows at every bar; reading every ring whole (about 2 KB
per symbol and feature set) to use one new record per symbol is most of the cost of a
1,000-symbol forecast. A :class:`WindowCache` keeps the rings a reader last read, per
feature-set version and list of symbols, with the newest bar number the store held then and
its *generation* (see :meth:`~feature_store.online_layout.OnlineLayout.generation_key`).
The next read asks the store, in the same round trip, for the records from that bar up to
the newest one only; the store answers with whole values instead when the copy cannot be
brought up to date that way (its generation changed: a key was created again, an older bar
was written again; or more than a window of bars went by). Since every other write lands at
or after the newest bar, a copy brought up to date equals a whole read, and the windows are
assembled from it by the same code.

The cache is per store (so per namespace) and holds at most ``entries`` lists of symbols.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feature_store.features.registry import FeatureSet
from feature_store.online_layout import OnlineLayout, record_dtype

__all__ = ["CachedRings", "WindowCache"]


@dataclass
class CachedRings:
    """The rings of ``symbols`` as read when the store's newest bar was ``since``."""

    since: int
    generation: bytes
    ts: npt.NDArray[np.int64]  # (symbols, window) bar start of each slot
    records: np.ndarray  # (symbols, window) records, writable

    def advance(
        self,
        layout: OnlineLayout,
        feature_set: FeatureSet,
        latest: int,
        generation: bytes,
        values: Sequence[bytes | None],
    ) -> bool:
        """Put the records of bars ``since..latest`` (one string per symbol, as the store sent
        them) into the rings. False, changing nothing, when one is not of that length (a key
        gone or shortened since): the caller reads the rings whole."""
        bars = latest - self.since + 1
        size = bars * layout.record_bytes(feature_set)
        if any(v is None or len(v) != size for v in values):
            return False
        dtype = record_dtype(feature_set)
        records = np.frombuffer(b"".join(values), dtype=dtype).reshape(len(values), bars)  # type: ignore[arg-type]
        slots = (self.since + np.arange(bars)) % layout.window
        self.records[:, slots] = records
        self.ts[:, slots] = records["ts"]
        self.since, self.generation = latest, generation
        return True


class WindowCache:
    """Rings of the last ``entries`` (feature set, version, symbols) read; see the module docstring.

    ``lock`` serializes the reads that use it (a store shared by threads)."""

    def __init__(self, entries: int = 16) -> None:
        self.entries = entries
        self.lock = threading.Lock()
        self._rings: OrderedDict[tuple[str, str, tuple[str, ...]], CachedRings] = OrderedDict()
        self.whole_reads = 0  # rings read whole (first read, generation changed, gap)
        self.partial_reads = 0  # rings brought up to date from their newest bars

    def get(self, feature_set: FeatureSet, symbols: Sequence[str]) -> CachedRings | None:
        key = (feature_set.name, feature_set.version, tuple(symbols))
        found = self._rings.get(key)
        if found is not None:
            self._rings.move_to_end(key)
        return found

    def put(self, feature_set: FeatureSet, symbols: Sequence[str], rings: CachedRings) -> None:
        self._rings[(feature_set.name, feature_set.version, tuple(symbols))] = rings
        while len(self._rings) > self.entries:
            self._rings.popitem(last=False)

    def drop(self, feature_set: FeatureSet, symbols: Sequence[str]) -> None:
        self._rings.pop((feature_set.name, feature_set.version, tuple(symbols)), None)
