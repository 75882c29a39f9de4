"""Running the asset graph as a user runs it: its own data folder, database and Dagster instance."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from feature_store.services import ServiceUrls
from serving import launcher


@contextmanager
def pipeline_env(home: Path, service_urls: ServiceUrls, *, redis_url: str, **settings: str) -> Iterator[dict[str, str]]:
    """Environment of a pipeline run with its own ``RRR_HOME``, Dagster instance, BentoML store,
    database (dropped afterwards) and Redis database ``redis_url`` (a scratch one: see the
    ``scratch_redis`` fixture), small model settings, plus ``settings``."""
    from tests.conftest import create_database, drop_database

    url = create_database(service_urls.database_url)
    env = {
        **os.environ,
        "RRR_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "BENTOML_HOME": str(home / "bentoml"),
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "RRR_TRAIN": "small",
        "PYTHONWARNINGS": "ignore",
        # Nothing listens there: the run's model_service asset must not reach a user's running service.
        "RRR_SERVING_URL": f"http://127.0.0.1:{launcher.free_port()}",
        **settings,
    }
    untraced(env)
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    try:
        yield env
    finally:
        drop_database(url)


def untraced(env: dict[str, str]) -> dict[str, str]:
    """``env`` without line-coverage tracing for the processes it starts: a Dagster run spreads
    over a process per step, and tracing them all would add minutes to every pipeline test."""
    env.pop("COVERAGE_PROCESS_CONFIG", None)
    env.pop("COVERAGE_PROCESS_START", None)
    return env


def dagster(env: dict[str, str], *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """Run the ``dagster`` CLI of this environment."""
    command = [str(Path(sys.executable).with_name("dagster")), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=Path.cwd())


def instance(env: dict[str, str]) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])


def latest(store: dg.DagsterInstance, key: str) -> dict[str, object] | None:
    """Metadata of the latest materialization of ``key`` (None if never materialized)."""
    event = store.get_latest_materialization_event(dg.AssetKey(key))
    if event is None or event.asset_materialization is None:
        return None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def check_result(store: dg.DagsterInstance, asset: str, check: str) -> tuple[bool, dict[str, object]] | None:
    """``(passed, metadata)`` of the latest evaluation of a check (None if it never ran)."""
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    record = store.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    if record is None or record.event is None:
        return None
    evaluation = record.event.dagster_event.event_specific_data  # type: ignore[union-attr]
    return bool(evaluation.passed), {k: v.value for k, v in evaluation.metadata.items()}
