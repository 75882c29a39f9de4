"""The half of the loop Dagster does not run, as observed assets, so that its UI shows the whole
loop: data -> models -> service -> engine -> data.

* ``model_service``: the running BentoML service and the models it serves (downstream of the
  three production assets).
* ``engine_decisions``: what the engine decided with those models (``decisions`` in
  PostgreSQL), each later given its realized return over the model's horizon: the live IC the
  ``model_quality`` sensor watches before it launches ``retrain_job``.
* ``engine_recordings``: the trades the engine recorded from the venues (``trades`` rows of the
  venues it trades, with the bars it built from them); the ``recorded`` source lands them as the
  raw market data of the next run, so they sit upstream of ``raw_*``.

Dagster does not materialize them; each is observed (the ``observe_engine`` job, and the
``model_quality`` sensor at each evaluation): counts, latest times and the models served, as
metadata with a data version that changes when they do. An observation never fails because the
engine or the service is not running: it says so.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

from typing import Any

import dagster as dg

from orchestration.resources import PostgresResource

GROUP = "engine"
KEYS = ("model_service", "engine_decisions", "engine_recordings")
# Venues whose rows the engine records (the pipeline's own sources write `synthetic` and `file`).
_PIPELINE_VENUES = ("synthetic", "file")

_SERVING_SPECS = [
    dg.AssetSpec(
        "model_service",
        deps=["price_model_production", "sentiment_model_production", "risk_model_production"],
        group_name=GROUP,
        kinds={"bentoml"},
        description="The BentoML service serving the production models (RRR_SERVING_URL); it follows promotions.",
    ),
    dg.AssetSpec(
        "engine_decisions",
        deps=["model_service", "online_features"],
        group_name=GROUP,
        kinds={"postgres"},
        description="The engine's decisions (forecast, target, model versions), later given their realized "
        "returns: the live IC the model_quality sensor compares with the validation IC to launch retraining.",
    ),
]
_RECORDINGS_SPEC = dg.AssetSpec(
    "engine_recordings",
    group_name=GROUP,
    kinds={"postgres"},
    description="Trades the engine recorded from the venues (and the bars it built from them); "
    "RRR_SOURCE=recorded lands them as raw market data.",
)

_DECISIONS_SQL = """
SELECT count(*) AS decisions, count(realized_return) AS realized, max(ts_ns) AS latest_ns,
       count(DISTINCT account) AS accounts
FROM decisions
"""
_RECORDED_SQL = """
SELECT count(*) AS trades, count(DISTINCT venue) AS venues, max(ts_ns) AS latest_trade_ns
FROM trades WHERE venue <> ALL($1::text[])
"""


async def engine_tables(pool: Any) -> dict[str, Any]:
    """Counts and latest times of what the engine stored (zeros before it ever ran)."""
    out = dict(await pool.fetchrow(_DECISIONS_SQL))
    out.update(dict(await pool.fetchrow(_RECORDED_SQL, list(_PIPELINE_VENUES))))
    return out


def service_versions(url: str, timeout_s: float = 5.0) -> dict[str, Any] | str:
    """The service's ``/versions`` answer, or why there is none."""
    import asyncio

    from serving.client import ModelClient, RequestRejected, ServiceUnavailable

    async def ask() -> dict[str, Any]:
        async with ModelClient(url, timeout_s=timeout_s, retries=0) as client:
            return await client.versions()

    try:
        return asyncio.run(ask())
    except (ServiceUnavailable, RequestRejected) as exc:
        return f"not answering: {exc}"


def observations(tables: dict[str, Any], versions: dict[str, Any] | str, url: str) -> list[dg.AssetObservation]:
    """One observation per engine asset, with a data version that changes when its content does."""
    if isinstance(versions, str):
        service_meta: dict[str, Any] = {"url": url, "state": versions}
        service_version = "down"
    else:
        tags = {name: str(m.get("tag")) for name, m in versions.get("models", {}).items()}
        service_meta = {"url": url, "state": "ready" if versions.get("ready") else "not ready", **tags}
        service_version = ",".join(f"{k}={v}" for k, v in sorted(tags.items())) or "no models"
    decided = {k: tables.get(k) for k in ("decisions", "realized", "accounts", "latest_ns")}
    recorded = {k: tables.get(k) for k in ("trades", "venues", "latest_trade_ns")}
    return [
        dg.AssetObservation(
            asset_key="model_service", metadata=service_meta, tags={"dagster/data_version": service_version}
        ),
        dg.AssetObservation(
            asset_key="engine_decisions",
            metadata={k: v for k, v in decided.items() if v is not None},
            tags={"dagster/data_version": f"{decided['decisions']}:{decided['realized']}:{decided['latest_ns']}"},
        ),
        dg.AssetObservation(
            asset_key="engine_recordings",
            metadata={k: v for k, v in recorded.items() if v is not None},
            tags={"dagster/data_version": f"{recorded['trades']}:{recorded['latest_trade_ns']}"},
        ),
    ]


def observe_all(postgres: PostgresResource) -> list[dg.AssetObservation]:
    """Observe the service and the engine's tables now."""
    from serving.config import ServingSettings

    url = ServingSettings.from_env().url
    return observations(postgres.run(engine_tables), service_versions(url), url)


# Declared, not materialized: Dagster shows them in the lineage and records their observations.
engine_assets = [*_SERVING_SPECS, _RECORDINGS_SPEC]


@dg.op(description="Observe the model service, the engine's decisions and its recorded trades.")
def observe_engine_assets(context: dg.OpExecutionContext, postgres: PostgresResource) -> None:
    for seen in observe_all(postgres):
        context.log_event(seen)
        context.log.info(f"{seen.asset_key.to_user_string()}: {dict((k, v.value) for k, v in seen.metadata.items())}")


@dg.job(description="Observe the model service and what the engine recorded (the engine group's assets).")
def observe_engine() -> None:
    observe_engine_assets()
