"""Connections to PostgreSQL: a pool whose first use brings the schema up to date."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg

from feature_store.errors import StorageError
from feature_store.schema import migrate

__all__ = ["ensure_partitions", "open_pool", "with_database"]


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
