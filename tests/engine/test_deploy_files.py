"""The Prometheus alert rules and the Grafana dashboard in ``deploy/`` name series the engine
really exposes: read from its exposition (counters end in ``_total``, histograms in
``_bucket``/``_sum``/``_count``), not from the names in its source."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _engine_exposition(tmp_path: Path) -> str:
    """The text a running engine serves on ``/metrics``, from real components (no I/O started)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from engine.config import BarInterval
    from engine.dataplane import DataPlane
    from engine.feeds.client import NullSink
    from engine.feeds.venues import CoinbaseFeed
    from engine.metrics import EngineCollector
    from engine.recorder import Recorder
    from engine.trading.breaker import CircuitBreaker
    from engine.trading.core import TradingCore
    from engine.trading.execution import PaperBroker
    from engine.trading.portfolio import Portfolio
    from engine.trading.risk import PreTradeRisk
    from engine.trading.trader import Trader
    from feature_store.features.catalog import FEATURE_SETS

    feed = CoinbaseFeed(["BTC-USD"], NullSink(), url="ws://127.0.0.1:9/")
    feed.stats.dropped["bad_json"] = 1  # a labelled family with a sample
    plane = DataPlane(["BTC-USD"], list(FEATURE_SETS.values()), online=None, recorder=None, interval=BarInterval(1))
    recorder = Recorder("postgresql://127.0.0.1:9/none", spool_dir=tmp_path / "spool")
    core = TradingCore("t", Portfolio(Decimal(1000)), PaperBroker(), PreTradeRisk())
    core.stats.denials_by_check["stale_data"] = 1
    core.stats.holds_by_reason["inside_band"] = 1
    trader = Trader(core, None, None, interval=BarInterval(1), grace_ns=0, breaker=CircuitBreaker(3, 1.0))  # type: ignore[arg-type]
    registry = CollectorRegistry()
    registry.register(EngineCollector([feed], plane, recorder, trader))
    return generate_latest(registry).decode()


def _series(exposition: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line and not line.startswith("#")}


def _used(expressions: list[str]) -> set[str]:
    return {m for e in expressions for m in re.findall(r"rrr_engine_[a-z0-9_]+", e)}


def test_alert_rules_and_dashboard_name_series_the_engine_exposes(tmp_path: Path) -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "engine_alerts.yml").read_text())
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    for wanted in ("EngineFeedStale", "EngineTickToDecisionSlow", "EngineDrawdown", "EngineCircuitBreakerOpen",
                   "EngineWriteBacklog", "EngineDenialsSpike"):  # fmt: skip
        assert wanted in alerts
    dashboard = json.loads((DEPLOY / "grafana" / "engine_dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exposed = _series(_engine_exposition(tmp_path))
    assert "rrr_engine_orders_total" in exposed and "rrr_engine_orders" not in exposed  # the text format's rule
    used = _used([*alerts.values(), *exprs])
    assert used and used <= exposed, sorted(used - exposed)


def test_the_alerts_unit_test_feeds_real_series_and_passes_promtool(tmp_path: Path) -> None:
    spec = yaml.safe_load((DEPLOY / "prometheus" / "engine_alerts_test.yml").read_text())
    series = [s["series"] for t in spec["tests"] for s in t["input_series"]]
    assert _used(series) <= _series(_engine_exposition(tmp_path)), "the unit test feeds series the engine never exports"
    tested = {a["alertname"] for t in spec["tests"] for a in t["alert_rule_test"]}
    assert {"EngineFeedStale", "EngineDenialsSpike"} <= tested
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed: the alerts' unit test was checked for real series names only")
    out = subprocess.run(
        [promtool, "test", "rules", "engine_alerts_test.yml"],
        cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
