"""``whole_loop`` on the Celery executor: two local workers, the platform's Valkey as broker and
result backend, the PostgreSQL instance of ``deploy/celery`` shared by the run and the workers."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from feature_store.services import ServiceUrls
from tests.orchestration.pipeline_helpers import dagster, pipeline_env

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")]
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "celery"


@pytest.mark.timeout(1800)
def test_whole_loop_runs_on_two_celery_workers(tmp_path: Path, service_urls: ServiceUrls, scratch_redis) -> None:
    broker = scratch_redis(9)
    with pipeline_env(tmp_path / "rrr", service_urls, redis_url=scratch_redis(10)) as env:
        home = Path(env["DAGSTER_HOME"])
        shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
        env.update(
            DAGSTER_PG_URL=env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg2://", 1),
            RRR_DAGSTER_EXECUTOR="celery",
            RRR_CELERY_BROKER=broker,
            RRR_CELERY_BACKEND=broker,
            # dagster-celery starts `celery` from PATH, as in an activated virtual environment.
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        celery = str(Path(sys.executable).with_name("dagster-celery"))
        logs = [tmp_path / f"worker{i}.log" for i in (1, 2)]
        workers = [
            subprocess.Popen(
                [
                    celery,
                    "worker",
                    "start",
                    "-A",
                    "dagster_celery.app",
                    "-y",
                    str(DEPLOY / "celery.yaml"),
                    "-n",
                    f"w{i}",
                    "--",
                    "--concurrency",
                    "1",
                ],
                env=env,
                cwd=ROOT,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for i, log in zip((1, 2), logs, strict=True)
        ]
        try:
            deadline = time.monotonic() + 120
            while not all("ready." in log.read_text(errors="replace") for log in logs):
                assert all(w.poll() is None for w in workers), [log.read_text()[-2000:] for log in logs]
                assert time.monotonic() < deadline, [log.read_text()[-2000:] for log in logs]
                time.sleep(0.5)
            ran = dagster(env, "job", "execute", "-m", "orchestration.definitions", "-j", "whole_loop",
                          "-c", str(DEPLOY / "celery.yaml"), timeout=1500)  # fmt: skip
        finally:
            for worker in workers:
                if worker.poll() is None:
                    os.killpg(worker.pid, signal.SIGTERM)
            for worker in workers:
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
        said = [log.read_text(errors="replace") for log in logs]
        assert ran.returncode == 0, (ran.stdout[-3000:], ran.stderr[-3000:], [s[-2000:] for s in said])
        os.environ["DAGSTER_PG_URL"] = env["DAGSTER_PG_URL"]
        try:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                assert type(instance.run_storage).__name__ == "PostgresRunStorage"
                (run,) = instance.get_runs()
                assert run.job_name == "whole_loop" and run.status == dg.DagsterRunStatus.SUCCESS
                records = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
                steps = {r.step_key for r in records}
        finally:
            del os.environ["DAGSTER_PG_URL"]
    # Every step ran as a Celery task on the workers, both of which took some.
    done = [len(re.findall(r"Task execute_plan\[[^\]]+\] succeeded", s)) for s in said]
    assert sum(done) == len(steps) > 20, (done, len(steps))
    assert all(n > 0 for n in done), done
