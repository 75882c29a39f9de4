"""The Dagster code location loads fast, without heavy imports, and every job resolves."""

from __future__ import annotations

import json
import subprocess
import sys


def test_definitions_load_without_heavy_imports_and_every_job_resolves() -> None:
    code = (
        "import sys\n"
        "import orchestration.definitions as d\n"
        "graph = d.defs.resolve_asset_graph()\n"
        "jobs = [d.defs.resolve_job_def(j).name for j in "
        "('whole_loop', 'market_data_job', 'feature_job', 'retrain_job', 'rollback_job', 'observe_engine')]\n"
        "heavy = [m for m in ('torch', 'great_expectations', 'bentoml', 'asyncpg', 'transformers') if m in sys.modules]\n"
        "groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}\n"
        "print(json.dumps({'keys': sorted(k.to_user_string() for k in graph.get_all_asset_keys()), 'heavy': heavy,\n"
        "  'jobs': jobs, 'groups': sorted(groups), 'checks': sorted(k.name for k in graph.asset_check_keys)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(out.stdout)
    assert loaded["heavy"] == []
    assert loaded["groups"] == ["engine", "features", "market_data", "models", "production", "training", "validation"]
    assert {"raw_bars", "bars", "offline_features", "online_features", "price_training_set"} <= set(loaded["keys"])
    assert {f"{m}_model_{s}" for m in ("price", "sentiment", "risk") for s in ("candidate", "production")} <= set(
        loaded["keys"]
    )
    assert {"bars_quality", "news_quality", "price_model_gates", "risk_model_gates", "sentiment_model_gates"} <= set(
        loaded["checks"]
    )
