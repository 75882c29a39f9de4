from __future__ import annotations

import subprocess
import sys

import pytest

from serving.config import ServingSettings
from serving.errors import ConfigError


def test_service_binds_to_loopback_by_default(tmp_path) -> None:
    s = ServingSettings.from_env({"RRR_HOME": str(tmp_path)})
    assert (s.host, s.port, s.api_key) == ("127.0.0.1", 3000, None)
    assert s.bentoml_home == tmp_path / "bentoml"
    assert s.tracing is False  # spans only when asked for (they need an exporter to be of use)
    assert ServingSettings.from_env({"RRR_SERVING_TRACING": "true"}).tracing is True
    with pytest.raises(ConfigError, match="RRR_SERVING_TRACING"):
        ServingSettings.from_env({"RRR_SERVING_TRACING": "sometimes"})


def test_bad_port_is_named() -> None:
    with pytest.raises(ConfigError, match="RRR_SERVING_PORT"):
        ServingSettings.from_env({"RRR_SERVING_PORT": "http"})
    with pytest.raises(ConfigError, match="RRR_SERVING_PORT"):
        ServingSettings.from_env({"RRR_SERVING_PORT": "70000"})


def test_importing_serving_is_light() -> None:
    code = "import sys, serving; print([m for m in ('torch', 'bentoml') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
