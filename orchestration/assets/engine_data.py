"""The half of the loop Dagster does not run, as assets, so that its UI shows the whole loop:
data -> models -> service -> engine -> data.

* ``model_service``: the running BentoML service and the models it serves (all three; in the
  graph, downstream of the price model's promotion, the one the engine trades). Materializing it
  asks the service to ``/reload`` (a promotion takes effect at once, not at the next poll) and
  records the versions it serves.
* ``engine_decisions``: what the engine decided with those models (``decisions`` in
  PostgreSQL), each later given its realized return over the model's horizon: the live IC the
  ``model_quality`` sensor watches before it launches ``retrain_job``.
* ``engine_recordings``: the trades the engine recorded from the venues (``trades`` rows of the
  venues it trades); the ``recorded`` source lands them as the raw market data of the next run,
  so they sit upstream of ``raw_*``.

The service and the engine run outside Dagster: these assets record what they find (counts,
latest times, the models served, or why the service is not answering) and never fail because
the engine or the service is not running. They are plain assets, so any selection that reaches
them (``price_model_candidate*``, ``*raw_bars``) runs; the ``model_quality`` sensor also records
an observation of each at every evaluation.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

from typing import Any

import dagster as dg

from orchestration.resources import PostgresResource

GROUP = "engine"
KEYS = ("model_service", "engine_decisions", "engine_recordings")
# Venues whose rows the engine records (the pipeline's own sources write `synthetic` and `file`).
_PIPELINE_VENUES = ("synthetic", "file")

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


def _materialized(seen: dg.AssetObservation) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        asset_key=seen.asset_key,
        metadata=dict(seen.metadata),
        data_version=dg.DataVersion(seen.tags["dagster/data_version"]),
    )


def _by_key(seen: list[dg.AssetObservation]) -> dict[str, dg.AssetObservation]:
    return {one.asset_key.to_user_string(): one for one in seen}


@dg.asset(
    group_name=GROUP,
    kinds={"postgres"},
    description="Trades the engine recorded from the venues; RRR_SOURCE=recorded lands them as raw market data.",
)
def engine_recordings(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    seen = _by_key(observations(postgres.run(engine_tables), "not asked", ""))["engine_recordings"]
    context.log.info(f"the engine has recorded {seen.metadata['trades'].value:,} venue trades")
    return _materialized(seen)


# One upstream each, on purpose: Dagster 1.13's executor never finishes a run in which a step with
# several upstreams is to be skipped only after another of them was abandoned (a failed price gate
# with the sentiment promotion skipped, on a market without news, hung the run).
@dg.asset(
    group_name=GROUP,
    deps=["price_model_production"],
    kinds={"bentoml"},
    description="The BentoML service serving the production models (RRR_SERVING_URL): asked to reload, so a "
    "promotion takes effect at once; records the versions it serves, or that it is not running.",
)
def model_service(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    from serving.config import ServingSettings

    url = ServingSettings.from_env().url
    reloaded = service_reload(url)
    seen = _by_key(observations({}, service_versions(url) if reloaded is None else reloaded, url))["model_service"]
    context.log.info(f"model service at {url}: {seen.metadata['state'].value}")
    return _materialized(seen)


@dg.asset(
    group_name=GROUP,
    deps=["model_service"],
    kinds={"postgres"},
    description="The engine's decisions (forecast, target, model versions), later given their realized "
    "returns: the live IC the model_quality sensor compares with the validation IC to launch retraining.",
)
def engine_decisions(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    seen = _by_key(observations(postgres.run(engine_tables), "not asked", ""))["engine_decisions"]
    meta = {k: v.value for k, v in seen.metadata.items()}
    decided, realized = meta.get("decisions", 0), meta.get("realized", 0)
    context.log.info(f"the engine has stored {decided:,} decisions, {realized:,} with their realized returns")
    return _materialized(seen)


def service_reload(url: str, timeout_s: float = 10.0) -> str | None:
    """Ask the service at ``url`` to load its store's promotions now; None when it did, else why not."""
    import asyncio

    from serving.client import ModelClient, RequestRejected, ServiceUnavailable

    async def ask() -> None:
        async with ModelClient(url, timeout_s=timeout_s, retries=0) as client:
            await client.reload()

    try:
        asyncio.run(ask())
    except (ServiceUnavailable, RequestRejected) as exc:
        return f"not answering: {exc}"
    return None


engine_assets = [engine_recordings, model_service, engine_decisions]
observe_engine = dg.define_asset_job(
    "observe_engine",
    selection=dg.AssetSelection.assets(*KEYS),
    description="Record what the model service serves, what the engine decided and what it recorded (the engine "
    "group: the half of the loop Dagster does not run).",
)
