"""The embedded servers: started once, shared across processes, stopped without leftovers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from feature_store.config import FeatureStoreSettings
from feature_store.services import ServiceUrls, embedded_status, resolve_service_urls, stop_embedded


def _services(home: Path, command: str, extra_env: dict[str, str] | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(RRR_HOME=str(home), **(extra_env or {}))
    done = subprocess.run(
        [sys.executable, "-m", "feature_store.services", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def private_home(tmp_path: Path):
    home = tmp_path / "rrr"
    yield home
    stop_embedded(home)  # whatever a failed test left running


def test_servers_start_are_reused_by_a_second_process_and_stop(private_home: Path) -> None:
    _services(private_home, "start")
    first = json.loads((private_home / "services.json").read_text())
    _services(private_home, "start")
    second = json.loads((private_home / "services.json").read_text())
    assert first["postgres"]["pid"] == second["postgres"]["pid"]
    assert first["redis"]["pid"] == second["redis"]["pid"]
    urls = json.loads(_services(private_home, "urls"))
    assert urls["DATABASE_URL"].startswith("postgresql://postgres:")
    assert "@127.0.0.1:" in urls["DATABASE_URL"] and "@127.0.0.1:" in urls["REDIS_URL"]
    ports = [first["postgres"]["port"], first["redis"]["port"]]
    assert all(_port_open(p) for p in ports)
    assert (private_home / "services.json").stat().st_mode & 0o077 == 0  # holds passwords
    status = _services(private_home, "status")
    assert re.search(r"postgres: running pid \d+ port \d+, [0-9.]+ GiB in \S+postgres", status), status

    async def wal() -> str:
        import asyncpg

        conn = await asyncpg.connect(urls["DATABASE_URL"])
        try:
            return str(await conn.fetchval("SHOW max_wal_size"))
        finally:
            await conn.close()

    assert asyncio.run(wal()) == "1GB"  # the WAL does not grow to gigabytes

    out = _services(private_home, "stop")
    assert "postgres" in out and "redis" in out
    pids = [first["postgres"]["pid"], first["redis"]["pid"]]
    assert not any(psutil.pid_exists(p) for p in pids)
    assert not any(_port_open(p) for p in ports)
    leftovers = [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if any(str(private_home) in part for part in (p.info["cmdline"] or []))
    ]
    assert leftovers == []


def test_two_processes_starting_at_once_share_one_server(private_home: Path) -> None:
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: _services(private_home, "start"), range(2)))
    status = embedded_status(private_home)
    postmasters = [
        p
        for p in psutil.process_iter(["pid", "ppid", "cmdline"])
        if (p.info["cmdline"] or [""])[0].endswith("/postgres")
        and str(private_home) in " ".join(p.info["cmdline"] or [])
    ]
    assert status["postgres"]["running"] and status["redis"]["running"]
    assert [p.info["pid"] for p in postmasters] == [status["postgres"]["pid"]]


def test_database_and_redis_urls_from_the_environment_start_nothing(tmp_path: Path, service_urls: ServiceUrls) -> None:
    home = tmp_path / "unused"
    settings = FeatureStoreSettings.from_env(
        {"RRR_HOME": str(home), "DATABASE_URL": service_urls.database_url, "REDIS_URL": service_urls.redis_url}
    )
    urls = resolve_service_urls(settings)
    assert urls == ServiceUrls(service_urls.database_url, service_urls.redis_url, ())
    assert not home.exists()


def test_only_the_missing_service_is_embedded(private_home: Path, service_urls: ServiceUrls) -> None:
    settings = FeatureStoreSettings.from_env({"RRR_HOME": str(private_home), "DATABASE_URL": service_urls.database_url})
    urls = resolve_service_urls(settings)
    assert urls.embedded == ("redis",)
    assert urls.database_url == service_urls.database_url
    status = embedded_status(private_home)
    assert status["redis"]["running"] and not status["postgres"]["running"]


def test_urls_without_running_servers_is_a_clear_error(tmp_path: Path) -> None:
    from feature_store.errors import ServiceError

    settings = FeatureStoreSettings.from_env({"RRR_HOME": str(tmp_path / "none")})
    with pytest.raises(ServiceError, match="not running"):
        resolve_service_urls(settings, start=False)


def test_malformed_urls_are_rejected_by_name() -> None:
    from feature_store.errors import ConfigError

    with pytest.raises(ConfigError, match="DATABASE_URL"):
        FeatureStoreSettings.from_env({"DATABASE_URL": "mysql://x"})
    with pytest.raises(ConfigError, match="REDIS_URL"):
        FeatureStoreSettings.from_env({"REDIS_URL": "http://x"})


def test_embedded_redis_is_a_real_server_with_a_password(service_urls: ServiceUrls) -> None:
    import redis

    client = redis.Redis.from_url(service_urls.redis_url)
    try:
        client.set("rrr:test:services", b"\x00\x01", ex=10)
        assert client.get("rrr:test:services") == b"\x00\x01"
    finally:
        client.close()
    if service_urls.embedded:
        anonymous = redis.Redis.from_url(
            service_urls.redis_url.replace(service_urls.redis_url.split("@")[0] + "@", "redis://")
        )
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("rrr:test:services")
        anonymous.close()


def test_tests_and_benchmarks_empty_only_the_embedded_servers_databases_unless_told(
    service_urls: ServiceUrls, scratch_redis
) -> None:
    import redis

    from feature_store.services import SCRATCH_OPT_IN, ScratchRefused, scratch_redis_db

    url = scratch_redis(15)
    client = redis.Redis.from_url(url)
    try:
        client.set("users-own-key", b"1")
        theirs = ServiceUrls(service_urls.database_url, service_urls.redis_url, embedded=())  # as with REDIS_URL
        with pytest.raises(ScratchRefused, match=f"database 15 of REDIS_URL holds 1 keys.*{SCRATCH_OPT_IN}=1"):
            scratch_redis_db(theirs, 15, environ={})
        assert client.get("users-own-key") == b"1"  # left as it was
        assert scratch_redis_db(theirs, 15, environ={SCRATCH_OPT_IN: "1"}) == url
        assert client.dbsize() == 0
        assert scratch_redis_db(theirs, 15, environ={}) == url  # an empty database is used as it is
    finally:
        client.flushdb()
        client.close()
