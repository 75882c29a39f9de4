"""Settings of the pipelines, read from the environment.

Variables:
    RRR_HOME: the platform's data folder (default ``./.rrr``).
    DAGSTER_HOME: Dagster's instance folder (default ``$RRR_HOME/dagster``).
    RRR_SYNTHETIC_SYMBOLS / RRR_SYNTHETIC_DAYS / RRR_SYNTHETIC_SEED: the synthetic market.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestration.errors import ConfigError


@dataclass(frozen=True, slots=True)
class OrchestrationSettings:
    """Typed settings of the pipelines."""

    dagster_home: Path
    synthetic_symbols: int
    synthetic_days: float
    synthetic_seed: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OrchestrationSettings:
        """Read the settings from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        home = Path(env.get("RRR_HOME", ".rrr")).expanduser().resolve()
        try:
            symbols = int(env.get("RRR_SYNTHETIC_SYMBOLS", "20"))
            days = float(env.get("RRR_SYNTHETIC_DAYS", "30"))
            seed = int(env.get("RRR_SYNTHETIC_SEED", "7"))
        except ValueError as exc:
            raise ConfigError(f"RRR_SYNTHETIC_* settings must be numbers: {exc}") from exc
        if symbols < 1 or days <= 0:
            raise ConfigError(f"need >= 1 symbol and > 0 days, got {symbols} and {days}")
        return cls(
            dagster_home=Path(env.get("DAGSTER_HOME", str(home / "dagster"))),
            synthetic_symbols=symbols,
            synthetic_days=days,
            synthetic_seed=seed,
        )
