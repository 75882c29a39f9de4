"""``make demo``: run the platform's loop end to end on embedded defaults and say what it did.

Today the loop is: start (or reuse) the embedded PostgreSQL and Redis servers, bring the
schema up to date, generate the synthetic market, store its trades, bars and news, import
the real exchange recordings when they are present, read the data back, compute the price,
risk and sentiment features offline into PostgreSQL with their labels, write the latest
feature windows to Redis (read back and checked), build a training set, and print a
summary with row counts and timings.

Environment: ``RRR_SYNTHETIC_SYMBOLS``, ``RRR_SYNTHETIC_DAYS``, ``RRR_SYNTHETIC_SEED`` size
the market; ``RRR_RECORDINGS_DIR`` points at exchange recordings (default
``../shared/data/exchange_recordings`` next to the project).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from feature_store.config import FeatureStoreSettings
from feature_store.database import open_pool
from feature_store.features import FEATURE_SETS, PRICE, SENTIMENT
from feature_store.ingest import import_recording, store_synthetic_market
from feature_store.market_data import MarketDataStore
from feature_store.materialize import materialize_features
from feature_store.online_layout import OnlineLayout
from feature_store.postgres_store import PostgresOfflineStore
from feature_store.redis_store import RedisOnlineStore
from feature_store.services import resolve_service_urls
from feature_store.sources.synthetic import SyntheticMarket, SyntheticMarketConfig
from orchestration.config import OrchestrationSettings

_RECORDINGS = ("coinbase_exchange_ws_2021-04-17.cryptofeed.txt", "binance_spot_ws_2021-10-12.cryptofeed.txt")


def _recordings_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "exchange_recordings"
    return Path(os.environ.get("RRR_RECORDINGS_DIR", str(default)))


async def run_demo() -> int:
    """Run the demo; return the process exit code."""
    wall = time.perf_counter()
    settings = FeatureStoreSettings.from_env()
    pipeline = OrchestrationSettings.from_env()
    started = time.perf_counter()
    urls = resolve_service_urls(settings)
    where = f"embedded under {settings.home}" if urls.embedded else "from DATABASE_URL/REDIS_URL"
    print(f"services: PostgreSQL and Redis {where} ({time.perf_counter() - started:.2f} s)")

    import redis.asyncio as aioredis

    client = aioredis.from_url(urls.redis_url)
    try:
        print(f"redis: PING -> {await client.ping()}")
    finally:
        await client.aclose()

    started = time.perf_counter()
    pool = await open_pool(urls.database_url)
    print(f"schema: migrations up to date ({time.perf_counter() - started:.2f} s)")
    try:
        store = MarketDataStore(pool)
        config = SyntheticMarketConfig(
            symbols=pipeline.synthetic_symbols, days=pipeline.synthetic_days, seed=pipeline.synthetic_seed
        )
        market, summary = await store_synthetic_market(store, config)
        sim_s = summary.seconds["simulate"]
        print(
            f"synthetic market: {config.symbols} symbols x {config.days:g} days, seed {config.seed}: "
            f"{len(market.trades):,} trades in {sim_s:.2f} s ({len(market.trades) / sim_s:,.0f} trades/s), "
            f"{len(market.news):,} headlines"
        )
        print(
            f"  oracle rank IC at {config.horizon_bars} bars: {market.oracle_ic():.4f} "
            "(the ceiling a price model is scored against)"
        )
        print(f"  bars built from trades: {summary.rows['bars']:,} in {summary.seconds['bars']:.2f} s")
        for table in ("trades", "bars", "news"):
            rows, seconds = summary.rows[table], summary.seconds[f"store_{table}"]
            print(f"  stored {table}: {rows:,} rows in {seconds:.2f} s ({rows / max(seconds, 1e-9):,.0f} rows/s)")

        recordings = _recordings_dir()
        if recordings.is_dir():
            for name in _RECORDINGS:
                path = recordings / name
                if path.exists():
                    rec = await import_recording(store, path)
                    print(
                        f"recording {name}: {rec.rows['trades']} trades -> {rec.rows['bars']} bars stored "
                        f"({rec.rows['malformed_messages']} malformed messages dropped)"
                    )
        else:
            print(f"recordings: skipped, {recordings} not found (set RRR_RECORDINGS_DIR)")

        started = time.perf_counter()
        bars = await store.read_bars(config.start_ns, config.start_ns + 86_400 * 10**9)
        print(f"read back: {len(bars):,} bars of day one in {time.perf_counter() - started:.2f} s")
        totals = {t: await store.count(t) for t in ("trades", "bars", "news")}
        print("database totals: " + ", ".join(f"{t} {n:,}" for t, n in totals.items()))
        await _features(store, PostgresOfflineStore(pool), urls.redis_url, config)
    finally:
        await pool.close()
    _models(market)
    print(f"demo finished in {time.perf_counter() - wall:.1f} s; `make stop` stops the servers")
    return 0


async def _features(
    market: MarketDataStore, offline: PostgresOfflineStore, redis_url: str, config: SyntheticMarketConfig
) -> None:
    from feature_store.training import build_training_set

    end_ns = config.start_ns + int(config.days * 86_400) * 10**9
    online = RedisOnlineStore.from_url(redis_url, OnlineLayout())
    try:
        sets = list(FEATURE_SETS.values())
        done = await materialize_features(market, offline, online, sets, config.start_ns, end_ns)
    finally:
        online.close()
    for fs in sets:
        rows, seconds = done.rows[f"features_{fs.name}"], done.seconds[f"compute_{fs.name}"]
        print(
            f"features {fs.name} (version {fs.version}, {len(fs)} features): {rows:,} rows computed offline in "
            f"{seconds:.2f} s ({rows * len(fs) / max(seconds, 1e-9):,.0f} bar-features/s), "
            f"stored in {done.seconds[f'offline_{fs.name}']:.2f} s"
        )
    print(f"labels: {done.rows['labels']:,} forward returns stored in {done.seconds['labels']:.2f} s")
    print(
        f"online features: the last 32 bars of {done.symbols} symbols written to Redis and read back identical "
        f"({done.seconds['online']:.2f} s, latest bar {done.latest_ts_ns})"
    )
    started = time.perf_counter()
    training = await build_training_set(offline, [PRICE, SENTIMENT], ["fwd_ret_15"], config.start_ns, end_ns)
    print(
        f"training set: {len(training):,} rows x {training.shape[1] - 2} columns (price + sentiment features, "
        f"15-bar forward return) built from the offline store in {time.perf_counter() - started:.2f} s"
    )


def _models(market: SyntheticMarket) -> None:
    """Train, validate, register and (gates permitting) promote the three models.

    ``RRR_DEMO_MODELS=small`` trains with the small settings the tests use.
    """
    from serving.training import FULL, SMALL, report_table, train_all

    settings = SMALL if os.environ.get("RRR_DEMO_MODELS", "full") == "small" else FULL
    started = time.perf_counter()
    reports = train_all(market, settings)
    print(f"models: trained, validated and stored in {time.perf_counter() - started:.1f} s")
    print(report_table(reports))
    p, s, r = reports["price"].metrics, reports["sentiment"].metrics, reports["risk"].metrics
    print(
        f"  price holdout: IC {p['ic']:.4f} (ridge {p['ridge_ic']:.4f}, oracle {p['oracle_ic']:.4f}, "
        f"share {p['oracle_share']:.2f}), rank IC {p['rank_ic']:.4f}, hit rate {p['hit_rate']:.3f}, "
        f"long-short Sharpe {p['ls_sharpe']:.2f} net of fees"
    )
    print(
        f"  sentiment: holdout macro-F1 {s['holdout_macro_f1']:.3f}; unseen phrasings {s['unseen_macro_f1']:.3f} "
        f"vs lexicon {s['lexicon_unseen_macro_f1']:.3f}; sentiment feature rank IC {s['sentiment_feature_rank_ic']:.4f}"
    )
    for index in ("SP500", "NASDAQ"):
        print(
            f"  risk {index}: VaR99 exceedances {r[f'{index}_exceedance_rate']:.4f} (Kupiec p "
            f"{r[f'{index}_kupiec_p']:.3g}); pinball {r[f'{index}_pinball']:.6f} vs EWMA "
            f"{r[f'{index}_ewma_pinball']:.6f}, GARCH {r[f'{index}_garch_pinball']:.6f} "
            f"(with its t quantile {r[f'{index}_garch_t_pinball']:.6f})"
        )
    print("  `python -m serving.registry list` shows the store")


def main() -> int:
    """Entry point of ``python -m orchestration.demo``."""
    return asyncio.run(run_demo())


if __name__ == "__main__":
    sys.exit(main())
