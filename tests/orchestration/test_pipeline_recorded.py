"""The whole loop on what the engine recorded: a replay exchange streamed on its market clock,
recorded into PostgreSQL, then ``RRR_SOURCE=recorded``.

The market clock runs ahead of the wall clock (hours of market a second), so the recorded
days include tomorrow: the partitions must still cover every day the engine recorded.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from feature_store.services import ServiceUrls
from tests.orchestration.pipeline_helpers import check_result, dagster, instance, latest, pipeline_env

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")]


def _stored_bars(database_url: str) -> int:
    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            exists = await conn.fetchval("SELECT to_regclass('bars') IS NOT NULL")
            return int(await conn.fetchval("SELECT count(*) FROM bars")) if exists else 0
        finally:
            await conn.close()

    return asyncio.run(count())


@pytest.fixture(scope="module")
def recorded_loop(
    tmp_path_factory: pytest.TempPathFactory, service_urls: ServiceUrls, scratch_redis
) -> Iterator[tuple[dict, str]]:
    home = tmp_path_factory.mktemp("recorded")
    # The engine writes its live features online: keep them in a Redis database of their own,
    # away from the keys of the other tests and of a user's demo.
    redis_url = scratch_redis(9)
    with pipeline_env(home / "rrr", service_urls, redis_url=redis_url, RRR_SOURCE="recorded") as env:
        # Record until 1,500 one-minute bars are stored (500 per symbol: enough for the models,
        # less than the longest lookback of 720), however fast this machine replays.
        record = [
            sys.executable, "-m", "engine", "record", "--replay", "3", "--speed", "0", "--market-clock", "--no-books",
        ]  # fmt: skip
        process = subprocess.Popen(record, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 300
            while _stored_bars(env["DATABASE_URL"]) < 1500:
                assert process.poll() is None, process.communicate()[1][-3000:]
                assert time.monotonic() < deadline, "fewer than 1,500 bars recorded in 300 s"
                time.sleep(0.5)
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, err[-3000:]
        run = dagster(env, "job", "execute", "-m", "orchestration.definitions", "-j", "whole_loop")
        yield env, run.stdout + run.stderr


def test_every_recorded_day_is_a_partition_and_the_loop_runs_on_it(recorded_loop: tuple[dict, str]) -> None:
    env, log = recorded_loop
    store = instance(env)
    raw = latest(store, "raw_bars")
    assert raw is not None, log[-4000:]
    assert raw["source"] == "recorded" and int(raw["rows"]) > 1000  # type: ignore[call-overload]
    from orchestration.resources import PostgresResource

    recorded = PostgresResource(url=env["DATABASE_URL"]).run(
        lambda pool: pool.fetchval("SELECT count(DISTINCT ts_ns / 86400000000000) FROM trades")
    )
    assert int(raw["days"]) == recorded >= 1  # type: ignore[call-overload]
    for key in ("bars", "offline_features", "online_features", "price_training_set", "risk_training_set"):
        assert latest(store, key) is not None, f"{key} not materialized:\n{log[-4000:]}"
    # The row-count band came from this source's own history (none yet: the check says so by passing).
    bars_check = check_result(store, "raw_bars", "bars_quality")
    assert bars_check is not None and bars_check[0], bars_check
    # Too little history for the longest lookbacks (720 bars): reported as warming up, not a crash.
    price_quality = check_result(store, "offline_features", "price_features_quality")
    assert price_quality is not None and price_quality[0], price_quality
    assert "trade_rate_30_720" in price_quality[1].get("warming_up", []), price_quality[1]
    plan = str(latest(store, "offline_features")["plan"])  # type: ignore[index]
    assert "trade counts and taker volume" in plan and "cross-sectional" in plan and "no headlines" in plan


def test_the_price_model_is_promoted_or_stopped_by_a_named_gate(recorded_loop: tuple[dict, str]) -> None:
    env, log = recorded_loop
    store = instance(env)
    candidate = latest(store, "price_model_candidate")
    assert candidate is not None, log[-4000:]
    assert candidate["forecasts"] == "cross-sectional" and candidate["interval_s"] == 60
    assert "trade_rate_30_720" in candidate["inputs_left_out"]  # type: ignore[operator]
    result = check_result(store, "price_model_candidate", "price_model_gates")
    assert result is not None
    passed, meta = result
    if passed:
        strategy = check_result(store, "price_strategy_backtest", "price_strategy_gates")
        assert strategy is not None
        if strategy[0]:
            assert latest(store, "price_model_production") is not None
        else:
            assert strategy[1]["failed_gates"] and latest(store, "price_model_production") is None
    else:
        assert meta["failed_gates"] and all(gate in meta for gate in meta["failed_gates"])  # type: ignore[union-attr]
        assert latest(store, "price_model_production") is None
    risk = check_result(store, "risk_model_candidate", "risk_model_gates")
    assert risk is not None
