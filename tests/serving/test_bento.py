"""``bentoml build`` then ``bentoml serve rrr_models:latest``, as the README says: the Bento
serves the models of the platform's store, and without RRR_HOME it stops with what to set
instead of serving an empty store from inside the Bento."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from serving import launcher
from serving.config import ServingSettings
from serving.errors import ConfigError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BENTOML = str(Path(sys.executable).with_name("bentoml"))


def test_settings_refuse_a_relative_home_inside_a_bento(tmp_path, monkeypatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "bento.yaml").write_text("service: serving.service:ModelService\n")
    monkeypatch.chdir(src)
    with pytest.raises(ConfigError, match=r"RRR_HOME is not set.*inside the Bento"):
        ServingSettings.from_env({})
    assert ServingSettings.from_env({"RRR_HOME": str(tmp_path / "home")}).bentoml_home == tmp_path / "home" / "bentoml"


def test_a_built_bento_serves_the_store_it_is_pointed_at(tmp_path) -> None:
    home = tmp_path / "rrr"
    env = {
        **os.environ,
        "RRR_HOME": str(home),
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    seeded = subprocess.run(
        [sys.executable, "-m", "serving.sample_models"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    tags = json.loads(seeded.stdout)
    built = subprocess.run([BENTOML, "build"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    assert list((home / "bentoml" / "bentos" / "rrr_models").iterdir()), "the Bento is beside the models"

    bare = {k: v for k, v in env.items() if k != "RRR_HOME"}
    refused = subprocess.run(
        [BENTOML, "serve", "rrr_models:latest", "--port", str(launcher.free_port())],
        cwd=tmp_path, env=bare, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "RRR_HOME is not set" in refused.stdout + refused.stderr

    service = launcher.start(port=launcher.free_port(), env=env, log_path=tmp_path / "bento.log", target="rrr_models:latest")
    try:
        request = urllib.request.Request(
            f"{service.url}/versions", data=b"{}", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            versions = json.loads(resp.read())
    finally:
        service.stop()
    assert {name: m["tag"] for name, m in versions["models"].items()} == tags
    assert versions["models"]["price"]["interval_s"] == 60
