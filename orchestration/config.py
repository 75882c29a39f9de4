"""Settings of the pipelines, read from the environment.

Variables:
    RRR_HOME: the platform's data folder (default ``./.rrr``). Under it: ``lake/`` (raw
        partitions as delivered by the source, training sets, scored news), ``gx/`` (Great
        Expectations Data Docs), ``reports/`` (model validation reports) and ``alerts/``.
    DAGSTER_HOME: Dagster's instance folder (default ``$RRR_HOME/dagster``).
    RRR_SOURCE: where raw market data comes from: ``synthetic`` (default), ``files`` (daily
        files ``<RRR_SOURCE_DIR>/{trades,bars,news}/YYYY-MM-DD.{parquet,csv}``) or ``recorded``
        (what the engine recorded into PostgreSQL).
    RRR_SOURCE_DIR: the folder of the ``files`` source.
    RRR_SYNTHETIC_SYMBOLS / RRR_SYNTHETIC_DAYS / RRR_SYNTHETIC_SEED: the synthetic market.
    RRR_PARTITIONS_START / RRR_PARTITIONS_END: first and (exclusive) last day of the daily
        partitions, ``YYYY-MM-DD``; for the synthetic source they default to its days, for the
        others the end is open.
    RRR_TRAIN: ``full`` (default) or ``small`` model settings (small is what the tests use).
    RRR_IC_DECAY: retrain when the live IC of the last decisions falls below this share of the
        production model's validation IC (default 0.5).
    RRR_PSI_THRESHOLD: retrain when a price feature's population stability index between the
        training window and the last day passes this (default 0.25).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from orchestration.errors import ConfigError

SOURCES = ("synthetic", "files", "recorded")
_DEFAULT_SYNTHETIC_START = date(2026, 1, 5)  # SyntheticMarketConfig's default start


@dataclass(frozen=True, slots=True)
class OrchestrationSettings:
    """Typed settings of the pipelines."""

    home: Path
    dagster_home: Path
    source: str
    source_dir: Path | None
    synthetic_symbols: int
    synthetic_days: float
    synthetic_seed: int
    partitions_start: date
    partitions_end: date | None
    train: str
    ic_decay: float
    psi_threshold: float

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def gx_root(self) -> Path:
        return self.home / "gx"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def alerts(self) -> Path:
        return self.home / "alerts"

    def partition_days(self) -> list[str]:
        """The daily partition keys with a known end (every day of the synthetic market)."""
        if self.partitions_end is None:
            raise ConfigError("the partitions have no end: set RRR_PARTITIONS_END")
        days = (self.partitions_end - self.partitions_start).days
        return [(self.partitions_start + timedelta(days=i)).isoformat() for i in range(days)]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OrchestrationSettings:
        """Read the settings from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        home = Path(env.get("RRR_HOME", ".rrr")).expanduser().resolve()
        try:
            symbols = int(env.get("RRR_SYNTHETIC_SYMBOLS", "20"))
            days = float(env.get("RRR_SYNTHETIC_DAYS", "30"))
            seed = int(env.get("RRR_SYNTHETIC_SEED", "7"))
            ic_decay = float(env.get("RRR_IC_DECAY", "0.5"))
            psi = float(env.get("RRR_PSI_THRESHOLD", "0.25"))
        except ValueError as exc:
            raise ConfigError(f"RRR_SYNTHETIC_*, RRR_IC_DECAY and RRR_PSI_THRESHOLD must be numbers: {exc}") from exc
        if symbols < 1 or days <= 0:
            raise ConfigError(f"need >= 1 symbol and > 0 days, got {symbols} and {days}")
        source = env.get("RRR_SOURCE", "synthetic")
        if source not in SOURCES:
            raise ConfigError(f"RRR_SOURCE must be one of {', '.join(SOURCES)}, got {source!r}")
        source_dir = Path(env["RRR_SOURCE_DIR"]).expanduser().resolve() if env.get("RRR_SOURCE_DIR") else None
        if source == "files" and source_dir is None:
            raise ConfigError("RRR_SOURCE=files needs RRR_SOURCE_DIR (the folder of the daily files)")
        train = env.get("RRR_TRAIN", "full")
        if train not in ("full", "small"):
            raise ConfigError(f"RRR_TRAIN must be full or small, got {train!r}")
        start = _day(env, "RRR_PARTITIONS_START") or _DEFAULT_SYNTHETIC_START
        end = _day(env, "RRR_PARTITIONS_END")
        if end is None and source == "synthetic":
            end = start + timedelta(days=math.ceil(days))
        if end is not None and end <= start:
            raise ConfigError(f"RRR_PARTITIONS_END {end} must be after RRR_PARTITIONS_START {start}")
        return cls(
            home=home,
            dagster_home=Path(env.get("DAGSTER_HOME", str(home / "dagster"))),
            source=source,
            source_dir=source_dir,
            synthetic_symbols=symbols,
            synthetic_days=days,
            synthetic_seed=seed,
            partitions_start=start,
            partitions_end=end,
            train=train,
            ic_decay=ic_decay,
            psi_threshold=psi,
        )

    def synthetic_start_ns(self) -> int:
        """Epoch nanoseconds of the synthetic market's first bar (the first partition's midnight)."""
        return int(datetime.combine(self.partitions_start, datetime.min.time(), UTC).timestamp()) * 10**9


def _day(env: Mapping[str, str], name: str) -> date | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a date YYYY-MM-DD, got {raw!r}") from exc


def day_bounds_ns(day: str) -> tuple[int, int]:
    """``[start, end)`` epoch nanoseconds of the UTC day ``YYYY-MM-DD``."""
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)
    return int(start.timestamp()) * 10**9, int((start + timedelta(days=1)).timestamp()) * 10**9
