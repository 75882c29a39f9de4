"""Training sets, point in time, one per model, as Parquet in the lake."""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

import json
from typing import Any

import dagster as dg

from orchestration.assets.common import partition_days_ns, settings, stored_window
from orchestration.resources import PostgresResource

GROUP = "training"


def training_path(name: str) -> Any:
    """``$RRR_HOME/lake/training/<name>.parquet``."""
    return settings().lake / "training" / f"{name}.parquet"


async def stored_bars(pool: Any) -> Any:
    """Every stored bar of the pipeline's bar length inside the partitions' days."""
    from feature_store.market_data import MarketDataStore

    first, end = await stored_window(pool)
    return await MarketDataStore(pool).read_bars(first, end, interval_s=settings().bar_seconds)


@dg.asset(group_name=GROUP, deps=["news"], kinds={"parquet"})
def sentiment_training_set(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    """Every stored headline with a known sentiment label, for the sentiment model.

    A source without (labelled) news gives an empty set: the sentiment model then has nothing
    to train on and says so, and the price model trains without news features.
    """
    from orchestration import lake

    async def read(pool: Any) -> Any:
        from feature_store.market_data import MarketDataStore

        return await MarketDataStore(pool).read_news(*partition_days_ns())

    news = postgres.run(read)
    labelled = news[news["label"].notna()].reset_index(drop=True)
    path = lake.write_frame(training_path("sentiment"), labelled)
    if labelled.empty:
        why = (
            "no headlines are stored in the partitions' days"
            if news.empty
            else f"none of the {len(news)} stored headlines carries a sentiment label"
        )
        context.log.warning(f"sentiment training set is empty: {why}")
        return dg.MaterializeResult(metadata={"rows": 0, "headlines": len(news), "note": why})
    balance = labelled["label"].value_counts(normalize=True).sort_index()
    return dg.MaterializeResult(
        metadata={
            "rows": len(labelled),
            "unlabelled_left_out": len(news) - len(labelled),
            "window": f"{int(news['ts_ns'].min())} .. {int(news['ts_ns'].max()) + 1} ns",
            "label_shares": dg.MetadataValue.json({str(int(k)): round(float(v), 4) for k, v in balance.items()}),
            "path": dg.MetadataValue.path(str(path)),
        }
    )


@dg.asset(group_name=GROUP, deps=["bars"], kinds={"parquet"})
def risk_training_set(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    """Per-symbol log returns between consecutive stored bars (of the pipeline's bar length), for the risk model."""
    from orchestration import lake
    from serving.training import risk_returns

    returns = risk_returns(postgres.run(stored_bars))
    path = lake.write_frame(training_path("risk"), returns)
    return dg.MaterializeResult(
        metadata={
            "rows": len(returns),
            "symbols": int(returns["symbol"].nunique()),
            "return_sd": float(returns["ret"].std()),
            "path": dg.MetadataValue.path(str(path)),
        }
    )


@dg.asset(group_name=GROUP, deps=["offline_features", "news_sentiment_scores", "raw_oracle"], kinds={"parquet"})
def price_training_set(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    """Price features (offline store), sentiment features (scored news, when there is news), the
    forward-return label over the plan's horizon, and the oracle where the source has one."""
    from feature_store.features.offline import compute_features
    from feature_store.postgres_store import PostgresOfflineStore
    from feature_store.training import build_training_set, label_name
    from orchestration import drift, lake
    from orchestration.assets.common import PipelinePlan
    from serving.training import with_oracle

    s = settings()
    plan = PipelinePlan.read()
    sets = plan.feature_sets()
    label = label_name(plan.horizon_bars)

    async def read(pool: Any) -> tuple[Any, Any]:
        bars = await stored_bars(pool)
        start, end = int(bars["start_ns"].min()), int(bars["start_ns"].max()) + 1
        stored = await build_training_set(PostgresOfflineStore(pool), [sets["price"]], [label], start, end)
        return bars, stored

    bars, frame = postgres.run(read)
    versions = {sets["price"].name: sets["price"].version}
    scores = lake_path_scores()
    scored = lake.read_frame(scores) if scores.exists() else None
    news_note = "news features from the scored headlines"
    if scored is None or scored.empty:
        news_note = "no scored headlines: no news features"
    else:
        sentiment = compute_features(sets["sentiment"], bars, news=scored)
        new = [n for n in sets["sentiment"].names if n not in frame.columns]
        frame = frame.merge(sentiment[["symbol", "ts_ns", *new]], on=["symbol", "ts_ns"], how="inner")
        versions[sets["sentiment"].name] = sets["sentiment"].version
    landed = lake.landed_days(s.lake, "oracle")
    oracle = lake.read_raw(s.lake, "oracle", landed) if landed else None
    frame = with_oracle(frame, oracle)
    frame = frame.sort_values(["ts_ns", "symbol"], kind="stable").reset_index(drop=True)
    path = lake.write_frame(training_path("price"), frame)
    (s.lake / "training" / "price_versions.json").write_text(json.dumps(versions))
    # The feature distribution the model learns from: the drift sensor compares live features with it.
    columns = [c for c in sets["price"].names if c in frame.columns]
    reference = drift.reference_bins(frame, columns)
    drift.write_reference(s.lake / "training" / "price_reference.json", reference, sets["price"].version)
    return dg.MaterializeResult(
        metadata={
            "rows": len(frame),
            "columns": frame.shape[1],
            "symbols": int(frame["symbol"].nunique()),
            "label": f"{label}: {plan.horizon_bars} bars of {plan.interval_s} s",
            "news": news_note,
            "has_oracle": bool("oracle" in frame and frame["oracle"].notna().any()),
            "feature_set_versions": dg.MetadataValue.json(versions),
            "path": dg.MetadataValue.path(str(path)),
        }
    )


def lake_path_scores() -> Any:
    """Where the sentiment candidate's scores of every stored headline are written."""
    return settings().lake / "training" / "news_sentiment_scores.parquet"
