"""Features: the offline store in PostgreSQL and the latest windows online in Redis."""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

from collections.abc import Iterator
from typing import Any

import dagster as dg

from orchestration.assets.common import quality_result, settings, stored_window
from orchestration.resources import PostgresResource, RedisResource

GROUP = "features"
DAY_NS = 86_400 * 10**9
_SETS = ("price", "risk", "sentiment")


@dg.asset(
    group_name=GROUP,
    deps=["bars", "news"],
    kinds={"postgres"},
    check_specs=[
        dg.AssetCheckSpec(
            f"{name}_features_quality",
            asset="offline_features",
            blocking=True,
            description=f"GX suite on the last day of the {name} features against the days before.",
        )
        for name in _SETS
    ],
)
def offline_features(context: dg.AssetExecutionContext, postgres: PostgresResource) -> Iterator[Any]:
    """Price, risk and sentiment features with forward-return labels for the bars stored in the partitions'
    days, in the offline store."""
    from feature_store.features import FEATURE_SETS
    from feature_store.market_data import MarketDataStore
    from feature_store.materialize import materialize_features
    from feature_store.postgres_store import PostgresOfflineStore
    from orchestration import quality

    s = settings()

    async def build(pool: Any) -> tuple[Any, dict[str, Any], tuple[int, int]]:
        # Only the partitions' days: bars an engine session stored later (or recordings from other
        # years) would stretch the gap-filled grid over every minute in between.
        start, end = await stored_window(pool)
        offline = PostgresOfflineStore(pool)
        summary = await materialize_features(
            MarketDataStore(pool), offline, None, list(FEATURE_SETS.values()), start, end
        )
        frames = {name: await offline.read_features(FEATURE_SETS[name], start, end) for name in _SETS}
        return summary, frames, (start, end)

    summary, frames, (start, end) = postgres.run(build)
    yield dg.MaterializeResult(
        asset_key="offline_features",
        metadata={
            **{k: v for k, v in summary.rows.items()},
            **{f"{k}_s": round(v, 3) for k, v in summary.seconds.items()},
            "window": f"{start} .. {end} ns",
            "feature_set_versions": dg.MetadataValue.json({n: FEATURE_SETS[n].version for n in _SETS}),
        },
    )
    cut = end - DAY_NS
    for name in _SETS:
        fs, frame = FEATURE_SETS[name], frames[name]
        history, recent = frame[frame["ts_ns"] < cut], frame[frame["ts_ns"] >= cut]
        if len(history):
            reference = quality.reference_ranges(history, fs.names)
            report = quality.validate_features(
                recent, fs.names, s.gx_root, reference=reference, suite=f"{name}_features"
            )
        else:  # a single day: no trusted history yet, and the rolling windows are still warming up
            report = quality.validate_features(frame, fs.names, s.gx_root, max_null_share=1.0, suite=f"{name}_features")
        context.log.info(report.summary())
        yield quality_result("offline_features", f"{name}_features_quality", report)


@dg.asset(group_name=GROUP, deps=["offline_features"], kinds={"redis"})
def online_features(
    context: dg.AssetExecutionContext, postgres: PostgresResource, redis: RedisResource
) -> dg.MaterializeResult:
    """The latest 32 bars of feature vectors of every symbol in Redis, read back and compared."""
    from feature_store.features import FEATURE_SETS
    from feature_store.materialize import write_online_windows
    from feature_store.online_layout import OnlineLayout
    from feature_store.postgres_store import PostgresOfflineStore
    from feature_store.redis_store import RedisOnlineStore

    bars = 32

    async def latest(pool: Any) -> dict[str, Any]:
        offline = PostgresOfflineStore(pool)
        out = {}
        start, end = await stored_window(pool)
        for name, fs in FEATURE_SETS.items():
            out[name] = await offline.read_features(fs, max(start, end - bars * fs.interval_s * 10**9), end)
            if out[name].empty:
                raise dg.Failure(f"no {name} features of version {fs.version} are stored: materialize offline_features")
        return out

    frames = postgres.run(latest)
    online = RedisOnlineStore.from_url(redis.redis_url(), OnlineLayout())
    metadata: dict[str, Any] = {}
    try:
        for name, frame in frames.items():
            ts, symbols = write_online_windows(online, FEATURE_SETS[name], frame, bars)
            metadata[f"{name}_symbols"] = symbols
            metadata[f"{name}_latest_ts_ns"] = ts
    finally:
        online.close()
    context.log.info(f"online features written and read back: {metadata}")
    return dg.MaterializeResult(metadata=metadata)
