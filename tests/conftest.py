"""Session fixtures: real PostgreSQL and Redis, never fakes, for anything that stores.

With DATABASE_URL / REDIS_URL set those servers are used; otherwise the embedded servers
under RRR_HOME are started (or reused) and, if this session started them, stopped at the
end. Each session works in a database of its own, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from feature_store.config import FeatureStoreSettings
from feature_store.database import with_database
from feature_store.services import (
    ScratchRefused,
    ServiceUrls,
    embedded_status,
    resolve_service_urls,
    scratch_redis_db,
    stop_embedded,
)

RECORDINGS = Path(
    os.environ.get(
        "RRR_RECORDINGS_DIR",
        str(Path(__file__).resolve().parents[2] / "shared" / "data" / "exchange_recordings"),
    )
)


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(with_database(url, "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(url: str) -> str:
    """Create an empty database next to ``url``'s; return its URL."""
    name = "rrr_test_" + secrets.token_hex(6)
    asyncio.run(_admin(url, "CREATE DATABASE " + name))
    return with_database(url, name)


def drop_database(url: str) -> None:
    """Drop the database ``url`` points at (created by :func:`create_database`)."""
    name = urlsplit(url).path.lstrip("/")
    assert name.startswith("rrr_test_")
    asyncio.run(_admin(url, "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"))


@pytest.fixture(scope="session")
def service_urls() -> Iterator[ServiceUrls]:
    settings = FeatureStoreSettings.from_env()
    status = embedded_status(settings.home)
    already = {name for name in ("postgres", "redis") if status.get(name, {}).get("running")}
    urls = resolve_service_urls(settings)
    yield urls
    if set(urls.embedded) - already:
        stop_embedded(settings.home)


@pytest.fixture(scope="session")
def scratch_redis(service_urls: ServiceUrls) -> Callable[[int], str]:
    """``scratch_redis(db)``: the URL of Redis database ``db``, emptied for the tests that use it.

    Only the embedded server is emptied without asking; on a server of yours (``REDIS_URL``) the
    database must be empty or ``RRR_SCRATCH_REDIS_OK=1`` set, else those tests are skipped.
    """

    def claim(db: int) -> str:
        try:
            return scratch_redis_db(service_urls, db)
        except ScratchRefused as exc:
            pytest.skip(str(exc))

    return claim


@pytest.fixture(scope="session")
def database_url(service_urls: ServiceUrls) -> Iterator[str]:
    """A fresh database for this test session."""
    url = create_database(service_urls.database_url)
    yield url
    drop_database(url)


@pytest.fixture
def fresh_database_url(service_urls: ServiceUrls) -> Iterator[str]:
    """A fresh, empty database for one test."""
    url = create_database(service_urls.database_url)
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def recordings_dir() -> Path:
    if not RECORDINGS.is_dir():
        pytest.skip(f"exchange recordings not found at {RECORDINGS} (set RRR_RECORDINGS_DIR)")
    return RECORDINGS


@pytest.fixture(scope="session")
def recordings_dir_or_none() -> Path | None:
    """The exchange recordings where present (tests that also run without them)."""
    return RECORDINGS if RECORDINGS.is_dir() else None
