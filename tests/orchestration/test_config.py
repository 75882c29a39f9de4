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
