"""Versioned schema migrations: ordered SQL files with a version table.

Migrations are the files ``feature_store/migrations/NNNN_name.sql``, applied in order, each
in its own transaction together with its row in ``schema_migrations`` (version, name,
sha256 of the file). Plain SQL rather than Alembic: the schema leans on PostgreSQL features
(declarative partitioning, PL/pgSQL, GIN indexes) that Alembic would only pass through as
raw SQL anyway, and the platform talks to PostgreSQL through asyncpg, not SQLAlchemy.

``migrate`` is idempotent and safe when several processes start at once: it holds a
session-level advisory lock while it reads and applies, so the second process waits and
then finds nothing left to do. A migration file edited after it was applied is reported
(checksum mismatch) instead of being silently skipped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from feature_store.errors import MigrationError

if TYPE_CHECKING:
    import asyncpg

__all__ = ["Migration", "applied_versions", "load_migrations", "migrate"]

# Arbitrary but fixed: every process of the platform agrees on it.
MIGRATION_LOCK_KEY = 0x52525241_4C474F01
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """sha256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The packaged migrations, in version order.

    Raises:
        MigrationError: a file is misnamed or two files share a version.
    """
    found: dict[int, Migration] = {}
    for entry in resources.files("feature_store.migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations share version {version}")
        found[version] = Migration(version, match.group(2), entry.read_text())
    return [found[v] for v in sorted(found)]


async def applied_versions(conn: asyncpg.Connection) -> list[int]:
    """Versions recorded in ``schema_migrations`` (empty before the first migration)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return []
    rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    return [int(r["version"]) for r in rows]


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Bring the database up to date; return the versions applied by this call.

    Cancelling it rolls back the migration in progress; those already committed stay.

    Raises:
        MigrationError: a migration failed (it was rolled back) or an applied one was edited.
    """
    migrations = load_migrations()
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version     integer     PRIMARY KEY,
                name        text        NOT NULL,
                checksum    text        NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        recorded = {int(r["version"]): str(r["checksum"]) for r in rows}
        known = {m.version for m in migrations}
        unknown = sorted(set(recorded) - known)
        if unknown:
            raise MigrationError(
                f"database has migrations {unknown} that this code does not know; "
                "upgrade the code before connecting it to this database"
            )
        applied: list[int] = []
        for migration in migrations:
            if migration.version in recorded:
                if recorded[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name}.sql was edited "
                        "after it was applied; add a new migration instead"
                    )
                continue
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
            except Exception as exc:  # asyncpg raises many types; all mean the same here
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name}.sql failed and was rolled back: {exc}"
                ) from exc
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
