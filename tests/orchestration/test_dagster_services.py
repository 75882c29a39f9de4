"""``dagster dev`` serves the whole code location, and the PostgreSQL instance stores runs and schedules."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from tests.orchestration.pipeline_helpers import untraced

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")]
ROOT = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).with_name("dagster"))

_QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    name
    jobs { name }
    schedules { name }
    sensors { name }
    assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name } } } }
} } } }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, redis_url: str, database_url: str) -> dict[str, str]:
    return untraced(
        {
            **os.environ,
            "RRR_HOME": str(tmp_path / "home"),
            "DAGSTER_HOME": str(tmp_path / "dagster"),
            "BENTOML_HOME": str(tmp_path / "bentoml"),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "PYTHONWARNINGS": "ignore",
        }
    )


def test_dagster_dev_serves_every_asset_check_schedule_and_sensor_and_stops_cleanly(
    tmp_path: Path, scratch_redis, database_url: str
) -> None:
    import orchestration.definitions as d

    env = _env(tmp_path, scratch_redis(10), database_url)
    Path(env["DAGSTER_HOME"]).mkdir()
    port = _free_port()
    log = (tmp_path / "dev.log").open("w")
    process = subprocess.Popen(
        [DAGSTER, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        nodes = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and nodes is None:
            assert process.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql",
                    data=json.dumps({"query": _QUERY}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=10) as response:
                    nodes = json.loads(response.read())["data"]["repositoriesOrError"].get("nodes") or None
            except OSError:
                time.sleep(1.0)
        assert nodes, "the webserver never answered: " + (tmp_path / "dev.log").read_text()[-3000:]
        (repo,) = nodes
        graph = d.defs.resolve_asset_graph()
        served_assets = {"/".join(a["assetKey"]["path"]) for a in repo["assetNodes"]}
        assert served_assets == {k.to_user_string() for k in graph.get_all_asset_keys()}
        served_checks = {c["name"] for a in repo["assetNodes"] for c in a["assetChecksOrError"].get("checks", [])}
        assert served_checks == {k.name for k in graph.asset_check_keys}
        assert {s["name"] for s in repo["schedules"]} == {"feature_schedule", "daily_retrain"}
        assert {s["name"] for s in repo["sensors"]} == {"new_market_data", "model_quality", "run_failure_alert"}
        jobs = {j["name"] for j in repo["jobs"]}
        assert {"whole_loop", "market_data_job", "feature_job", "retrain_job", "rollback_job"} <= jobs
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            log.close()
    assert process.returncode is not None


def test_the_postgres_instance_stores_runs_event_logs_and_schedules(
    tmp_path: Path, scratch_redis, fresh_database_url: str
) -> None:
    env = _env(tmp_path, scratch_redis(10), fresh_database_url)
    home = Path(env["DAGSTER_HOME"])
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env["DAGSTER_PG_URL"] = fresh_database_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    started = subprocess.run(
        [DAGSTER, "schedule", "start", "daily_retrain", "-w", "workspace.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-3000:]
    # A run that fails fast with a clear message (an unknown model) is still a run with its events.
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"ops": {"rollback_models": {"config": {"model": "nope"}}}}))  # JSON is YAML
    ran = subprocess.run(
        [DAGSTER, "job", "execute", "-m", "orchestration.definitions", "-j", "rollback_job", "-c", str(config)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert ran.returncode != 0 and "unknown model 'nope'" in ran.stdout + ran.stderr
    os.environ["DAGSTER_PG_URL"] = env["DAGSTER_PG_URL"]
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            (run,) = instance.get_runs()
            assert run.job_name == "rollback_job" and run.status == dg.DagsterRunStatus.FAILURE
            assert instance.all_logs(run.run_id)
            states = [s.name for s in instance.all_instigator_state()]
            assert "daily_retrain" in states
    finally:
        del os.environ["DAGSTER_PG_URL"]
