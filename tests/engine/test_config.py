from __future__ import annotations

import pytest

from engine.config import EngineSettings
from engine.errors import ConfigError


def test_engine_trades_on_paper_by_default() -> None:
    s = EngineSettings.from_env({})
    assert (s.mode, s.bar_seconds, s.serving_url) == ("paper", 60, "http://127.0.0.1:3000")


def test_bad_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="RRR_ENGINE_MODE"):
        EngineSettings.from_env({"RRR_ENGINE_MODE": "yolo"})
    with pytest.raises(ConfigError, match="RRR_ENGINE_BAR_SECONDS"):
        EngineSettings.from_env({"RRR_ENGINE_BAR_SECONDS": "0"})


def test_the_engine_computes_the_sets_the_served_models_read_beside_those_asked_for() -> None:
    from engine.trade import online_sets

    names = [fs.name for fs in online_sets(["price", "risk", "sentiment"], ("price_ohlcv", "risk", "unknown"))]
    assert names == ["price", "risk", "sentiment", "price_ohlcv"]
