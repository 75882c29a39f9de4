"""The whole Dagster graph on the default data (20 symbols x 30 days), as a user runs it.

``pipeline_wall_s`` is the wall time of the documented command::

    dagster job execute -m orchestration.definitions -j whole_loop

(in-process executor, full model settings) against the 6-minute target, in a scratch
database, data folder, Dagster instance and model store. Each step's own time, read back
from the instance, is reported beside the same budget so the slow steps are visible.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results_file import Figure, write_results
from benchmarks.scratch_database import scratch_database

TARGET_S = 360.0


async def _run() -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="rrr-bench-pipeline-") as home:
        async with scratch_database() as url:
            from feature_store.services import resolve_service_urls

            env = {
                **os.environ,
                "RRR_HOME": home,
                "DAGSTER_HOME": str(Path(home) / "dagster"),
                "BENTOML_HOME": str(Path(home) / "bentoml"),
                "DATABASE_URL": url,
                "REDIS_URL": resolve_service_urls().redis_url,
                "PYTHONWARNINGS": "ignore",
            }
            Path(env["DAGSTER_HOME"]).mkdir()
            (Path(env["DAGSTER_HOME"]) / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
            command = [
                str(Path(sys.executable).with_name("dagster")),
                "job", "execute", "-m", "orchestration.definitions", "-j", "whole_loop",
            ]  # fmt: skip
            started = time.perf_counter()
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - started
            if out.returncode != 0:
                print(out.stderr[-5000:], file=sys.stderr)
                raise SystemExit(f"the pipeline failed after {wall:.1f} s")
            import dagster as dg

            os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
            with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
                (run,) = instance.get_runs()
                steps = instance.get_run_step_stats(run.run_id)
    print(f"whole graph: {wall:.1f} s (target {TARGET_S:.0f} s)")
    figures = [Figure("pipeline_wall_s", wall, "s", "target, 2 cores, in-process executor", TARGET_S)]
    for step in sorted(steps, key=lambda s: (s.end_time or 0) - (s.start_time or 0), reverse=True):
        seconds = (step.end_time or 0) - (step.start_time or 0)
        print(f"  {step.step_key:28} {seconds:7.1f} s")
        figures.append(Figure(f"pipeline_step_{step.step_key}_s", seconds, "s", "whole-graph target", TARGET_S))
    return figures


def run() -> None:
    write_results("bench_pipeline", asyncio.run(_run()))


if __name__ == "__main__":
    run()
