"""The Prometheus alert rules and the Grafana dashboard in ``deploy/`` name metrics the engine
really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _engine_metrics() -> set[str]:
    import engine.metrics as metrics

    text = Path(metrics.__file__).read_text()
    names = set(re.findall(r'"(rrr_engine_[a-z0-9_]+)"', text))
    names |= {f"rrr_engine_{n}" for n in re.findall(r'\(\s*"([a-z0-9_]+)",\s*"', text)}
    names |= {f"rrr_engine_feed_{n}" for n in metrics._FEED_COUNTERS}
    names |= {f"rrr_engine_{n}" for n in metrics._PLANE_COUNTERS}
    return names


def test_alert_rules_and_dashboard_use_exported_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "engine_alerts.yml").read_text())
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    for wanted in ("EngineFeedStale", "EngineTickToDecisionSlow", "EngineDrawdown", "EngineCircuitBreakerOpen",
                   "EngineWriteBacklog"):  # fmt: skip
        assert wanted in alerts
    dashboard = json.loads((DEPLOY / "grafana" / "engine_dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    known = _engine_metrics()
    used = {m for e in [*alerts.values(), *exprs] for m in re.findall(r"rrr_engine_[a-z0-9_]+", e)}
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
    assert used and used <= known, sorted(used - known)
