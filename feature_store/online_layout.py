"""How the online store lays features out in bytes, shared by every online backend.

One value per (feature set, version, symbol) under the key
``{prefix}:{set}:{version}:{symbol}``: a 32-byte header, then a ring of ``window`` records,
one per bar, at slot ``(ts_ns / interval) mod window``::

    header  b"RRRF" | format u16 | features u16 | window u16 | 0 u16 | interval_s u32
            | version (16 ASCII hex digits)
    record  bar start ns (int64, big-endian, so that byte strings compare like numbers)
            | the feature vector (float32, little-endian)

Writing a bar for every symbol is one ``SETRANGE`` per key inside one server-side script
call; reading is one ``MGET``. ``{prefix}:{set}:version`` holds the version last written,
so that a reader asking for another version gets a clear error instead of "missing".
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feature_store.errors import (
    DataValidationError,
    FeatureVersionError,
    MissingFeaturesError,
    StaleFeaturesError,
)
from feature_store.features.registry import FeatureSet
from feature_store.records import NS_PER_S
from feature_store.stores import FeatureVectors, FeatureWindows

__all__ = ["OnlineLayout"]

_MAGIC = b"RRRF"
_FORMAT = 1
HEADER_BYTES = 32
_SYMBOL = re.compile(r"^[A-Za-z0-9._/\-]{1,64}$")


@dataclass(frozen=True)
class OnlineLayout:
    """Keys, encoding and read checks for one store configuration.

    Attributes:
        prefix: key prefix (``rrr:fs`` by default).
        window: bars kept per symbol (the longest window a reader can ask for).
        ttl_s: seconds a key lives after it was last refreshed; it is refreshed when it is
            created and each time its ring wraps, so a key outlives its last write by
            between ``ttl_s`` and ``ttl_s + window`` bars.
    """

    prefix: str = "rrr:fs"
    window: int = 32
    ttl_s: float = 3600.0

    def __post_init__(self) -> None:
        if not 1 <= self.window <= 4096:
            raise ValueError(f"window must be 1..4096 bars, got {self.window}")
        if not self.ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0, got {self.ttl_s}")

    # --- keys and bytes -------------------------------------------------------------------

    def key(self, feature_set: FeatureSet, symbol: str) -> str:
        """The key of one symbol's features under the set's current version."""
        return f"{self.prefix}:{feature_set.name}:{feature_set.version}:{symbol}"

    def version_key(self, feature_set: FeatureSet) -> str:
        """The key naming the version of ``feature_set`` last written."""
        return f"{self.prefix}:{feature_set.name}:version"

    def header(self, feature_set: FeatureSet) -> bytes:
        """The 32-byte header of the set's values."""
        head = _MAGIC + struct.pack("<HHHHI", _FORMAT, len(feature_set), self.window, 0, feature_set.interval_s)
        return head + feature_set.version.encode("ascii")

    def record_bytes(self, feature_set: FeatureSet) -> int:
        """Bytes of one bar's record."""
        return 8 + 4 * len(feature_set)

    def slot_offset(self, feature_set: FeatureSet, ts_ns: int) -> int:
        """Byte offset of the record of the bar starting at ``ts_ns``."""
        return HEADER_BYTES + self._slot(feature_set, ts_ns) * self.record_bytes(feature_set)

    def refreshes_ttl(self, feature_set: FeatureSet, ts_ns: int) -> bool:
        """Whether writing this bar refreshes the keys' TTL (the ring's first slot)."""
        return self._slot(feature_set, ts_ns) == 0

    def _slot(self, feature_set: FeatureSet, ts_ns: int) -> int:
        return ts_ns // (feature_set.interval_s * NS_PER_S) % self.window

    def encode(self, feature_set: FeatureSet, ts_ns: int, symbols: Sequence[str], values: npt.ArrayLike) -> bytes:
        """Check a write and pack its records, one per symbol, back to back.

        Raises:
            DataValidationError: see ``OnlineStore.write_latest``.
        """
        source = f"online write of {feature_set.name!r}"
        array = np.asarray(values, dtype=np.float64)
        expected = (len(symbols), len(feature_set))
        if array.shape != expected:
            raise DataValidationError(source, None, f"values have shape {array.shape}, expected {expected}")
        if isinstance(symbols, str) or len(set(symbols)) != len(symbols):
            raise DataValidationError(source, None, "symbols must be a sequence of distinct names")
        bad = [s for s in symbols if not _SYMBOL.match(s)]
        if bad:
            raise DataValidationError(source, None, f"malformed symbol(s) {bad[:5]}: letters, digits and ._/- only")
        if np.isinf(array).any():
            row = int(np.flatnonzero(np.isinf(array).any(axis=1))[0])
            column = feature_set.names[int(np.flatnonzero(np.isinf(array[row]))[0])]
            raise DataValidationError(source, row + 1, f"{column} of {symbols[row]} is infinite")
        too_big = np.abs(np.nan_to_num(array)) > np.finfo(np.float32).max
        if too_big.any():
            row = int(np.flatnonzero(too_big.any(axis=1))[0])
            raise DataValidationError(source, row + 1, f"a value of {symbols[row]} does not fit in float32")
        if ts_ns <= 0 or ts_ns % (feature_set.interval_s * NS_PER_S):
            raise DataValidationError(source, None, f"ts_ns {ts_ns} is not a bar start of {feature_set.interval_s} s")
        if self.ttl_s < 2 * self.window * feature_set.interval_s:
            raise DataValidationError(
                source, None, f"ttl_s {self.ttl_s} is shorter than two windows ({self.window} bars) of this set"
            )
        records = np.empty(len(symbols), dtype=[("ts", ">i8"), ("values", "<f4", (len(feature_set),))])
        records["ts"] = ts_ns
        records["values"] = array
        return records.tobytes()

    # --- reads ----------------------------------------------------------------------------

    def decode_latest(
        self,
        feature_set: FeatureSet,
        symbols: Sequence[str],
        stored_version: bytes | None,
        blobs: Sequence[bytes | None],
        *,
        as_of_ns: int | None,
        max_age_s: float | None,
        now_ns: int | None,
    ) -> FeatureVectors:
        """Check what an ``MGET`` returned and pick each symbol's latest vector."""
        ts, records = self._records(feature_set, symbols, stored_version, blobs)
        latest = ts.argmax(axis=1)
        rows = np.arange(len(symbols))
        latest_ts = ts[rows, latest]
        self._check_fresh(feature_set, symbols, latest_ts, as_of_ns, max_age_s, now_ns)
        values = records["values"][rows, latest].astype(np.float32)
        return FeatureVectors(feature_set.name, feature_set.version, tuple(symbols), latest_ts, values)

    def decode_windows(
        self,
        feature_set: FeatureSet,
        symbols: Sequence[str],
        length: int,
        stored_version: bytes | None,
        blobs: Sequence[bytes | None],
        *,
        as_of_ns: int | None,
        max_age_s: float | None,
        now_ns: int | None,
    ) -> FeatureWindows:
        """Check what an ``MGET`` returned and assemble each symbol's window, oldest first."""
        self.check_length(length)
        ts, records = self._records(feature_set, symbols, stored_version, blobs)
        latest_ts = ts.max(axis=1)
        self._check_fresh(feature_set, symbols, latest_ts, as_of_ns, max_age_s, now_ns)
        interval_ns = feature_set.interval_s * NS_PER_S
        wanted = latest_ts[:, None] - interval_ns * np.arange(length - 1, -1, -1, dtype=np.int64)[None, :]
        slots = (wanted // interval_ns) % ts.shape[1]
        rows = np.arange(len(symbols))[:, None]
        stored = ts[rows, slots] == wanted
        values = records["values"][rows, slots].astype(np.float32)
        values[~stored] = np.nan
        return FeatureWindows(feature_set.name, feature_set.version, tuple(symbols), latest_ts, values, stored)

    def check_length(self, length: int) -> None:
        """Raise ``ValueError`` unless ``1 <= length <= window``."""
        if not 1 <= length <= self.window:
            raise ValueError(f"window length must be 1..{self.window} bars (the store's window), got {length}")

    def _records(
        self,
        feature_set: FeatureSet,
        symbols: Sequence[str],
        stored_version: bytes | None,
        blobs: Sequence[bytes | None],
    ) -> tuple[npt.NDArray[np.int64], np.ndarray]:
        missing = [s for s, blob in zip(symbols, blobs, strict=True) if blob is None]
        if missing:
            other = stored_version.decode() if stored_version is not None else None
            if other is not None and other != feature_set.version:
                raise FeatureVersionError(
                    feature_set.name,
                    missing,
                    f"the online store holds version {other}, this read needs version {feature_set.version} "
                    "(recompute the features with this version, or use the model trained on the stored one)",
                )
            raise MissingFeaturesError(feature_set.name, missing, "no online features stored")
        dtype = np.dtype([("ts", ">i8"), ("values", "<f4", (len(feature_set),))])
        header = self.header(feature_set)
        rings = []
        for symbol, blob in zip(symbols, blobs, strict=True):
            assert blob is not None
            if blob[:4] != header[:4] or blob[16:32] != header[16:32] or blob[6:8] != header[6:8]:
                raise FeatureVersionError(
                    feature_set.name, [symbol], "the stored value was not written for this feature-set version"
                )
            window = struct.unpack_from("<H", blob, 8)[0]
            ring = np.frombuffer(blob, dtype=dtype, offset=HEADER_BYTES)
            if len(ring) < window:  # a new key not yet written in every slot
                ring = np.concatenate([ring, np.zeros(window - len(ring), dtype=dtype)])
            rings.append(ring[:window])
        if len({len(r) for r in rings}) > 1:
            raise FeatureVersionError(feature_set.name, list(symbols), "stored windows differ in length")
        stacked = np.stack(rings) if rings else np.zeros((0, self.window), dtype=dtype)
        return stacked["ts"].astype(np.int64), stacked

    def _check_fresh(
        self,
        feature_set: FeatureSet,
        symbols: Sequence[str],
        latest_ts: npt.NDArray[np.int64],
        as_of_ns: int | None,
        max_age_s: float | None,
        now_ns: int | None,
    ) -> None:
        if as_of_ns is not None:
            off = [s for s, t in zip(symbols, latest_ts.tolist(), strict=True) if t != as_of_ns]
            if off:
                shown = sorted({int(t) for t in latest_ts.tolist() if t != as_of_ns})[:3]
                raise StaleFeaturesError(
                    feature_set.name, off, f"latest stored bar is {shown}, not the requested bar {as_of_ns}"
                )
        if max_age_s is not None:
            now = time.time_ns() if now_ns is None else now_ns
            closed = latest_ts + feature_set.interval_s * NS_PER_S
            old = [s for s, t in zip(symbols, closed.tolist(), strict=True) if now - t > max_age_s * NS_PER_S]
            if old:
                raise StaleFeaturesError(
                    feature_set.name, old, f"latest stored bar closed more than {max_age_s} s before now"
                )
