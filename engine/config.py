"""Settings of the trading engine, read from the environment.

Variables:
    RRR_ENGINE_MODE: ``paper`` (default) or ``live``.
    RRR_ENGINE_BAR_SECONDS: bar interval in seconds (default 60).
    RRR_SERVING_URL: the model service (default ``http://127.0.0.1:3000``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from engine.errors import ConfigError

Mode = Literal["paper", "live"]


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Typed settings of the trading engine."""

    mode: Mode
    bar_seconds: int
    serving_url: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EngineSettings:
        """Read the settings from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        mode = env.get("RRR_ENGINE_MODE", "paper")
        if mode not in ("paper", "live"):
            raise ConfigError(f"RRR_ENGINE_MODE must be 'paper' or 'live', got {mode!r}")
        raw = env.get("RRR_ENGINE_BAR_SECONDS", "60")
        try:
            bar_seconds = int(raw)
        except ValueError as exc:
            raise ConfigError(f"RRR_ENGINE_BAR_SECONDS must be an integer, got {raw!r}") from exc
        if bar_seconds <= 0:
            raise ConfigError(f"RRR_ENGINE_BAR_SECONDS must be > 0, got {bar_seconds}")
        return cls(
            mode="live" if mode == "live" else "paper",
            bar_seconds=bar_seconds,
            serving_url=env.get("RRR_SERVING_URL", "http://127.0.0.1:3000"),
        )
