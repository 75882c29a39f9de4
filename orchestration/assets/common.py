"""What the assets share: the daily partitions, settings and quality-report metadata."""

from __future__ import annotations

import json
from typing import Any

import dagster as dg

from orchestration.config import OrchestrationSettings


def settings() -> OrchestrationSettings:
    """The pipelines' settings, read from the environment on each call."""
    return OrchestrationSettings.from_env()


def daily_partitions() -> dg.DailyPartitionsDefinition:
    """One partition per UTC day, from ``RRR_PARTITIONS_START`` to ``RRR_PARTITIONS_END``."""
    s = settings()
    end = s.partitions_end.isoformat() if s.partitions_end else None
    return dg.DailyPartitionsDefinition(start_date=s.partitions_start.isoformat(), end_date=end)


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


async def stored_window(pool: Any, interval_s: int = 60) -> tuple[int, int]:
    """``[first, last + 1 bar)`` of the bars stored inside the partitions' days, in epoch ns.

    Raises:
        dagster.Failure: no bars are stored in those days.
    """
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
            f"no {interval_s}-second bars are stored in the partitions' days: materialize market data first"
        )
    return int(row["first"]), int(row["last"]) + interval_s * 10**9


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


def quality_result(asset: str, check: str, report: Any) -> dg.AssetCheckResult:
    """A blocking check's result from a Great Expectations report."""
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=check,
        passed=bool(report.success),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=quality_metadata(report),
    )
