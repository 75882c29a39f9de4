"""What the assets share: the daily partitions, settings and quality-report metadata."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from orchestration.config import OrchestrationSettings


def settings() -> OrchestrationSettings:
    """The pipelines' settings, read from the environment on each call.

    For the ``files`` and ``recorded`` sources without ``RRR_PARTITIONS_START``, the partitions
    start on the first day the source holds; they end on the day after its last when that is
    later than today (an engine that recorded a replay's market clock), and are open otherwise.
    """
    s = OrchestrationSettings.from_env()
    if s.source == "synthetic" or os.environ.get("RRR_PARTITIONS_START"):
        return s
    held = held_days(s.source, str(s.source_dir), os.environ.get("DATABASE_URL", ""))
    if not held:
        return s
    first, last = date.fromisoformat(held[0]), date.fromisoformat(held[-1])
    end = s.partitions_end
    if end is None and last >= datetime.now(UTC).date():
        end = last + timedelta(days=1)
    return replace(s, partitions_start=first, partitions_end=end)


@functools.lru_cache(maxsize=4)
def held_days(source: str, source_dir: str, database_url: str) -> tuple[str, ...]:
    """The days (``YYYY-MM-DD``) the source holds, looked up once per process."""
    from orchestration.resources import PostgresResource
    from orchestration.sources import available

    s = replace(OrchestrationSettings.from_env(), partitions_end=None)
    return tuple(sorted(available(s, PostgresResource(url=database_url or None).run)))


def source_span() -> tuple[str, str] | None:
    """First and last day of the partitions the whole loop covers: every partition when they end,
    else the days the source holds (None when neither is known)."""
    s = settings()
    if s.partitions_end is not None:
        days = s.partition_days()
        return days[0], days[-1]
    if s.source == "synthetic":
        return None
    held = [
        d
        for d in held_days(s.source, str(s.source_dir), os.environ.get("DATABASE_URL", ""))
        if d >= s.partitions_start.isoformat()
    ]
    return (held[0], held[-1]) if held else None


def daily_partitions() -> dg.DailyPartitionsDefinition:
    """One partition per UTC day, from ``RRR_PARTITIONS_START`` to ``RRR_PARTITIONS_END`` (see
    :func:`settings` for the defaults of the files and recorded sources)."""
    s = settings()
    end = s.partitions_end.isoformat() if s.partitions_end else None
    # Dagster lists only the days that have ended; a source's days run up to its end (a replay's
    # market clock can be ahead of the wall clock), and today's data is a partition too.
    today = datetime.now(UTC).date()
    ahead = max(1, (s.partitions_end - today).days + 1) if s.partitions_end else 1
    return dg.DailyPartitionsDefinition(start_date=s.partitions_start.isoformat(), end_date=end, end_offset=ahead)


DAILY = daily_partitions()
# A range of days is loaded in one run (the synthetic market is simulated once, not per day).
ONE_RUN = dg.BackfillPolicy.single_run()


def partition_days_ns() -> tuple[int, int]:
    """``[start, end)`` of the partitions' days in epoch ns (open-ended without an end date).

    Assets reading the whole store keep to these days: the same database also holds what the
    engine records (today's bars, real recordings) and that must not stretch their grids.
    """
    s = settings()
    low = s.synthetic_start_ns()
    high = low + ((s.partitions_end - s.partitions_start).days * 86_400 * 10**9 if s.partitions_end else 2**62)
    return low, high


async def stored_window(pool: Any, interval_s: int | None = None) -> tuple[int, int]:
    """``[first, last + 1 bar)`` of the bars (of the pipeline's bar length unless ``interval_s``
    is given) stored inside the partitions' days, in epoch ns.

    Raises:
        dagster.Failure: no bars are stored in those days.
    """
    interval_s = interval_s or settings().bar_seconds
    low, high = partition_days_ns()
    row = await pool.fetchrow(
        "SELECT min(start_ns) AS first, max(start_ns) AS last FROM bars"
        " WHERE interval_s = $1 AND start_ns >= $2 AND start_ns < $3",
        interval_s,
        low,
        high,
    )
    if row["first"] is None:
        raise dg.Failure(
            f"no {interval_s}-second bars are stored in the partitions' days: materialize market data first "
            "(or set RRR_BAR_SECONDS to the length of the bars the source holds)"
        )
    return int(row["first"]), int(row["last"]) + interval_s * 10**9


@dataclass(frozen=True)
class PipelinePlan:
    """What the pipeline runs on, decided once from the settings and the stored data.

    ``offline_features`` writes it (``$RRR_HOME/lake/training/plan.json``); the training sets
    and models read it, so every step agrees on the bar length, calendar, feature sets,
    horizon, whether news is there and whether the universe is large enough to forecast
    across symbols.

    Attributes:
        interval_s: bar length.
        calendar: session calendar (``24/7`` or an exchange calendar name).
        horizon_bars: the price label's horizon in bars.
        price_set: ``price`` (trades, taker volume and VWAP present) or ``price_ohlcv``.
        news: headlines are stored in the window (else the price model trains without news).
        symbols: symbols with bars in the window.
        why: one line per decision, for people.
    """

    interval_s: int
    calendar: str
    horizon_bars: int
    price_set: str
    news: bool
    symbols: int
    why: tuple[str, ...] = ()

    @property
    def cross_sectional(self) -> bool:
        """Forecast across symbols (three or more), else each symbol's own return."""
        return self.symbols >= 3

    def feature_sets(self) -> dict[str, Any]:
        """``{role: FeatureSet}`` for ``price``, ``risk`` and ``sentiment``."""
        from feature_store.features.catalog import resolve

        names = {"price": self.price_set, "risk": "risk", "sentiment": "sentiment"}
        return {role: resolve(name, self.interval_s, self.calendar) for role, name in names.items()}

    def write(self) -> Any:
        """Write the plan atomically; return its path."""
        path = plan_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls) -> PipelinePlan:
        path = plan_file()
        if not path.exists():
            raise dg.Failure(f"{path} is missing: materialize offline_features first")
        raw = json.loads(path.read_text())
        return cls(**{**raw, "why": tuple(raw.get("why", ()))})


def plan_file() -> Any:
    """``$RRR_HOME/lake/training/plan.json``."""
    return settings().lake / "training" / "plan.json"


async def decide_plan(pool: Any, start: int, end: int) -> PipelinePlan:
    """The plan for the bars and news stored in ``[start, end)`` under the current settings."""
    s = settings()
    row = await pool.fetchrow(
        "SELECT count(DISTINCT symbol) AS symbols, count(*) FILTER (WHERE trades > 0) AS with_trades,"
        " count(*) FILTER (WHERE abs(2 * buy_volume - volume) > 1e-9 * volume) AS with_flow"
        " FROM bars WHERE interval_s = $1 AND start_ns >= $2 AND start_ns < $3",
        s.bar_seconds,
        start,
        end,
    )
    news = await pool.fetchval("SELECT count(*) FROM news WHERE ts_ns >= $1 AND ts_ns < $2", start, end)
    why = []
    if s.features == "auto":
        full = bool(row["with_trades"]) and bool(row["with_flow"])
        price_set = "price" if full else "price_ohlcv"
        why.append(
            "bars carry trade counts and taker volume: the full price feature set"
            if full
            else "bars are OHLCV only (no trade counts or taker volume): the price_ohlcv feature set"
        )
    else:
        price_set = "price" if s.features == "full" else "price_ohlcv"
        why.append(f"RRR_FEATURES={s.features}: the {price_set} feature set")
    symbols = int(row["symbols"])
    why.append(
        f"{symbols} symbols: "
        + ("cross-sectional forecasts" if symbols >= 3 else "per-symbol forecasts scored by the pooled time-series IC")
    )
    if not news:
        why.append("no headlines stored: the price model trains without news features")
    return PipelinePlan(s.bar_seconds, s.calendar, s.horizon_bars, price_set, bool(news), symbols, tuple(why))


def quality_metadata(report: Any) -> dict[str, Any]:
    """Metadata of a Great Expectations report: summary, failures with sample rows, Data Docs link."""
    from orchestration.plots import markdown_table

    meta: dict[str, Any] = {
        "rows": report.rows,
        "expectations": report.evaluated,
        "failed_expectations": len(report.failures),
        "summary": dg.MetadataValue.md(report.summary()),
        "data_docs": dg.MetadataValue.url(report.docs),
    }
    if report.failures:
        table = [
            {
                "expectation": f["expectation"],
                "column(s)": f["kwargs"].get("column") or f["kwargs"].get("column_list") or f["kwargs"],
                "unexpected": f["unexpected_count"],
                "observed": f["observed_value"],
            }
            for f in report.failures
        ]
        samples = {
            f"{f['expectation']} {f['kwargs'].get('column', '')}".strip(): f["sample_rows"] for f in report.failures
        }
        meta["failures"] = dg.MetadataValue.md(markdown_table(table))
        meta["sample_rows"] = dg.MetadataValue.json(json.loads(json.dumps(samples, default=_plain)))
    return meta


def _plain(value: Any) -> Any:
    """JSON form of what sample rows hold: arrays as lists, numpy scalars as numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def quality_result(asset: str, check: str, report: Any, **extra: Any) -> dg.AssetCheckResult:
    """A blocking check's result from a Great Expectations report."""
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=check,
        passed=bool(report.success),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={**quality_metadata(report), **extra},
    )
