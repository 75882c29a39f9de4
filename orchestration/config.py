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
    RRR_BAR_SECONDS: the pipeline's bar length in seconds (default 60). Stored reads, feature
        sets, labels, training sets, the models' metadata and what the service reads all
        follow it; the synthetic market is simulated at it. Bars of another length in the
        source are an error naming both lengths.
    RRR_CALENDAR: the session calendar of the market: ``24/7`` (default, crypto) or an
        ``exchange_calendars`` name (``XNYS`` for US equities, ``XLON``, ``24/5`` for FX...).
        Bars and features follow its sessions: nights, weekends and holidays are not
        gap-filled, and time of day means time of the session.
    RRR_HORIZON_BARS: the price model's forecast horizon in bars (default 15).
    RRR_FEATURES: the price model's feature set: ``auto`` (default: ``price`` when the bars
        carry trade counts and taker volume, ``price_ohlcv`` when they are OHLCV only),
        ``full`` or ``ohlcv``.
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
from typing import TYPE_CHECKING

from orchestration.errors import ConfigError

if TYPE_CHECKING:
    from feature_store.features.registry import FeatureSet

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
    bar_seconds: int = 60
    calendar: str = "24/7"
    horizon_bars: int = 15
    features: str = "auto"

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

    def feature_set(self, name: str) -> FeatureSet:
        """The feature set ``name`` for this pipeline's bar length and session calendar."""
        from feature_store.features.catalog import resolve

        return resolve(name, self.bar_seconds, self.calendar)

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
            bar_seconds = int(env.get("RRR_BAR_SECONDS", "60"))
            horizon = int(env.get("RRR_HORIZON_BARS", "15"))
        except ValueError as exc:
            raise ConfigError(
                f"RRR_SYNTHETIC_*, RRR_IC_DECAY, RRR_PSI_THRESHOLD, RRR_BAR_SECONDS and RRR_HORIZON_BARS "
                f"must be numbers: {exc}"
            ) from exc
        if bar_seconds < 1 or 86_400 % bar_seconds != 0:
            raise ConfigError(f"RRR_BAR_SECONDS must divide a day (1, 60, 300, 3600, 86400...), got {bar_seconds}")
        if horizon < 1:
            raise ConfigError(f"RRR_HORIZON_BARS must be >= 1, got {horizon}")
        features = env.get("RRR_FEATURES", "auto")
        if features not in ("auto", "full", "ohlcv"):
            raise ConfigError(f"RRR_FEATURES must be auto, full or ohlcv, got {features!r}")
        calendar = env.get("RRR_CALENDAR", "24/7")
        if calendar != "24/7":
            from feature_store.errors import DataValidationError
            from feature_store.features.calendars import session_calendar

            try:
                session_calendar(calendar, bar_seconds)
            except DataValidationError as exc:
                raise ConfigError(f"RRR_CALENDAR: {exc}") from None
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
            bar_seconds=bar_seconds,
            calendar=calendar,
            horizon_bars=horizon,
            features=features,
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
