"""Training sets, point in time, one per model, as Parquet in the lake."""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

from typing import Any

import dagster as dg

from orchestration.assets.common import partition_days_ns, settings, stored_window
from orchestration.resources import PostgresResource

GROUP = "training"


def training_path(name: str) -> Any:
    """``$RRR_HOME/lake/training/<name>.parquet``."""
    return settings().lake / "training" / f"{name}.parquet"


async def stored_bars(pool: Any) -> Any:
    """Every stored 1-minute bar inside the partitions' days."""
    from feature_store.market_data import MarketDataStore

    first, end = await stored_window(pool)
    return await MarketDataStore(pool).read_bars(first, end, interval_s=60)


@dg.asset(group_name=GROUP, deps=["news"], kinds={"parquet"})
def sentiment_training_set(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    """Every stored headline with a known sentiment label, for the sentiment model."""
    from orchestration import lake

    async def read(pool: Any) -> Any:
        from feature_store.market_data import MarketDataStore

        return await MarketDataStore(pool).read_news(*partition_days_ns())

    news = postgres.run(read)
    if news.empty:
        raise dg.Failure("no news is stored in the partitions' days: materialize the market data partitions first")
    labelled = news[news["label"].notna()].reset_index(drop=True)
    if labelled.empty:
        raise dg.Failure(f"none of the {len(news)} stored headlines carries a sentiment label to train on")
    path = lake.write_frame(training_path("sentiment"), labelled)
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
    """Per-symbol 1-minute log returns of every stored bar, for the risk model."""
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
    """Price features (offline store), sentiment features (model-scored news), the 15-bar label, the oracle."""
    from feature_store.features import PRICE, SENTIMENT
    from feature_store.features.offline import compute_features
    from feature_store.postgres_store import PostgresOfflineStore
    from feature_store.training import build_training_set, label_name
    from orchestration import drift, lake
    from serving.models.price import PriceConfig
    from serving.training import with_oracle

    s = settings()
    label = label_name(PriceConfig().horizon)

    async def read(pool: Any) -> tuple[Any, Any]:
        bars = await stored_bars(pool)
        start, end = int(bars["start_ns"].min()), int(bars["start_ns"].max()) + 1
        stored = await build_training_set(PostgresOfflineStore(pool), [PRICE], [label], start, end)
        return bars, stored

    bars, frame = postgres.run(read)
    scored = lake.read_frame(lake_path_scores())
    sentiment = compute_features(SENTIMENT, bars, news=scored)
    new = [n for n in SENTIMENT.names if n not in frame.columns]
    frame = frame.merge(sentiment[["symbol", "ts_ns", *new]], on=["symbol", "ts_ns"], how="inner")
    landed = lake.landed_days(s.lake, "oracle")
    oracle = lake.read_raw(s.lake, "oracle", landed) if landed else None
    frame = with_oracle(frame, oracle)
    frame = frame.sort_values(["ts_ns", "symbol"], kind="stable").reset_index(drop=True)
    path = lake.write_frame(training_path("price"), frame)
    # The feature distribution the model learns from: the drift sensor compares live features with it.
    reference = drift.reference_bins(frame, PriceConfig().features)
    drift.write_reference(s.lake / "training" / "price_reference.json", reference, PRICE.version)
    return dg.MaterializeResult(
        metadata={
            "rows": len(frame),
            "columns": frame.shape[1],
            "symbols": int(frame["symbol"].nunique()),
            "has_oracle": bool("oracle" in frame and frame["oracle"].notna().any()),
            "feature_set_versions": dg.MetadataValue.json({"price": PRICE.version, "sentiment": SENTIMENT.version}),
            "path": dg.MetadataValue.path(str(path)),
        }
    )


def lake_path_scores() -> Any:
    """Where the sentiment candidate's scores of every stored headline are written."""
    return settings().lake / "training" / "news_sentiment_scores.parquet"
