"""A throwaway database on the platform's PostgreSQL server for one benchmark run."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from feature_store.database import with_database
from feature_store.services import resolve_service_urls


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """Create an empty database next to the configured one, yield its URL, drop it after."""
    server_url = resolve_service_urls().database_url
    name = "rrr_bench_" + secrets.token_hex(4)
    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        # The name is generated here from hex digits: never input.
        await admin.execute("CREATE DATABASE " + name)
        try:
            yield with_database(server_url, name)
        finally:
            await admin.execute("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
    finally:
        await admin.close()
