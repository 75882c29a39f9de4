"""Connections to PostgreSQL: a pool whose first use brings the schema up to date, and the
bulk write (COPY in one transaction) and bulk read (COPY out as CSV into pyarrow) that the
stores share.

Reads stream ``COPY ... TO STDOUT`` as CSV into pyarrow, which is several times faster
than fetching rows one by one for large ranges; PostgreSQL prints floats with the shortest
exact representation (and NaN as ``NaN``), so values come back bit for bit.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from feature_store.errors import StorageError
from feature_store.schema import migrate

__all__ = ["copy_into", "ensure_partitions", "open_pool", "read_csv", "with_database"]


def with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` on the same server (same user, password, host, port)."""
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


async def open_pool(url: str, *, min_size: int = 1, max_size: int = 4, run_migrations: bool = True) -> asyncpg.Pool:
    """Open an asyncpg pool on ``url``, applying pending migrations first.

    Raises:
        StorageError: the server cannot be reached.
        MigrationError: the schema could not be brought up to date.
    """
    try:
        if run_migrations:
            conn = await asyncpg.connect(url, timeout=30)
            try:
                await migrate(conn)
            finally:
                await conn.close()
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, timeout=30)
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InvalidPasswordError) as exc:
        raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
    return pool


async def ensure_partitions(conn: asyncpg.Connection, table: str, from_ns: int, to_ns: int) -> int:
    """Create the daily partitions of ``table`` covering ``[from_ns, to_ns]``; return how many.

    Runs in its own short transaction so that concurrent writers are not held up.
    """
    async with conn.transaction():
        created = await conn.fetchval("SELECT rrr_ensure_daily_partitions($1::regclass, $2, $3)", table, from_ns, to_ns)
    return int(created)


async def copy_into(
    pool: asyncpg.Pool,
    table: str,
    columns: Sequence[str],
    records: list[tuple[Any, ...]],
    time_range: tuple[int, int],
    *,
    delete: tuple[str, tuple[Any, ...]] | None = None,
) -> int:
    """COPY ``records`` into ``table`` in one transaction; return how many rows.

    Args:
        time_range: first and last timestamp of the rows (their partitions are created).
        delete: a DELETE statement run first in the same transaction, with its arguments
            after ``first, last`` (``$1, $2``).

    Raises:
        StorageError: the write failed (a constraint, the connection); nothing was stored.
    """
    if not records:
        return 0
    first, last = time_range
    try:
        async with pool.acquire() as conn:
            await ensure_partitions(conn, table, first, last)
            async with conn.transaction():
                if delete is not None:
                    await conn.execute(delete[0], first, last, *delete[1])
                await conn.copy_records_to_table(table, records=records, columns=list(columns))
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise StorageError(f"writing {len(records)} rows to {table} failed and nothing was stored: {exc}") from exc
    return len(records)


async def read_csv(pool: asyncpg.Pool, query: str, args: Sequence[Any], types: dict[str, pa.DataType]) -> pd.DataFrame:
    """Run ``query`` (with ``$n`` parameters) through COPY and return its rows as a DataFrame.

    ``types`` names the result columns in order, with their arrow types.
    """
    buffer = io.BytesIO()
    try:
        async with pool.acquire() as conn:
            await conn.copy_from_query(query, *args, output=buffer, format="csv")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise StorageError(f"reading from PostgreSQL failed: {exc}") from exc
    if buffer.tell() == 0:
        return pd.DataFrame({c: pd.Series(dtype=_pandas_dtype(t)) for c, t in types.items()})
    buffer.seek(0)
    arrow = pacsv.read_csv(
        buffer,
        read_options=pacsv.ReadOptions(column_names=list(types)),
        convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
    )
    return arrow.to_pandas()


def _pandas_dtype(kind: pa.DataType) -> str:
    return "int64" if kind == pa.int64() else "str" if kind == pa.string() else "float64"
