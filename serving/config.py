"""Settings of the model service, read from the environment.

Variables:
    RRR_HOME: the platform's data folder (default ``./.rrr``); the model store is inside it.
    BENTOML_HOME: the BentoML model store (default ``$RRR_HOME/bentoml``).
    RRR_SERVING_HOST / RRR_SERVING_PORT: where the service listens (127.0.0.1:3000).
    RRR_SERVING_API_KEY: when set, requests must carry it (for a service exposed beyond loopback).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from serving.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ServingSettings:
    """Typed settings of the model service."""

    bentoml_home: Path
    host: str
    port: int
    api_key: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingSettings:
        """Read the settings from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        home = Path(env.get("RRR_HOME", ".rrr")).expanduser().resolve()
        raw_port = env.get("RRR_SERVING_PORT", "3000")
        try:
            port = int(raw_port)
        except ValueError as exc:
            raise ConfigError(f"RRR_SERVING_PORT must be an integer, got {raw_port!r}") from exc
        if not 0 < port < 65536:
            raise ConfigError(f"RRR_SERVING_PORT must be 1-65535, got {port}")
        return cls(
            bentoml_home=Path(env.get("BENTOML_HOME", str(home / "bentoml"))),
            host=env.get("RRR_SERVING_HOST", "127.0.0.1"),
            port=port,
            api_key=env.get("RRR_SERVING_API_KEY") or None,
        )
