from __future__ import annotations

import subprocess
import sys

import pytest

from engine.config import BarInterval, EngineConfig
from engine.errors import ConfigError


def test_engine_trades_on_paper_by_default() -> None:
    c = EngineConfig.from_env({})
    assert (c.mode, c.interval, c.namespace, c.serving_url) == ("paper", BarInterval(60), None, "http://127.0.0.1:3000")
    assert EngineConfig.from_env({"RRR_BAR_SECONDS": "3600"}, interval=5).interval.ns == 5 * 10**9


def test_bad_settings_are_named_and_live_mode_is_refused_not_paper_traded() -> None:
    with pytest.raises(ConfigError, match="RRR_ENGINE_MODE"):
        EngineConfig.from_env({"RRR_ENGINE_MODE": "yolo"})
    with pytest.raises(ConfigError, match="RRR_ENGINE_BAR_SECONDS"):
        EngineConfig.from_env({"RRR_ENGINE_BAR_SECONDS": "0"})
    with pytest.raises(ConfigError, match="RRR_BAR_SECONDS"):
        EngineConfig.from_env({"RRR_BAR_SECONDS": "1.5"})
    with pytest.raises(ConfigError, match="paper only"):
        EngineConfig.from_env({"RRR_ENGINE_MODE": "live"})
    with pytest.raises(ConfigError, match="namespace"):
        EngineConfig(namespace="Bad Name")
    with pytest.raises(ConfigError, match="whole number"):
        BarInterval(0)
    done = subprocess.run(
        [sys.executable, "-m", "engine", "status"], env={"RRR_ENGINE_MODE": "live", "PATH": "/usr/bin"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "paper only" in done.stderr


def test_the_engine_computes_the_sets_the_served_models_read_beside_those_asked_for() -> None:
    from engine.trade import online_sets

    names = [fs.name for fs in online_sets(["price", "risk", "sentiment"], ("price_ohlcv", "risk", "unknown"))]
    assert names == ["price", "risk", "sentiment", "price_ohlcv"]


def test_a_run_whose_feed_never_connects_exits_1_and_says_why(fresh_database_url: str, scratch_redis) -> None:
    import os
    import subprocess
    import sys

    from serving.launcher import free_port

    closed = free_port()  # nothing listens there
    env = {**os.environ, "DATABASE_URL": fresh_database_url, "REDIS_URL": scratch_redis(15), "PYTHONWARNINGS": "ignore"}
    argv = [
        sys.executable, "-m", "engine", "run", "--coinbase-url", f"ws://127.0.0.1:{closed}/", "--symbols", "BTC-USD",
        "--duration", "3", "--warmup-bars", "0", "--metrics-port", "-1", "--quiet", "--account", "noconnect",
        "--serving-url", f"http://127.0.0.1:{free_port()}",
    ]  # fmt: skip
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no feed ever connected (coinbase: ") and "Connect call failed" in last, last


def test_a_run_that_never_gets_a_forecast_exits_1_and_says_why(fresh_database_url: str, scratch_redis) -> None:
    import os
    import subprocess
    import sys

    from serving.launcher import free_port

    env = {**os.environ, "DATABASE_URL": fresh_database_url, "REDIS_URL": scratch_redis(15), "PYTHONWARNINGS": "ignore"}
    argv = [
        sys.executable, "-m", "engine", "run", "--replay", "2", "--bar-seconds", "1", "--duration", "5",
        "--warmup-bars", "0", "--no-books", "--metrics-port", "-1", "--quiet", "--account", "noservice",
        "--serving-url", f"http://127.0.0.1:{free_port()}", "--model-timeout", "0.5",
    ]  # fmt: skip
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the model service gave no forecast at any of "), last


def test_help_shows_the_defaults() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "engine", "run", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "cash of a new account (default: 1000000)" in text and "(default: None)" not in text
