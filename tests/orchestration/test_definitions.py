"""The Dagster code location loads fast and materializes the market data asset."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
import pytest

from feature_store.services import ServiceUrls


def test_definitions_load_without_heavy_imports() -> None:
    code = (
        "import sys, orchestration.definitions as d\n"
        "keys = d.defs.resolve_asset_graph().get_all_asset_keys()\n"
        "heavy = [m for m in ('torch', 'great_expectations', 'bentoml', 'asyncpg') if m in sys.modules]\n"
        "print(sorted(k.to_user_string() for k in keys), heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "['synthetic_market'] []"


def test_synthetic_market_asset_materializes_into_postgres(
    monkeypatch: pytest.MonkeyPatch, database_url: str, service_urls: ServiceUrls
) -> None:
    from orchestration.assets.market_data import synthetic_market

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", service_urls.redis_url)
    monkeypatch.setenv("RRR_SYNTHETIC_SYMBOLS", "3")
    monkeypatch.setenv("RRR_SYNTHETIC_DAYS", "0.25")
    result = dg.materialize([synthetic_market], instance=dg.DagsterInstance.ephemeral())
    assert result.success
    (materialization,) = result.asset_materializations_for_node("synthetic_market")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["bars_rows"] == 3 * 6 * 60
    assert metadata["trades_rows"] >= metadata["bars_rows"]
