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
    days, in the offline store, at the pipeline's bar length and session calendar; and the plan the
    training steps follow (which price feature set, news or not, cross-sectional or per symbol)."""
    from feature_store.market_data import MarketDataStore
    from feature_store.materialize import materialize_features
    from feature_store.postgres_store import PostgresOfflineStore
    from orchestration import quality
    from orchestration.assets.common import decide_plan

    s = settings()

    async def build(pool: Any) -> tuple[Any, Any, dict[str, Any], tuple[int, int]]:
        # Only the partitions' days: bars an engine session stored later (or recordings from other
        # years) would stretch the gap-filled grid over every bar in between.
        start, end = await stored_window(pool)
        plan = await decide_plan(pool, start, end)
        sets = plan.feature_sets()
        offline = PostgresOfflineStore(pool)
        summary = await materialize_features(
            MarketDataStore(pool), offline, None, list(sets.values()), start, end, horizons=(plan.horizon_bars,)
        )
        frames = {role: await offline.read_features(fs, start, end) for role, fs in sets.items()}
        return plan, summary, frames, (start, end)

    plan, summary, frames, (start, end) = postgres.run(build)
    sets = plan.feature_sets()
    plan.write()
    for line in plan.why:
        context.log.info(f"plan: {line}")
    yield dg.MaterializeResult(
        asset_key="offline_features",
        metadata={
            **{k: v for k, v in summary.rows.items()},
            **{f"{k}_s": round(v, 3) for k, v in summary.seconds.items()},
            "window": f"{start} .. {end} ns",
            "interval_s": plan.interval_s,
            "calendar": plan.calendar,
            "plan": dg.MetadataValue.md("\n".join(f"- {line}" for line in plan.why)),
            "feature_set_versions": dg.MetadataValue.json({fs.name: fs.version for fs in sets.values()}),
        },
    )
    # The last day is checked against the days before; with daily bars or longer, the last ten bars.
    cut = end - max(DAY_NS, 10 * plan.interval_s * 10**9)
    for role in _SETS:
        fs, frame = sets[role], frames[role]
        history, recent = frame[frame["ts_ns"] < cut], frame[frame["ts_ns"] >= cut]
        if len(history):
            reference = quality.reference_ranges(history, fs.names)
            # A feature whose lookback is longer than the history has no range yet: reported, not failed.
            warming = [n for n in fs.names if n not in reference]
            report = quality.validate_features(
                recent, fs.names, s.gx_root, reference=reference, suite=f"{role}_features", warming_up=warming
            )
        else:  # a single day: no trusted history yet, and the rolling windows are still warming up
            warming = list(fs.names)
            report = quality.validate_features(frame, fs.names, s.gx_root, max_null_share=1.0, suite=f"{role}_features")
        context.log.info(report.summary())
        extra = {"warming_up": dg.MetadataValue.json(sorted(warming))} if warming else {}
        yield quality_result("offline_features", f"{role}_features_quality", report, **extra)


@dg.asset(group_name=GROUP, deps=["offline_features"], kinds={"redis"})
def online_features(
    context: dg.AssetExecutionContext, postgres: PostgresResource, redis: RedisResource
) -> dg.MaterializeResult:
    """The latest 32 bars of feature vectors of every symbol in Redis, read back and compared."""
    from feature_store.materialize import write_online_windows
    from feature_store.online_layout import OnlineLayout
    from feature_store.postgres_store import PostgresOfflineStore
    from feature_store.redis_store import RedisOnlineStore
    from orchestration.assets.common import PipelinePlan

    bars = 32
    sets = {fs.name: fs for fs in PipelinePlan.read().feature_sets().values()}

    async def latest(pool: Any) -> dict[str, Any]:
        offline = PostgresOfflineStore(pool)
        out = {}
        start, end = await stored_window(pool)
        for name, fs in sets.items():
            # The last bars of the set's grid (a closed market's weekend holds no bars).
            out[name] = await offline.read_features(fs, max(start, end - 4 * bars * fs.interval_s * 10**9), end)
            if out[name].empty:
                out[name] = await offline.read_features(fs, start, end)
            if out[name].empty:
                raise dg.Failure(f"no {name} features of version {fs.version} are stored: materialize offline_features")
        return out

    frames = postgres.run(latest)
    online = RedisOnlineStore.from_url(redis.redis_url(), OnlineLayout.for_interval(settings().bar_seconds))
    metadata: dict[str, Any] = {}
    try:
        for name, frame in frames.items():
            written = write_online_windows(online, sets[name], frame, bars)
            metadata[f"{name}_symbols"] = written.symbols
            metadata[f"{name}_latest_ts_ns"] = written.latest_ts_ns
            if written.newer:
                # A live engine wrote newer bars of these symbols: the live data stays.
                metadata[f"{name}_left_newer_online"] = dg.MetadataValue.json(list(written.newer))
                context.log.info(f"{name}: {len(written.newer)} symbols hold newer live bars online; left as they are")
            if written.too_old:
                metadata[f"{name}_bars_older_than_live_window"] = written.too_old
                context.log.warning(
                    f"{name}: the online store holds bars of this set newer than {written.too_old} of the "
                    f"{bars} bars written (a live engine); those were left out"
                )
    finally:
        online.close()
    context.log.info(f"online features written and read back: {metadata}")
    return dg.MaterializeResult(metadata=metadata)
