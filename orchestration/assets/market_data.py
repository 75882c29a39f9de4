"""Market data assets: what the configured source produced, stored in PostgreSQL."""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

import asyncio

import dagster as dg


@dg.asset(group_name="market_data", compute_kind="python")
def synthetic_market(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Trades, 1-minute bars and news of the synthetic market, stored in the offline store."""
    # Imported here so that the code location loads in about a second.
    from feature_store.database import open_pool
    from feature_store.ingest import store_synthetic_market
    from feature_store.market_data import MarketDataStore
    from feature_store.services import resolve_service_urls
    from feature_store.sources.synthetic import SyntheticMarketConfig
    from orchestration.config import OrchestrationSettings

    settings = OrchestrationSettings.from_env()
    config = SyntheticMarketConfig(
        symbols=settings.synthetic_symbols, days=settings.synthetic_days, seed=settings.synthetic_seed
    )

    async def run() -> dict[str, float]:
        pool = await open_pool(resolve_service_urls().database_url)
        try:
            market, summary = await store_synthetic_market(MarketDataStore(pool), config)
        finally:
            await pool.close()
        return {
            **{f"{k}_rows": float(v) for k, v in summary.rows.items()},
            **{f"{k}_s": round(v, 3) for k, v in summary.seconds.items()},
            "oracle_rank_ic": round(market.oracle_ic(), 5),
        }

    metadata = asyncio.run(run())
    context.log.info(f"stored synthetic market: {metadata}")
    return dg.MaterializeResult(metadata=metadata)
