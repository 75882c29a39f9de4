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


def test_settings_refuse_a_relative_home_inside_a_bento(tmp_path, monkeypatch) -> None:
    """BentoML serves a Bento from its own folder, where ./.rrr holds no models: RRR_HOME must be said."""
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "bento.yaml").write_text("service: serving.service:ModelService\n")
    monkeypatch.chdir(src)
    with pytest.raises(ConfigError, match=r"RRR_HOME is not set.*inside the Bento"):
        ServingSettings.from_env({})
    assert ServingSettings.from_env({"RRR_HOME": str(tmp_path / "home")}).bentoml_home == tmp_path / "home" / "bentoml"


def test_clients_find_the_service_where_it_listens(monkeypatch) -> None:
    from engine.config import EngineConfig
    from serving.client import ModelClient
    from serving.config import service_url

    assert service_url({}) == "http://127.0.0.1:3000"
    assert service_url({"RRR_SERVING_PORT": "3002"}) == "http://127.0.0.1:3002"
    assert service_url({"RRR_SERVING_PORT": "3002", "RRR_SERVING_URL": "http://models:8000/"}) == "http://models:8000"
    monkeypatch.setenv("RRR_SERVING_PORT", "3004")
    monkeypatch.delenv("RRR_SERVING_URL", raising=False)
    assert ModelClient().url == "http://127.0.0.1:3004"  # the engine's default too
    assert EngineConfig.from_env().serving_url == "http://127.0.0.1:3004"
    assert ServingSettings.from_env().url == "http://127.0.0.1:3004"
