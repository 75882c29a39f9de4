"""How the online store lays features out in bytes, shared by every online backend.

One value per (feature set, version, symbol) under the key
``{prefix}:{set}:{version}:{symbol}``: a ring of ``window`` records, one per bar, at slot
``(ts_ns / interval) mod window``, followed by a 32-byte header::

    record  bar start ns (int64, big-endian) | the feature vector (float32, little-endian)
    header  b"RRRF" | format u16 | features u16 | window u16 | 0 u16 | interval_s u32
            | version (16 ASCII hex digits)

With the header last, the first write of a key is always shorter than a full value, which is
how a write tells a new key (header and TTL to set) from an existing one without reading it.
``{prefix}:{set}:{version}:latest`` holds the newest bar number written: a write ``window``
or more bars older than it could land in a slot holding newer data and is refused whole.
``{prefix}:{set}:{interval}s:version`` holds the version last written for bars of that
length, so that a reader asking for another version gets a clear error instead of "missing";
an engine on one-second bars and another on one-minute bars do not overwrite each other's.

Writing a bar for every symbol is one ``SETRANGE`` per key inside one server-side script
call; reading is one ``MGET``.
"""

from __future__ import annotations

import re
import struct
import time
from abc import ABC, abstractmethod
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
from feature_store.records import NS_PER_S, SYMBOL_PATTERN
from feature_store.stores import FeatureVectors, FeatureWindows

__all__ = ["LayoutReads", "OnlineLayout", "check_namespace", "record_dtype"]

_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,47}$")


def check_namespace(namespace: str) -> str:
    """``namespace`` if it is a valid online-store namespace, else a ValueError naming the rule."""
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise ValueError(
            f"namespace {namespace!r} is invalid: use 1-48 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return namespace


_MAGIC = b"RRRF"
_FORMAT = 1
HEADER_BYTES = 32
_SYMBOL = re.compile(SYMBOL_PATTERN)


@dataclass(frozen=True)
class OnlineLayout:
    """Keys, encoding and read checks for one store configuration.

    Attributes:
        prefix: key prefix (``rrr:fs`` by default). Changing ``window`` needs a new prefix.
        window: bars kept per symbol (the longest window a reader can ask for).
        ttl_s: seconds a key lives after it was last refreshed. A key is refreshed when it
            is created and then once every ``window`` bars (spread over the symbols so that
            every write costs the same), so it outlives its last write by between ``ttl_s``
            and ``ttl_s + window`` bars. It must cover at least two windows.
    """

    prefix: str = "rrr:fs"
    window: int = 32
    ttl_s: float = 21600.0

    def __post_init__(self) -> None:
        if not 1 <= self.window <= 4096:
            raise ValueError(f"window must be 1..4096 bars, got {self.window}")
        if not self.ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0, got {self.ttl_s}")

    @classmethod
    def for_interval(cls, interval_s: int, prefix: str = "rrr:fs", window: int = 32) -> OnlineLayout:
        """A layout whose TTL suits bars of ``interval_s`` seconds: the default six hours, or three
        windows when that is longer (a closed market's weekend included)."""
        return cls(prefix, window, max(21600.0, 3.0 * window * interval_s))

    def in_namespace(self, namespace: str) -> OnlineLayout:
        """The same layout under ``{prefix}:ns:{namespace}``: a separate store beside the live one
        (a backtest writes its features there without touching the live keys)."""
        return OnlineLayout(f"{self.prefix}:ns:{check_namespace(namespace)}", self.window, self.ttl_s)

    # --- keys and bytes -------------------------------------------------------------------

    def key(self, feature_set: FeatureSet, symbol: str) -> str:
        """The key of one symbol's features under the set's current version."""
        return f"{self.prefix}:{feature_set.name}:{feature_set.version}:{symbol}"

    def version_key(self, feature_set: FeatureSet) -> str:
        """The key naming the version of ``feature_set`` last written for bars of its length."""
        return f"{self.prefix}:{feature_set.name}:{feature_set.interval_s}s:version"

    def latest_key(self, feature_set: FeatureSet) -> str:
        """The key holding the newest bar number written for the set's version."""
        return f"{self.prefix}:{feature_set.name}:{feature_set.version}:latest"

    def generation_key(self, feature_set: FeatureSet) -> str:
        """The key that changes whenever a write could change a ring other than at its newest
        bars (a key created, an older bar written again): a reader caching rings (see
        :class:`feature_store.window_cache.WindowCache`) reads them whole again when it changed."""
        return f"{self.prefix}:{feature_set.name}:{feature_set.version}:generation"

    def header(self, feature_set: FeatureSet) -> bytes:
        """The 32-byte header of the set's values."""
        head = _MAGIC + struct.pack("<HHHHI", _FORMAT, len(feature_set), self.window, 0, feature_set.interval_s)
        return head + feature_set.version.encode("ascii")

    def record_bytes(self, feature_set: FeatureSet) -> int:
        """Bytes of one bar's record."""
        return 8 + 4 * len(feature_set)

    def value_bytes(self, feature_set: FeatureSet) -> int:
        """Bytes of one symbol's whole value (ring and header)."""
        return self.window * self.record_bytes(feature_set) + HEADER_BYTES

    def bar_number(self, feature_set: FeatureSet, ts_ns: int) -> int:
        """The bar's number (its slot is this modulo ``window``): bars since the epoch, or, for a
        market that closes, open slots of its calendar, so a window of session bars never wraps
        over itself across nights and weekends."""
        if feature_set.calendar == "24/7":
            return ts_ns // (feature_set.interval_s * NS_PER_S)
        return int(feature_set.sessions().bar_numbers(np.array([ts_ns]))[0])

    def slot_offset(self, feature_set: FeatureSet, ts_ns: int) -> int:
        """Byte offset of the record of the bar starting at ``ts_ns``."""
        return self.bar_number(feature_set, ts_ns) % self.window * self.record_bytes(feature_set)

    def check_symbols(self, feature_set: FeatureSet, symbols: Sequence[str]) -> None:
        """Raise :class:`DataValidationError` unless ``symbols`` are distinct well-formed names."""
        source = f"online write of {feature_set.name!r}"
        if isinstance(symbols, str) or len(set(symbols)) != len(symbols):
            raise DataValidationError(source, None, "symbols must be a sequence of distinct names")
        bad = [s for s in symbols if not isinstance(s, str) or not _SYMBOL.match(s)]
        if bad:
            raise DataValidationError(source, None, f"malformed symbol(s) {bad[:5]}: letters, digits and ._/- only")

    def encode(self, feature_set: FeatureSet, ts_ns: int, symbols: Sequence[str], values: npt.ArrayLike) -> bytes:
        """Check a write's values and pack its records, one per symbol, back to back.

        ``symbols`` must have passed :meth:`check_symbols`.

        Raises:
            DataValidationError: see ``OnlineStore.write_latest``.
        """
        source = f"online write of {feature_set.name!r}"
        array = np.asarray(values, dtype=np.float64)
        expected = (len(symbols), len(feature_set))
        if array.shape != expected:
            raise DataValidationError(source, None, f"values have shape {array.shape}, expected {expected}")
        out_of_range = ~(np.abs(array) <= np.finfo(np.float32).max) & ~np.isnan(array)
        if out_of_range.any():
            row = int(np.flatnonzero(out_of_range.any(axis=1))[0])
            column = feature_set.names[int(np.flatnonzero(out_of_range[row])[0])]
            raise DataValidationError(source, row + 1, f"{column} of {symbols[row]} is infinite or beyond float32")
        if ts_ns <= 0 or ts_ns % (feature_set.interval_s * NS_PER_S):
            raise DataValidationError(source, None, f"ts_ns {ts_ns} is not a bar start of {feature_set.interval_s} s")
        if self.ttl_s < 2 * self.window * feature_set.interval_s:
            raise DataValidationError(
                source, None, f"ttl_s {self.ttl_s} is shorter than two windows ({self.window} bars) of this set"
            )
        records = np.empty(len(symbols), dtype=record_dtype(feature_set))
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
        ts, records = self.records(feature_set, symbols, stored_version, blobs)
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
        ts, records = self.records(feature_set, symbols, stored_version, blobs)
        return self.ring_windows(
            feature_set, symbols, length, ts, records, as_of_ns=as_of_ns, max_age_s=max_age_s, now_ns=now_ns
        )

    def ring_windows(
        self,
        feature_set: FeatureSet,
        symbols: Sequence[str],
        length: int,
        ts: npt.NDArray[np.int64],
        records: np.ndarray,
        *,
        as_of_ns: int | None,
        max_age_s: float | None,
        now_ns: int | None,
    ) -> FeatureWindows:
        """Each symbol's window, oldest first, from rings already checked (``ts`` and ``records``
        of shape (symbols, window), as :meth:`records` returns them)."""
        latest_ts = ts.max(axis=1)
        self._check_fresh(feature_set, symbols, latest_ts, as_of_ns, max_age_s, now_ns)
        interval_ns = feature_set.interval_s * NS_PER_S
        back = interval_ns * np.arange(length - 1, -1, -1, dtype=np.int64)
        window = ts.shape[1]
        if feature_set.calendar != "24/7":
            return self._session_windows(feature_set, symbols, length, ts, records, latest_ts)
        if len(latest_ts) and (latest_ts == latest_ts[0]).all():
            # The usual case, every symbol written at the same bar: one slot order for all.
            wanted_one = latest_ts[0] - back
            order = (wanted_one // interval_ns) % window
            stored = ts[:, order] == wanted_one[None, :]
            values = records["values"][:, order]
        else:
            wanted = latest_ts[:, None] - back[None, :]
            slots = (wanted // interval_ns) % window
            rows = np.arange(len(symbols))[:, None]
            stored = ts[rows, slots] == wanted
            values = records["values"][rows, slots]
        values = values.astype(np.float32, copy=False)
        if not stored.all():
            values[~stored] = np.nan
        return FeatureWindows(feature_set.name, feature_set.version, tuple(symbols), latest_ts, values, stored)

    def _session_windows(
        self,
        feature_set: FeatureSet,
        symbols: Sequence[str],
        length: int,
        ts: npt.NDArray[np.int64],
        records: np.ndarray,
        latest_ts: npt.NDArray[np.int64],
    ) -> FeatureWindows:
        """:meth:`decode_windows` for a market that closes: the last ``length`` open slots."""
        sessions = feature_set.sessions()
        latest, which = np.unique(latest_ts, return_inverse=True)  # usually one bar for every symbol
        wanted = np.empty((len(latest_ts), length), dtype=np.int64)
        for i, t in enumerate(latest.tolist()):
            wanted[which.reshape(-1) == i] = sessions.previous_slots(int(t), length)
        slots = sessions.bar_numbers(wanted) % ts.shape[1]
        rows = np.arange(len(symbols))[:, None]
        stored = ts[rows, slots] == wanted
        values = records["values"][rows, slots].astype(np.float32, copy=False)
        if not stored.all():
            values[~stored] = np.nan
        return FeatureWindows(feature_set.name, feature_set.version, tuple(symbols), latest_ts, values, stored)

    def check_length(self, length: int) -> None:
        """Raise ``ValueError`` unless ``1 <= length <= window``."""
        if not 1 <= length <= self.window:
            raise ValueError(f"window length must be 1..{self.window} bars (the store's window), got {length}")

    def records(
        self,
        feature_set: FeatureSet,
        symbols: Sequence[str],
        stored_version: bytes | None,
        blobs: Sequence[bytes | None],
    ) -> tuple[npt.NDArray[np.int64], np.ndarray]:
        """Check what an ``MGET`` returned and unpack the rings: each slot's bar start (symbols,
        window) and the records themselves (a read-only view of ``blobs``).

        Raises:
            MissingFeaturesError: a symbol has no stored value.
            FeatureVersionError: a value was written for another version or layout.
        """
        # The checks run on every read of up to thousands of values: C-level tests first, the
        # lists naming the culprits only when one fails.
        missing = [s for s, blob in zip(symbols, blobs, strict=True) if blob is None] if None in blobs else []
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
        size = self.value_bytes(feature_set)
        if set(map(len, blobs)) - {size}:  # type: ignore[arg-type]  # none is None here
            odd = [s for s, blob in zip(symbols, blobs, strict=True) if blob is not None and len(blob) != size]
            raise FeatureVersionError(
                feature_set.name, odd, f"stored values are not {size} bytes (another window length or layout)"
            )
        joined = b"".join(blobs)  # type: ignore[arg-type]
        dtype = np.dtype([("ring", record_dtype(feature_set), (self.window,)), ("header", "S32")])
        values = np.frombuffer(joined, dtype=dtype)
        headers = np.frombuffer(joined, np.uint8).reshape(len(values), size)[:, size - HEADER_BYTES :]
        wrong = (headers != np.frombuffer(self.header(feature_set), np.uint8)).any(axis=1)
        if wrong.any():
            raise FeatureVersionError(
                feature_set.name,
                [s for s, w in zip(symbols, wrong.tolist(), strict=True) if w],
                "the stored value was not written for this feature-set version",
            )
        ring = values["ring"]
        return ring["ts"].astype(np.int64), ring

    def _check_fresh(
        self,
        feature_set: FeatureSet,
        symbols: Sequence[str],
        latest_ts: npt.NDArray[np.int64],
        as_of_ns: int | None,
        max_age_s: float | None,
        now_ns: int | None,
    ) -> None:
        # Vectorized tests first: these checks run on every read of up to thousands of symbols.
        if as_of_ns is not None and (latest_ts != as_of_ns).any():
            off = [s for s, t in zip(symbols, latest_ts.tolist(), strict=True) if t != as_of_ns]
            shown = sorted({int(t) for t in latest_ts.tolist() if t != as_of_ns})[:3]
            raise StaleFeaturesError(
                feature_set.name, off, f"latest stored bar is {shown}, not the requested bar {as_of_ns}"
            )
        if max_age_s is not None:
            now = time.time_ns() if now_ns is None else now_ns
            too_old = now - (latest_ts + feature_set.interval_s * NS_PER_S) > max_age_s * NS_PER_S
            if too_old.any():
                old = [s for s, o in zip(symbols, too_old.tolist(), strict=True) if o]
                raise StaleFeaturesError(
                    feature_set.name, old, f"latest stored bar closed more than {max_age_s} s before now"
                )


def record_dtype(feature_set: FeatureSet) -> np.dtype:
    """One bar's record: its start (int64, big-endian) and the feature vector (float32)."""
    return np.dtype([("ts", ">i8"), ("values", "<f4", (len(feature_set),))])


class LayoutReads(ABC):
    """The read side every online backend shares: fetch the values, then decode and check them.

    A backend sets ``layout`` and implements :meth:`_fetch` (one round trip).
    """

    layout: OnlineLayout

    def read_latest(
        self,
        feature_set: FeatureSet,
        symbols: Sequence[str],
        *,
        as_of_ns: int | None = None,
        max_age_s: float | None = None,
        now_ns: int | None = None,
    ) -> FeatureVectors:
        """See :meth:`feature_store.stores.OnlineStore.read_latest`."""
        version, blobs = self._fetch_checked(feature_set, symbols)
        return self.layout.decode_latest(
            feature_set, symbols, version, blobs, as_of_ns=as_of_ns, max_age_s=max_age_s, now_ns=now_ns
        )

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
        """See :meth:`feature_store.stores.OnlineStore.read_windows` (one set of
        :meth:`read_windows_many`, so a backend that reads several sets its own way reads one so too)."""
        many = self.read_windows_many
        return many([feature_set], symbols, length, as_of_ns=as_of_ns, max_age_s=max_age_s, now_ns=now_ns)[0]

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
        """:meth:`read_windows` of several feature sets for the same symbols, in one round trip
        where the backend can (a model reading two sets pays one network hop, not two)."""
        self.layout.check_length(length)
        if isinstance(symbols, str):
            raise TypeError("symbols must be a sequence of names, not one string")
        fetched = self._fetch_many(feature_sets, symbols)
        return [
            self.layout.decode_windows(
                fs, symbols, length, version, blobs, as_of_ns=as_of_ns, max_age_s=max_age_s, now_ns=now_ns
            )
            for fs, (version, blobs) in zip(feature_sets, fetched, strict=True)
        ]

    def _fetch_many(
        self, feature_sets: Sequence[FeatureSet], symbols: Sequence[str]
    ) -> list[tuple[bytes | None, list[bytes | None]]]:
        """Each set's :meth:`_fetch`; backends that can batch the reads override it."""
        return [self._fetch(fs, symbols) for fs in feature_sets]

    def _fetch_checked(
        self, feature_set: FeatureSet, symbols: Sequence[str]
    ) -> tuple[bytes | None, list[bytes | None]]:
        if isinstance(symbols, str):
            raise TypeError("symbols must be a sequence of names, not one string")
        return self._fetch(feature_set, symbols)

    @abstractmethod
    def _fetch(self, feature_set: FeatureSet, symbols: Sequence[str]) -> tuple[bytes | None, list[bytes | None]]:
        """The stored version name and each symbol's value (None where absent), in one round trip."""
