from __future__ import annotations

import pytest

from orchestration.config import OrchestrationSettings
from orchestration.errors import ConfigError


def test_defaults_describe_the_default_synthetic_market(tmp_path) -> None:
    s = OrchestrationSettings.from_env({"RRR_HOME": str(tmp_path)})
    assert (s.synthetic_symbols, s.synthetic_days, s.synthetic_seed) == (20, 30.0, 7)
    assert s.dagster_home == tmp_path / "dagster"


def test_bad_numbers_are_named() -> None:
    with pytest.raises(ConfigError, match="RRR_SYNTHETIC"):
        OrchestrationSettings.from_env({"RRR_SYNTHETIC_DAYS": "thirty"})
    with pytest.raises(ConfigError, match="symbol"):
        OrchestrationSettings.from_env({"RRR_SYNTHETIC_SYMBOLS": "0"})


def test_bar_length_calendar_horizon_and_feature_choice_are_checked() -> None:
    s = OrchestrationSettings.from_env({"RRR_BAR_SECONDS": "3600", "RRR_CALENDAR": "XNYS", "RRR_HORIZON_BARS": "5"})
    assert (s.bar_seconds, s.calendar, s.horizon_bars, s.features) == (3600, "XNYS", 5, "auto")
    fs = s.feature_set("price_ohlcv")
    assert (fs.interval_s, fs.calendar) == (3600, "XNYS")
    with pytest.raises(ConfigError, match="RRR_BAR_SECONDS must divide a day"):
        OrchestrationSettings.from_env({"RRR_BAR_SECONDS": "7"})
    with pytest.raises(ConfigError, match=r"RRR_CALENDAR: .*unknown session calendar 'XXXX'"):
        OrchestrationSettings.from_env({"RRR_CALENDAR": "XXXX"})
    with pytest.raises(ConfigError, match="RRR_FEATURES must be auto, full or ohlcv"):
        OrchestrationSettings.from_env({"RRR_FEATURES": "all"})
    with pytest.raises(ConfigError, match="RRR_HORIZON_BARS must be >= 1"):
        OrchestrationSettings.from_env({"RRR_HORIZON_BARS": "0"})
