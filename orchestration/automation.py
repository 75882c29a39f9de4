"""Jobs, schedules and sensors.

Jobs:
    whole_loop: every asset, data to production models, over every daily partition in one run
        (for open-ended partitions, the days the files or recorded source holds; pass another
        range as the run tags ``dagster/asset_partition_range_start`` and ``..._end``).
    market_data_job: the raw and stored market data of the partitions it is given.
    feature_job: offline features and online features.
    retrain_job: training sets, the three candidates and their gates, reports, promotion.
    rollback_job: re-promote the previous production version of a model.
    observe_engine: record what the model service serves (after asking it to reload), the
        engine's decisions and its recorded trades (the ``engine`` group: the half of the loop
        Dagster does not run).

Schedules: ``feature_schedule`` (hourly) and ``daily_retrain`` (00:30 UTC).

Sensors:
    new_market_data: launches ``market_data_job`` for each day whose source data is new or changed.
    model_quality: launches ``retrain_job`` when the live IC of ``engine_decisions`` decays
        below ``RRR_IC_DECAY`` x the production model's validation IC, or a price feature's PSI
        against the training window passes ``RRR_PSI_THRESHOLD``; each evaluation also
        records an observation of the engine's assets.
    run_failure_alert: appends an alert for every failed run to ``$RRR_HOME/alerts/alerts.jsonl``.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

import json
import time
from typing import Any

import dagster as dg

from orchestration.assets import engine_data
from orchestration.assets.common import DAILY
from orchestration.resources import ModelStoreResource, PostgresResource, SourceResource

MARKET_DATA = dg.AssetSelection.assets("raw_trades", "raw_bars", "raw_news", "raw_oracle", "trades", "bars", "news")
FEATURES = dg.AssetSelection.assets("offline_features", "online_features")
RETRAIN = dg.AssetSelection.groups("training", "models", "validation", "production")


def _every_day() -> dict[str, str]:
    """Run tags selecting every partition when they end, else every day the source holds."""
    from orchestration.assets.common import source_span

    span = source_span()
    if span is None:
        return {}
    return {"dagster/asset_partition_range_start": span[0], "dagster/asset_partition_range_end": span[1]}


observe_engine = engine_data.observe_engine

whole_loop = dg.define_asset_job(
    "whole_loop",
    selection=dg.AssetSelection.all(),
    tags=_every_day(),
    description="Every asset, market data to production models, over every day (one run).",
)
market_data_job = dg.define_asset_job(
    "market_data_job", selection=MARKET_DATA, description="Land, check and store market data."
)
feature_job = dg.define_asset_job("feature_job", selection=FEATURES, description="Offline and online features.")
retrain_job = dg.define_asset_job(
    "retrain_job", selection=RETRAIN, description="Training sets, candidates, gates, reports and promotion."
)


class RollbackConfig(dg.Config):  # type: ignore[misc]
    """Which model to roll back: ``price``, ``sentiment``, ``risk`` or ``all``."""

    model: str = "all"


@dg.op(description="Archive the production version and re-promote the one that was production before it.")
def rollback_models(context: dg.OpExecutionContext, config: RollbackConfig, model_store: ModelStoreResource) -> None:
    registry = model_store.registry()
    names = ("price", "sentiment", "risk") if config.model == "all" else (config.model,)
    unknown = [n for n in names if n not in registry.PRIMARY_METRIC]
    if unknown:
        raise dg.Failure(f"unknown model {unknown[0]!r}: use price, sentiment, risk or all")
    for name in names:
        record = registry.rollback(name)
        context.log.info(f"{record.tag} is back in production")
        context.log_event(
            dg.AssetMaterialization(
                asset_key=f"{name}_model_production", metadata={"production": record.tag, "rolled_back": True}
            )
        )


@dg.job(description="Re-promote the previous production version of a model (config: model).")
def rollback_job() -> None:
    rollback_models()


feature_schedule = dg.ScheduleDefinition(
    name="feature_schedule", job=feature_job, cron_schedule="0 * * * *", execution_timezone="UTC"
)
daily_retrain = dg.ScheduleDefinition(
    name="daily_retrain", job=retrain_job, cron_schedule="30 0 * * *", execution_timezone="UTC"
)


@dg.sensor(job=market_data_job, minimum_interval_seconds=60, description="New or changed source data -> its day.")
def new_market_data(
    context: dg.SensorEvaluationContext, source: SourceResource, postgres: PostgresResource
) -> dg.SensorResult | dg.SkipReason:
    from orchestration.sources import available

    settings = source.settings()
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    now = available(settings, postgres.run)
    keys = set(DAILY.get_partition_keys(dynamic_partitions_store=context.instance))
    changed = {day: fp for day, fp in now.items() if seen.get(day) != fp and day in keys}
    if not changed:
        return dg.SkipReason(f"no new data from the {settings.source} source ({len(now)} days known)")
    requests = [dg.RunRequest(run_key=f"{day}:{fp}", partition_key=day) for day, fp in sorted(changed.items())]
    return dg.SensorResult(run_requests=requests, cursor=json.dumps({**seen, **changed}))


_LIVE_IC_SQL = """
SELECT ts_ns, symbol, forecast, realized_return FROM decisions
WHERE realized_return IS NOT NULL AND forecast IS NOT NULL AND model_versions ->> 'price' = $1
ORDER BY ts_ns DESC LIMIT $2
"""


async def live_ic(pool: Any, tag: str, limit: int = 200_000) -> tuple[float, int]:
    """Mean cross-sectional IC of ``tag``'s recorded forecasts against realized returns, and the timestamps used."""
    import pandas as pd

    from feature_store.sources.synthetic import cross_sectional_ics

    rows = await pool.fetch(_LIVE_IC_SQL, tag, limit)
    if not rows:
        return float("nan"), 0
    frame = pd.DataFrame([dict(r) for r in rows])
    ics = cross_sectional_ics(frame, "forecast", "realized_return", time="ts_ns")
    return (float(ics.mean()) if len(ics) else float("nan")), len(ics)


def price_feature_set() -> Any:
    """The price feature set the pipeline trains on: the last plan's, else the settings' full set."""
    from orchestration.assets.common import PipelinePlan, plan_file, settings

    if plan_file().exists():
        return PipelinePlan.read().feature_sets()["price"]
    return settings().feature_set("price")


async def recent_price_features(pool: Any, hours: float = 24.0, feature_set: Any = None) -> Any:
    """The price features of the last ``hours`` stored in the offline store."""
    from feature_store.postgres_store import PostgresOfflineStore

    fs = feature_set or price_feature_set()
    last = await pool.fetchval(
        "SELECT max(ts_ns) FROM features WHERE feature_set = $1 AND version = $2", fs.name, fs.version
    )
    if last is None:
        return None
    return await PostgresOfflineStore(pool).read_features(fs, int(last) - int(hours * 3600e9), int(last) + 1)


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=300,
    description="Live IC decay or price-feature drift (PSI) -> retrain.",
)
def model_quality(
    context: dg.SensorEvaluationContext, postgres: PostgresResource, model_store: ModelStoreResource
) -> dg.SensorResult:
    from orchestration import drift
    from orchestration.assets.common import settings
    from orchestration.assets.engine_data import observe_all

    observed = observe_all(postgres)  # what it reads, on the engine's assets in the UI

    s = settings()
    min_timestamps = 100
    registry = model_store.registry()
    current = registry.list_models("price", "production")
    reasons = []
    if current:
        tag = current[0].tag
        validated = float(current[0].metadata.get("metrics", {}).get("ic", float("nan")))
        ic, n = postgres.run(lambda pool: live_ic(pool, tag))
        context.log.info(f"live IC of {tag}: {ic:.4f} over {n} timestamps (validation IC {validated:.4f})")
        if n >= min_timestamps and ic < s.ic_decay * validated:
            reasons.append(f"live IC {ic:.4f} over {n} bars < {s.ic_decay} x validation IC {validated:.4f}")
    reference = drift.read_reference(s.lake / "training" / "price_reference.json")
    if reference is not None:
        fs = price_feature_set()
        version, bins = reference
        recent = postgres.run(lambda pool: recent_price_features(pool, feature_set=fs))
        if version != fs.version:
            reasons.append(f"the {fs.name} feature set is now version {fs.version}; the model learnt {version}")
        elif recent is not None and len(recent):
            scores = drift.feature_psi(bins, recent)
            worst = max(scores, key=lambda k: scores[k] if scores[k] == scores[k] else -1.0)
            context.log.info(f"PSI of the last day's price features: worst {worst} {scores[worst]:.3f}")
            if scores[worst] > s.psi_threshold:
                reasons.append(f"PSI of {worst} {scores[worst]:.3f} > {s.psi_threshold}")
    if not reasons:
        return dg.SensorResult(
            skip_reason="live IC and feature drift are within their thresholds (or not enough data yet)",
            asset_events=observed,
        )
    # One retrain per hour at most, whatever keeps firing.
    hour = int(time.time() // 3600)
    request = dg.RunRequest(run_key=f"quality:{hour}", tags={"rrr/retrain_reason": "; ".join(reasons)})
    return dg.SensorResult(run_requests=[request], asset_events=observed)


@dg.run_failure_sensor(description="Record an alert for every failed run.")
def run_failure_alert(context: dg.RunFailureSensorContext) -> None:
    from orchestration.assets.common import settings

    folder = settings().alerts
    folder.mkdir(parents=True, exist_ok=True)
    alert = {
        "time": time.time(),
        "run_id": context.dagster_run.run_id,
        "job": context.dagster_run.job_name,
        "message": context.failure_event.message,
    }
    with (folder / "alerts.jsonl").open("a") as handle:
        handle.write(json.dumps(alert) + "\n")
    context.log.error(f"run {alert['run_id']} of {alert['job']} failed: {alert['message']}")
