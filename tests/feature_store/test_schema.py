"""Migrations: automatic, idempotent, safe when processes start at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg
import pytest

from feature_store.errors import MigrationError
from feature_store.schema import applied_versions, load_migrations, migrate

EXPECTED_TABLES = {
    "trades",
    "bars",
    "news",
    "features",
    "labels",
    "feature_sets",
    "orders",
    "fills",
    "positions",
    "decisions",
    "schema_migrations",
}


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        )
        return {r["relname"] for r in rows}
    finally:
        await conn.close()


def test_migrations_are_numbered_and_all_apply(fresh_database_url: str) -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(versions) and versions[0] == 1

    async def run() -> tuple[list[int], list[int], list[int]]:
        conn = await asyncpg.connect(fresh_database_url)
        try:
            first = await migrate(conn)
            second = await migrate(conn)
            return first, second, await applied_versions(conn)
        finally:
            await conn.close()

    first, second, recorded = asyncio.run(run())
    assert first == versions
    assert second == []
    assert recorded == versions
    assert asyncio.run(_tables(fresh_database_url)) >= EXPECTED_TABLES


def test_concurrent_migrations_apply_each_version_once(fresh_database_url: str) -> None:
    async def run() -> list[list[int]]:
        conns = [await asyncpg.connect(fresh_database_url) for _ in range(4)]
        try:
            return list(await asyncio.gather(*(migrate(c) for c in conns)))
        finally:
            for c in conns:
                await c.close()

    results = asyncio.run(run())
    applied = sorted(v for r in results for v in r)
    assert applied == [m.version for m in load_migrations()]


def test_two_processes_migrating_at_once_both_succeed(fresh_database_url: str) -> None:
    code = (
        "import asyncio, asyncpg, sys\n"
        "from feature_store.schema import migrate\n"
        "async def main():\n"
        "    c = await asyncpg.connect(sys.argv[1])\n"
        "    print(len(await migrate(c)))\n"
        "    await c.close()\n"
        "asyncio.run(main())\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, fresh_database_url], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(int(o) for o in outputs) == [0, len(load_migrations())]


def test_an_edited_migration_is_reported(fresh_database_url: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(fresh_database_url)
        try:
            await migrate(conn)
            await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
            with pytest.raises(MigrationError, match="edited"):
                await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(run())


def test_partitions_are_created_per_day_on_demand(fresh_database_url: str) -> None:
    day = 86_400 * 10**9
    start = 20_000 * day

    async def run() -> tuple[int, int, list[str]]:
        conn = await asyncpg.connect(fresh_database_url)
        try:
            await migrate(conn)
            made = await conn.fetchval("SELECT rrr_ensure_daily_partitions('bars', $1, $2)", start, start + 2 * day)
            again = await conn.fetchval("SELECT rrr_ensure_daily_partitions('bars', $1, $2)", start, start + 2 * day)
            names = await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'bars'::regclass ORDER BY 1"
            )
            with pytest.raises(asyncpg.RaiseError, match="refusing"):
                await conn.fetchval("SELECT rrr_ensure_daily_partitions('bars', 0, $1)", start)
            return made, again, [r["relname"] for r in names]
        finally:
            await conn.close()

    made, again, names = asyncio.run(run())
    assert (made, again) == (3, 0)
    assert names == ["bars_p20241004", "bars_p20241005", "bars_p20241006"]
