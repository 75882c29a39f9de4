"""Settings of the model service, read from the environment.

Variables:
    RRR_HOME: the platform's data folder (default ``./.rrr``); the model store is inside it.
    BENTOML_HOME: the BentoML model store (default ``$RRR_HOME/bentoml``).
    RRR_SERVING_HOST / RRR_SERVING_PORT: where the service listens (127.0.0.1:3000).
    RRR_SERVING_API_KEY: when set, requests must carry it (for a service exposed beyond loopback).
    RRR_SERVING_URL: where clients find the service (default ``http://HOST:PORT``).
    RRR_SERVING_WORKERS: service worker processes (1).
    RRR_SERVING_THREADS: torch threads per worker (1).
    RRR_SERVING_POLL_S: seconds between checks of the model store for promotions (2).
    RRR_SERVING_MAX_SYMBOLS: most symbols (or windows) in one price or risk request (5000).
    RRR_SERVING_MAX_TEXT_CHARS: longest headline accepted (1000).
    RRR_SERVING_MAX_TEXTS: most headlines in one sentiment request (512).
    RRR_SERVING_BATCH_LATENCY_MS: the latency budget of the batched APIs (``/sentiment``,
        ``/forecast_windows``) in milliseconds (10000). BentoML's batcher answers 503 to a
        request it expects to miss this budget, and until it has timed a dozen calls it runs
        them one at a time, so a small budget sheds a burst that arrives at a fresh service.
    RRR_SERVING_ACCESS_LOG: log every request (``true``/``false``, default ``false``: a log line
        per request costs more than a batch of forecasts at the engine's rate).
    RRR_SERVING_TRACING: open an OpenTelemetry span per request (``true``/``false``, default
        ``false``). Turn it on together with a BentoML tracing exporter; without an exporter
        the spans go nowhere and cost about a sixth of the service's time per small request.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from serving.errors import ConfigError

T = TypeVar("T", int, float)


@dataclass(frozen=True, slots=True)
class ServingSettings:
    """Typed settings of the model service."""

    bentoml_home: Path
    host: str
    port: int
    api_key: str | None
    url: str = "http://127.0.0.1:3000"
    workers: int = 1
    threads: int = 1
    poll_s: float = 2.0
    max_symbols: int = 5000
    max_text_chars: int = 1000
    max_texts: int = 512
    batch_latency_ms: int = 10_000
    access_log: bool = False
    tracing: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingSettings:
        """Read the settings from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        if "RRR_HOME" not in env and _inside_bento(Path.cwd()):
            raise ConfigError(
                "RRR_HOME is not set, and a Bento's service runs inside the Bento, where the default ./.rrr holds "
                "no models: serve it with RRR_HOME (and BENTOML_HOME) pointing at the platform's data folder, "
                "e.g. RRR_HOME=$PWD/.rrr BENTOML_HOME=$PWD/.rrr/bentoml bentoml serve rrr_models:latest"
            )
        home = Path(env.get("RRR_HOME", ".rrr")).expanduser().resolve()
        raw_port = env.get("RRR_SERVING_PORT", "3000")
        try:
            port = int(raw_port)
        except ValueError as exc:
            raise ConfigError(f"RRR_SERVING_PORT must be an integer, got {raw_port!r}") from exc
        if not 0 < port < 65536:
            raise ConfigError(f"RRR_SERVING_PORT must be 1-65535, got {port}")
        host = env.get("RRR_SERVING_HOST", "127.0.0.1")
        return cls(
            bentoml_home=Path(env.get("BENTOML_HOME", str(home / "bentoml"))),
            host=host,
            port=port,
            api_key=env.get("RRR_SERVING_API_KEY") or None,
            url=service_url(env),
            workers=_number(env, "RRR_SERVING_WORKERS", 1, int, 1),
            threads=_number(env, "RRR_SERVING_THREADS", 1, int, 1),
            poll_s=_number(env, "RRR_SERVING_POLL_S", 2.0, float, 0.05),
            max_symbols=_number(env, "RRR_SERVING_MAX_SYMBOLS", 5000, int, 1),
            max_text_chars=_number(env, "RRR_SERVING_MAX_TEXT_CHARS", 1000, int, 1),
            max_texts=_number(env, "RRR_SERVING_MAX_TEXTS", 512, int, 1),
            batch_latency_ms=_number(env, "RRR_SERVING_BATCH_LATENCY_MS", 10_000, int, 10),
            access_log=_flag(env, "RRR_SERVING_ACCESS_LOG"),
            tracing=_flag(env, "RRR_SERVING_TRACING"),
        )


def service_url(environ: Mapping[str, str] | None = None) -> str:
    """Where clients find the service: ``RRR_SERVING_URL``, else ``RRR_SERVING_HOST`` and
    ``RRR_SERVING_PORT`` (default ``http://127.0.0.1:3000``), the address it listens on."""
    env = os.environ if environ is None else environ
    if env.get("RRR_SERVING_URL"):
        return env["RRR_SERVING_URL"].rstrip("/")
    return f"http://{env.get('RRR_SERVING_HOST', '127.0.0.1')}:{env.get('RRR_SERVING_PORT', '3000')}"


def _inside_bento(cwd: Path) -> bool:
    """Whether ``cwd`` is a built Bento's project folder (BentoML serves a Bento from there)."""
    return cwd.name == "src" and (cwd.parent / "bento.yaml").is_file()


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "false").strip().lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return raw in ("true", "1", "yes")


def _number(env: Mapping[str, str], name: str, default: T, kind: Callable[[str], T], least: float) -> T:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if not value >= least:
        raise ConfigError(f"{name} must be >= {least}, got {raw!r}")
    return value
