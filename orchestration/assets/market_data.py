"""Market data: raw daily partitions from the configured source, checked, then stored.

``raw_trades``, ``raw_bars``, ``raw_news`` (and the synthetic market's ``raw_oracle``) are
what the source delivered for each day, landed as Parquet under ``$RRR_HOME/lake/raw``.
Great Expectations suites check bars and news there; the checks block, so bad data never
reaches ``trades``, ``bars`` and ``news``, the PostgreSQL tables the features are built from.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

from collections.abc import Iterator
from typing import Any

import dagster as dg

from orchestration.assets.common import DAILY, ONE_RUN, quality_result
from orchestration.resources import PostgresResource, SourceResource

GROUP = "market_data"
_RAW = {
    "raw_trades": "Trades of the day as the source delivered them (Parquet in the lake).",
    "raw_bars": "OHLCV bars (RRR_BAR_SECONDS long) of the day as the source delivered them (Parquet in the lake).",
    "raw_news": "Headlines of the day as the source delivered them (Parquet in the lake).",
    "raw_oracle": "The synthetic market's true expected 15-bar return: the ceiling the price model is scored against.",
}
_TIME = {"trades": "ts_ns", "bars": "start_ns", "news": "ts_ns", "oracle": "ts_ns"}


@dg.multi_asset(
    # What the engine recorded is raw data of the next run (RRR_SOURCE=recorded): the loop, closed.
    specs=[
        dg.AssetSpec(key, description=text, group_name=GROUP, kinds={"parquet"}, deps=["engine_recordings"])
        for key, text in _RAW.items()
    ],
    check_specs=[
        dg.AssetCheckSpec("bars_quality", asset="raw_bars", blocking=True, description="GX suite on the day's bars."),
        dg.AssetCheckSpec("news_quality", asset="raw_news", blocking=True, description="GX suite on the day's news."),
    ],
    partitions_def=DAILY,
    backfill_policy=ONE_RUN,
)
def raw_market_data(
    context: dg.AssetExecutionContext, source: SourceResource, postgres: PostgresResource
) -> Iterator[Any]:
    """Land each day of the configured source in the lake, then run the quality suites on it."""
    import pandas as pd

    from orchestration import lake, quality
    from orchestration.config import day_bounds_ns
    from orchestration.sources import load_days

    settings = source.settings()
    days = context.partition_keys
    landed: dict[str, list[Any]] = {t: [] for t in lake.RAW_TABLES}
    whole = load_days(settings, days, postgres.run) if settings.source == "synthetic" else None
    for day in days:
        frames = whole if whole is not None else load_days(settings, [day], postgres.run)
        start, end = day_bounds_ns(day)
        for table, frame in frames.items():
            if whole is not None:  # one simulation covers every day: cut out this one
                frame = frame[frame[_TIME[table]].between(start, end - 1)]
            lake.write_frame(lake.raw_path(settings.lake, table, day), frame)
            landed[table].append(frame)
        lake.mark_source(settings.lake, day, settings.source)
    counts = {t: sum(len(f) for f in frames) for t, frames in landed.items()}
    for table in lake.RAW_TABLES:
        yield dg.MaterializeResult(
            asset_key=f"raw_{table}",
            metadata={
                "rows": counts[table],
                "days": len(days),
                "source": settings.source,
                "path": dg.MetadataValue.path(str(lake.raw_path(settings.lake, table, days[0]).parent)),
            },
        )
    bars, news = (pd.concat(landed[t], ignore_index=True) for t in ("bars", "news"))  # what was just written
    band = expected_bar_rows(settings, days)
    report = quality.validate_bars(bars, settings.gx_root, expected_rows=band, suite="raw_bars")
    context.log.info(report.summary())
    yield quality_result("raw_bars", "bars_quality", report)
    news_report = quality.validate_news(news, settings.gx_root, suite="raw_news")
    context.log.info(news_report.summary())
    yield quality_result("raw_news", "news_quality", news_report)


def expected_bar_rows(settings: Any, days: list[str]) -> tuple[int, int] | None:
    """The band of bar rows ``days`` should hold.

    Synthetic: every symbol has a bar for nearly every slot it covers (a slot without a
    trade has no bar). Other sources: half to one and a half times the median bars per open
    slot of the same source's last 30 days landed before, times the open slots of ``days``
    (a closed market's weekend expects nothing), when there is such history.
    """
    from orchestration import lake
    from orchestration.config import day_bounds_ns

    step = settings.bar_seconds * 10**9
    if settings.source == "synthetic":
        first = settings.synthetic_start_ns()
        last = first + int(settings.synthetic_days * 86_400) * 10**9
        slots = 0
        for day in days:
            start, end = day_bounds_ns(day)
            slots += max(0, min(end, last) - max(start, first)) // step
        full = settings.synthetic_symbols * slots
        return int(full * 0.9), full
    history = [d for d in lake.landed_days(settings.lake, source=settings.source) if d < days[0]][-30:]
    sessions = settings.feature_set("price").sessions()

    def open_slots(day_list: list[str]) -> int:
        return sum(len(sessions.slots(day_bounds_ns(d)[0], day_bounds_ns(d)[1] - step)) for d in day_list)

    history_slots = open_slots(history)
    if not history_slots:
        return None
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(lake.raw_path(settings.lake, "bars", d)).metadata.num_rows for d in history)
    expected = rows / history_slots * open_slots(days)
    return int(expected * 0.5), int(expected * 1.5) + 1


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "trades",
            deps=["raw_trades"],
            group_name=GROUP,
            kinds={"postgres"},
            description="Trades in PostgreSQL (daily table partitions).",
        ),
        dg.AssetSpec(
            "bars",
            deps=["raw_bars"],
            group_name=GROUP,
            kinds={"postgres"},
            description="Checked 1-minute bars in PostgreSQL: what features are built from.",
        ),
        dg.AssetSpec(
            "news",
            deps=["raw_news"],
            group_name=GROUP,
            kinds={"postgres"},
            description="Checked headlines in PostgreSQL.",
        ),
    ],
    partitions_def=DAILY,
    backfill_policy=ONE_RUN,
)
def market_data_tables(
    context: dg.AssetExecutionContext, source: SourceResource, postgres: PostgresResource
) -> Iterator[dg.MaterializeResult]:
    """Store the checked days in PostgreSQL, replacing what those days held (idempotent)."""
    from feature_store.market_data import MarketDataStore
    from orchestration import lake

    settings = source.settings()
    days = context.partition_keys
    frames = {t: lake.read_raw(settings.lake, t, days) for t in ("trades", "bars", "news")}

    async def store(pool: Any) -> dict[str, int]:
        market = MarketDataStore(pool)
        return {
            "trades": await market.write_trades(frames["trades"], replace=True),
            "bars": await market.write_bars(frames["bars"], replace=True),
            "news": await market.write_news(frames["news"], replace=True),
        }

    rows = postgres.run(store)
    context.log.info(f"stored {rows} for {days[0]}..{days[-1]}")
    for table, n in rows.items():
        yield dg.MaterializeResult(asset_key=table, metadata={"rows": n, "days": len(days)})
