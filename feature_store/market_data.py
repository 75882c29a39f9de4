"""Market data in PostgreSQL: trades, bars and news.

Writes are bulk ``COPY`` (asyncpg ``copy_records_to_table``) inside one transaction: a
write is all or nothing. A row that breaks a table rule (NaN or non-positive price, a
trade stored twice, high below low...) fails the whole write with a :class:`StorageError`
and nothing of it stays. ``replace=True`` first deletes the rows of the same symbols in the
written time range, in the same transaction, which makes re-running an import idempotent.
Reads stream ``COPY ... TO STDOUT`` as CSV (see :func:`feature_store.database.read_csv`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
import pandas as pd
import pyarrow as pa

from feature_store.database import copy_into, read_csv
from feature_store.errors import StorageError
from feature_store.records import BAR_COLUMNS, NS_PER_S, TRADE_COLUMNS, Trade

__all__ = ["MarketDataStore", "to_records"]

NEWS_COLUMNS_STORED: tuple[str, ...] = ("ts_ns", "symbols", "headline", "source", "label")


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    time: str
    types: dict[str, pa.DataType]
    delete_sql: str
    read_sql: str


def _types(columns: Sequence[str], ints: set[str], text: set[str]) -> dict[str, pa.DataType]:
    return {c: pa.int64() if c in ints else pa.string() if c in text else pa.float64() for c in columns}


_TRADES = _Table(
    "trades",
    TRADE_COLUMNS,
    "ts_ns",
    _types(TRADE_COLUMNS, {"ts_ns"}, {"venue", "symbol", "side", "trade_id"}),
    "DELETE FROM trades WHERE ts_ns BETWEEN $1 AND $2 AND symbol = ANY($3::text[])",
    "SELECT venue, symbol, ts_ns, price, size, side, trade_id FROM trades "
    "WHERE ts_ns >= $1 AND ts_ns < $2 AND ($3::text[] IS NULL OR symbol = ANY($3::text[])) "
    "ORDER BY symbol, ts_ns, venue, trade_id",
)
_BARS = _Table(
    "bars",
    BAR_COLUMNS,
    "start_ns",
    _types(BAR_COLUMNS, {"start_ns", "interval_s", "trades"}, {"symbol"}),
    "DELETE FROM bars WHERE start_ns BETWEEN $1 AND $2 AND symbol = ANY($3::text[]) AND interval_s = ANY($4::int[])",
    "SELECT symbol, start_ns, interval_s, open, high, low, close, volume, buy_volume, vwap, trades "
    "FROM bars WHERE start_ns >= $1 AND start_ns < $2 AND interval_s = $4 "
    "AND ($3::text[] IS NULL OR symbol = ANY($3::text[])) ORDER BY symbol, start_ns",
)
_SPAN = (
    "SELECT min(ts_ns), max(ts_ns) FROM trades WHERE ts_ns >= $1 AND ts_ns <= $2 "
    "AND ($3::text[] IS NULL OR symbol = ANY($3::text[])) AND ($4::text IS NULL OR venue = $4)"
)
_SPAN_SYMBOLS = (
    "SELECT DISTINCT symbol FROM trades WHERE ts_ns >= $1 AND ts_ns <= $2 "
    "AND ($3::text[] IS NULL OR symbol = ANY($3::text[])) AND ($4::text IS NULL OR venue = $4) ORDER BY symbol"
)
_ITER_TRADES = (
    "SELECT venue, symbol, ts_ns, price, size, side, trade_id FROM trades "
    "WHERE ts_ns >= $1 AND ts_ns < $2 AND ($3::text[] IS NULL OR symbol = ANY($3::text[])) "
    "AND ($4::text IS NULL OR venue = $4) ORDER BY ts_ns, symbol, venue, length(trade_id), trade_id"
)
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
_NEWS_DELETE = "DELETE FROM news WHERE ts_ns BETWEEN $1 AND $2 AND symbols && $3::text[]"
_NEWS_READ = (
    "SELECT ts_ns, symbols, headline, source, label FROM news "
    "WHERE ts_ns >= $1 AND ts_ns < $2 AND ($3::text[] IS NULL OR symbols && $3::text[]) "
    "ORDER BY ts_ns, source, headline"
)
_COUNTS = {
    "trades": "SELECT count(*) FROM trades",
    "bars": "SELECT count(*) FROM bars",
    "news": "SELECT count(*) FROM news",
}


class MarketDataStore:
    """Trades, bars and news in PostgreSQL.

    Args:
        pool: an asyncpg pool on a migrated database (see :func:`feature_store.database.open_pool`).
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- writes ---------------------------------------------------------------------------

    async def write_trades(self, trades: pd.DataFrame, *, replace: bool = False) -> int:
        """Store trades (columns ``TRADE_COLUMNS``); return the number of rows written.

        Raises:
            StorageError: the write failed; nothing of it was stored.
        """
        frame = _columns(trades, _TRADES.columns, "trades")
        records = to_records(frame, _TRADES.columns)
        delete_args = (sorted(frame["symbol"].unique().tolist()),)
        return await self._copy(
            _TRADES.name,
            _TRADES.columns,
            frame[_TRADES.time],
            records,
            _TRADES.delete_sql if replace else None,
            delete_args,
        )

    async def write_bars(self, bars: pd.DataFrame, *, replace: bool = False) -> int:
        """Store bars (columns ``BAR_COLUMNS``); return the number of rows written.

        Raises:
            StorageError: the write failed; nothing of it was stored.
        """
        frame = _columns(bars, _BARS.columns, "bars")
        records = to_records(frame, _BARS.columns)
        delete_args = (
            sorted(frame["symbol"].unique().tolist()),
            sorted(int(i) for i in frame["interval_s"].unique()),
        )
        return await self._copy(
            _BARS.name, _BARS.columns, frame[_BARS.time], records, _BARS.delete_sql if replace else None, delete_args
        )

    async def write_news(self, news: pd.DataFrame, *, replace: bool = False) -> int:
        """Store headlines (``ts_ns, symbols, headline, source`` and optionally ``label``).

        Raises:
            StorageError: the write failed; nothing of it was stored.
        """
        frame = news.copy()
        if "label" not in frame:
            frame["label"] = None
        frame = _columns(frame, NEWS_COLUMNS_STORED, "news")
        symbols = [list(s) for s in frame["symbols"]]
        labels = [None if pd.isna(v) else int(v) for v in frame["label"]]
        records = list(
            zip(
                frame["ts_ns"].astype(np.int64).tolist(),
                symbols,
                frame["headline"].tolist(),
                frame["source"].tolist(),
                labels,
                strict=True,
            )
        )
        every_symbol = sorted({s for row in symbols for s in row})
        return await self._copy(
            "news", NEWS_COLUMNS_STORED, frame["ts_ns"], records, _NEWS_DELETE if replace else None, (every_symbol,)
        )

    async def _copy(
        self,
        table: str,
        columns: Sequence[str],
        times: pd.Series,
        records: list[tuple[Any, ...]],
        delete_sql: str | None,
        delete_args: tuple[Any, ...],
    ) -> int:
        if not records:
            return 0
        first, last = int(times.min()), int(times.max())
        delete = (delete_sql, delete_args) if delete_sql is not None else None
        return await copy_into(self._pool, table, columns, records, (first, last), delete=delete)

    # --- reads ----------------------------------------------------------------------------

    async def read_trades(self, start_ns: int, end_ns: int, symbols: Sequence[str] | None = None) -> pd.DataFrame:
        """Trades with ``start_ns <= ts_ns < end_ns`` (all symbols when ``symbols`` is None)."""
        return await self._read_csv(_TRADES, start_ns, end_ns, _symbols(symbols))

    async def trade_span(
        self, start_ns: int, end_ns: int, symbols: Sequence[str] | None = None, venue: str | None = None
    ) -> tuple[int, int, list[str]] | None:
        """The first and last stored trade time in ``[start_ns, end_ns]`` and the symbols that
        traded (of ``symbols``, all when None; of ``venue``, every venue when None); None if none.

        Raises:
            StorageError: PostgreSQL failed.
        """
        try:
            async with self._pool.acquire() as conn:
                lo, hi = await conn.fetchrow(_SPAN, start_ns, end_ns, _symbols(symbols), venue)
                if lo is None:
                    return None
                rows = await conn.fetch(_SPAN_SYMBOLS, lo, hi, _symbols(symbols), venue)
        except _DB_ERRORS as exc:
            raise StorageError(f"reading the stored trades' range failed: {exc}") from exc
        return int(lo), int(hi), [r["symbol"] for r in rows]

    async def iter_trades(
        self,
        start_ns: int,
        end_ns: int,
        symbols: Sequence[str] | None = None,
        venue: str | None = None,
        *,
        chunk_ns: int = 3600 * NS_PER_S,
    ) -> AsyncIterator[Trade]:
        """Stored trades with ``start_ns <= ts_ns < end_ns`` in the one order every replay of them
        uses (time, symbol, venue, trade id), read ``chunk_ns`` of time at a time.

        Raises:
            StorageError: PostgreSQL failed.
        """
        lo = start_ns
        while lo < end_ns:
            hi = min(lo + chunk_ns, end_ns)
            try:
                async with self._pool.acquire() as conn:
                    rows = await conn.fetch(_ITER_TRADES, lo, hi, _symbols(symbols), venue)
            except _DB_ERRORS as exc:
                raise StorageError(f"reading stored trades failed: {exc}") from exc
            for r in rows:
                yield Trade(r[0], r[1], r[2], r[3], r[4], r[5], r[6])
            lo = hi

    async def read_bars(
        self,
        start_ns: int,
        end_ns: int,
        symbols: Sequence[str] | None = None,
        *,
        interval_s: int = 60,
    ) -> pd.DataFrame:
        """Bars of ``interval_s`` starting in ``[start_ns, end_ns)``, sorted by symbol and time."""
        return await self._read_csv(_BARS, start_ns, end_ns, _symbols(symbols), interval_s)

    async def read_news(self, start_ns: int, end_ns: int, symbols: Sequence[str] | None = None) -> pd.DataFrame:
        """Headlines published in ``[start_ns, end_ns)`` that mention any of ``symbols``."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_NEWS_READ, start_ns, end_ns, _symbols(symbols))
        return pd.DataFrame(
            {
                "ts_ns": np.array([r["ts_ns"] for r in rows], dtype=np.int64),
                "symbols": [tuple(r["symbols"]) for r in rows],
                "headline": [r["headline"] for r in rows],
                "source": [r["source"] for r in rows],
                "label": pd.array([r["label"] for r in rows], dtype="Int64"),
            }
        )

    async def count(self, table: str) -> int:
        """Number of rows in ``trades``, ``bars`` or ``news``."""
        if table not in _COUNTS:
            raise StorageError(f"unknown table {table!r}; expected one of {sorted(_COUNTS)}")
        async with self._pool.acquire() as conn:
            return int(await conn.fetchval(_COUNTS[table]))

    async def _read_csv(self, table: _Table, *args: Any) -> pd.DataFrame:
        return await read_csv(self._pool, table.read_sql, args, {c: table.types[c] for c in table.columns})


def _symbols(symbols: Sequence[str] | None) -> list[str] | None:
    if symbols is None:
        return None
    if isinstance(symbols, str):
        return [symbols]
    return list(symbols)


def _columns(frame: pd.DataFrame, columns: Sequence[str], table: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame]
    if missing:
        raise StorageError(f"cannot write {table}: missing column(s) {missing}")
    return frame


def to_records(frame: pd.DataFrame, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """Rows of ``frame`` as tuples in ``columns`` order, as COPY takes them."""
    return list(zip(*(frame[c].tolist() for c in columns), strict=True))
