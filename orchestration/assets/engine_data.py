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


def _observation(key: str, metadata: dict[str, Any], version: str) -> dg.AssetObservation:
    """What was found for ``key``, with a data version that changes when it does."""
    return dg.AssetObservation(
        asset_key=key,
        metadata={k: v for k, v in metadata.items() if v is not None},
        tags={"dagster/data_version": version},
    )


async def _decided(pool: Any) -> dg.AssetObservation:
    found = dict(await pool.fetchrow(_DECISIONS_SQL))
    return _observation("engine_decisions", found, f"{found['decisions']}:{found['realized']}:{found['latest_ns']}")


async def _recorded(pool: Any) -> dg.AssetObservation:
    found = dict(await pool.fetchrow(_RECORDED_SQL, list(_PIPELINE_VENUES)))
    return _observation("engine_recordings", found, f"{found['trades']}:{found['latest_trade_ns']}")


def _served(url: str, *, reload: bool = False, timeout_s: float = 10.0) -> dg.AssetObservation:
    """The models the service at ``url`` serves (after a ``/reload`` when asked), or why it does not answer."""
    import asyncio

    from serving.client import ModelClient, RequestRejected, ServiceUnavailable

    async def ask() -> dict[str, Any]:
        async with ModelClient(url, timeout_s=timeout_s, retries=0) as client:
            if reload:
                await client.reload()
            return await client.versions()

    try:
        versions = asyncio.run(ask())
    except (ServiceUnavailable, RequestRejected) as exc:
        return _observation("model_service", {"url": url, "state": f"not answering: {exc}"}, "down")
    tags = {name: str(m.get("tag")) for name, m in versions.get("models", {}).items()}
    state = "ready" if versions.get("ready") else "not ready"
    version = ",".join(f"{k}={v}" for k, v in sorted(tags.items())) or "no models"
    return _observation("model_service", {"url": url, "state": state, **tags}, version)


def _service_url() -> str:
    from serving.config import ServingSettings

    return ServingSettings.from_env().url


def observe_all(postgres: PostgresResource) -> list[dg.AssetObservation]:
    """Observe the service and the engine's tables now (the ``model_quality`` sensor's reading)."""

    async def tables(pool: Any) -> list[dg.AssetObservation]:
        return [await _decided(pool), await _recorded(pool)]

    return [_served(_service_url()), *postgres.run(tables)]


def _materialized(seen: dg.AssetObservation) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        asset_key=seen.asset_key,
        metadata=dict(seen.metadata),
        data_version=dg.DataVersion(seen.tags["dagster/data_version"]),
    )


@dg.asset(
    group_name=GROUP,
    kinds={"postgres"},
    description="Trades the engine recorded from the venues; RRR_SOURCE=recorded lands them as raw market data.",
)
def engine_recordings(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    seen = postgres.run(_recorded)
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
    url = _service_url()
    seen = _served(url, reload=True)
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
    seen = postgres.run(_decided)
    meta = {k: v.value for k, v in seen.metadata.items()}
    decided, realized = meta.get("decisions", 0), meta.get("realized", 0)
    context.log.info(f"the engine has stored {decided:,} decisions, {realized:,} with their realized returns")
    return _materialized(seen)


engine_assets = [engine_recordings, model_service, engine_decisions]
observe_engine = dg.define_asset_job(
    "observe_engine",
    selection=dg.AssetSelection.assets(*KEYS),
    description="Record what the model service serves, what the engine decided and what it recorded (the engine "
    "group: the half of the loop Dagster does not run).",
)
