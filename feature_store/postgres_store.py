"""The offline store on PostgreSQL: features and labels in daily-partitioned tables.

Features of a set version are rows ``(feature_set, version, symbol, ts_ns, vals float8[])``;
writes are one COPY in one transaction (and record the set's definitions in
``feature_sets``), reads are one COPY out with one CSV column per feature, parsed by
pyarrow. Labels are rows of ``labels`` written and read the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg
import numpy as np
import pandas as pd
import pyarrow as pa

from feature_store.database import copy_into, read_csv
from feature_store.errors import StorageError
from feature_store.features.registry import FeatureSet
from feature_store.offline_frames import LABEL_COLUMNS, check_features, check_labels

__all__ = ["PostgresOfflineStore"]

_REGISTER = "INSERT INTO feature_sets (name, version, features) VALUES ($1, $2, $3::jsonb) ON CONFLICT DO NOTHING"
_DELETE_FEATURES = (
    "DELETE FROM features WHERE ts_ns BETWEEN $1 AND $2 AND feature_set = $3 AND version = $4 "
    "AND symbol = ANY($5::text[])"
)
_DELETE_LABELS = (
    "DELETE FROM labels WHERE ts_ns BETWEEN $1 AND $2 AND name = ANY($3::text[]) AND symbol = ANY($4::text[])"
)
_READ_LABELS = (
    "SELECT name, symbol, ts_ns, horizon_s, value FROM labels WHERE name = ANY($1::text[]) "
    "AND ts_ns >= $2 AND ts_ns < $3 AND ($4::text[] IS NULL OR symbol = ANY($4::text[])) ORDER BY name, symbol, ts_ns"
)
_LABEL_TYPES = {"name": pa.string(), "symbol": pa.string(), "ts_ns": pa.int64(), "horizon_s": pa.int64()}


class PostgresOfflineStore:
    """Features and labels in PostgreSQL.

    Args:
        pool: an asyncpg pool on a migrated database (:func:`feature_store.database.open_pool`).
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def write_features(self, feature_set: FeatureSet, features: pd.DataFrame, *, replace: bool = False) -> int:
        """See :meth:`feature_store.stores.OfflineStore.write_features`."""
        frame = check_features(feature_set, features)
        if len(frame) == 0:
            return 0
        await self._register(feature_set)
        ts = frame["ts_ns"].to_numpy(np.int64)
        records = list(
            zip(
                [feature_set.name] * len(frame),
                [feature_set.version] * len(frame),
                frame["symbol"].tolist(),
                ts.tolist(),
                frame[list(feature_set.names)].to_numpy(np.float64).tolist(),
                strict=True,
            )
        )
        symbols = sorted(set(frame["symbol"].tolist()))
        delete = (_DELETE_FEATURES, (feature_set.name, feature_set.version, symbols)) if replace else None
        columns = ("feature_set", "version", "symbol", "ts_ns", "vals")
        return await copy_into(self._pool, "features", columns, records, (int(ts.min()), int(ts.max())), delete=delete)

    async def read_features(
        self, feature_set: FeatureSet, start_ns: int, end_ns: int, symbols: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """See :meth:`feature_store.stores.OfflineStore.read_features`."""
        query = _read_features_sql(len(feature_set))
        types = {"symbol": pa.string(), "ts_ns": pa.int64()} | {n: pa.float64() for n in feature_set.names}
        args = (feature_set.name, feature_set.version, start_ns, end_ns, _symbols(symbols))
        return await read_csv(self._pool, query, args, types)

    async def write_labels(self, labels: pd.DataFrame, *, replace: bool = False) -> int:
        """See :meth:`feature_store.stores.OfflineStore.write_labels`."""
        frame = check_labels(labels)
        if len(frame) == 0:
            return 0
        ts = frame["ts_ns"].to_numpy(np.int64)
        records = list(
            zip(
                frame["name"].tolist(),
                frame["symbol"].tolist(),
                ts.tolist(),
                frame["horizon_s"].astype(np.int64).tolist(),
                frame["value"].astype(np.float64).tolist(),
                strict=True,
            )
        )
        names = sorted(set(frame["name"].tolist()))
        symbols = sorted(set(frame["symbol"].tolist()))
        delete = (_DELETE_LABELS, (names, symbols)) if replace else None
        return await copy_into(
            self._pool, "labels", LABEL_COLUMNS, records, (int(ts.min()), int(ts.max())), delete=delete
        )

    async def read_labels(
        self, names: Sequence[str], start_ns: int, end_ns: int, symbols: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """See :meth:`feature_store.stores.OfflineStore.read_labels`."""
        types = _LABEL_TYPES | {"value": pa.float64()}
        return await read_csv(self._pool, _READ_LABELS, (list(names), start_ns, end_ns, _symbols(symbols)), types)

    async def _register(self, feature_set: FeatureSet) -> None:
        try:
            async with self._pool.acquire() as conn:
                await conn.execute(_REGISTER, feature_set.name, feature_set.version, json.dumps(feature_set.describe()))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StorageError(f"registering feature set {feature_set.name!r} failed: {exc}") from exc


def _read_features_sql(count: int) -> str:
    # One CSV column per feature (``vals[1]`` ... ``vals[n]``) lets pyarrow parse floats in
    # C; a column list cannot be a bind parameter, so it is built here from an integer
    # alone. Every value the query compares with is a parameter.
    columns = ", ".join(f"vals[{int(i) + 1}]" for i in range(int(count)))
    return (
        "SELECT symbol, ts_ns, " + columns + " FROM features WHERE feature_set = $1 AND version = $2 "  # noqa: S608
        "AND ts_ns >= $3 AND ts_ns < $4 AND ($5::text[] IS NULL OR symbol = ANY($5::text[])) ORDER BY symbol, ts_ns"
    )


def _symbols(symbols: Sequence[str] | None) -> list[str] | None:
    if symbols is None:
        return None
    if isinstance(symbols, str):
        raise TypeError("symbols must be a sequence of names, not one string")
    return list(symbols)
