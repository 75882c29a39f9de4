"""The whole Dagster graph, as a user runs it, on three markets.

Each figure is the wall time of the documented command::

    dagster job execute -m orchestration.definitions -j whole_loop

(in-process executor, full model settings) in a scratch database, data folder, Dagster
instance and model store:

``pipeline_wall_s_60``          the default data (20 symbols x 30 days, 60-second bars), against the
                                6-minute target;
``pipeline_wall_s_3600``        the synthetic market at 3,600-second bars (20 symbols x 120 days);
``pipeline_wall_s_files_real``  the S&P 500 and NASDAQ daily bars shipped with ``arch`` (2011-2018) as
                                a ``files`` source on the NYSE calendar.

The last two are printed beside the 60-second figure of the same run. A run on real data may
end at a gate (the price model's significance, say): that is the loop working, and the
figure says which steps did not finish. Each step's own time is reported too.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.results_file import Figure, write_results
from benchmarks.scratch_database import scratch_database

TARGET_S = 360.0
REAL = {"start": "2011-01-01", "end": "2019-01-01"}


async def _whole_loop(label: str, settings: dict[str, str], *, index_files: bool = False) -> tuple[float, list, str]:
    """Wall time, step stats and outcome of one whole-loop run with ``settings``."""
    with tempfile.TemporaryDirectory(prefix="rrr-bench-pipeline-") as home:
        async with scratch_database() as url:
            from feature_store.services import resolve_service_urls, scratch_redis_db

            env = {
                **os.environ,
                "RRR_HOME": home,
                "DAGSTER_HOME": str(Path(home) / "dagster"),
                "BENTOML_HOME": str(Path(home) / "bentoml"),
                "DATABASE_URL": url,
                "REDIS_URL": scratch_redis_db(resolve_service_urls(), 10),  # never a user's keys
                "PYTHONWARNINGS": "ignore",
                **settings,
            }
            if index_files:
                from orchestration.real_data import export_index_bars

                export_index_bars(Path(home) / "source", REAL["start"], REAL["end"])
                env["RRR_SOURCE_DIR"] = str(Path(home) / "source")
            Path(env["DAGSTER_HOME"]).mkdir()
            (Path(env["DAGSTER_HOME"]) / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
            command = [
                str(Path(sys.executable).with_name("dagster")),
                "job", "execute", "-m", "orchestration.definitions", "-j", "whole_loop",
            ]  # fmt: skip
            started = time.perf_counter()
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - started
            import dagster as dg

            with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
                runs = instance.get_runs()
                if not runs:
                    print(out.stderr[-5000:], file=sys.stderr)
                    raise SystemExit(f"{label}: no run started ({wall:.1f} s)")
                steps = instance.get_run_step_stats(runs[0].run_id)
    failed = [s.step_key for s in steps if s.status is not None and s.status.value == "FAILURE"]
    skipped = [s.step_key for s in steps if s.status is not None and s.status.value == "SKIPPED"]
    outcome = "every step succeeded"
    if out.returncode != 0 or failed or skipped:
        outcome = f"failed: {', '.join(failed) or 'none'}; skipped: {', '.join(skipped) or 'none'}"
    print(f"{label}: {wall:.1f} s, {outcome}")
    for step in sorted(steps, key=_seconds, reverse=True)[:6]:
        print(f"  {step.step_key:28} {_seconds(step):7.1f} s")
    return wall, steps, outcome


def _seconds(step: Any) -> float:
    """A step's run time (0 for a step that never started)."""
    return (step.end_time - step.start_time) if step.start_time and step.end_time else 0.0


async def _run() -> list[Figure]:
    wall_60, steps, outcome = await _whole_loop("60-second bars", {})
    if outcome != "every step succeeded":
        raise SystemExit(f"the default pipeline failed: {outcome}")
    figures = [Figure("pipeline_wall_s_60", wall_60, "s", "target, 2 cores, in-process executor", TARGET_S)]
    for step in sorted(steps, key=_seconds, reverse=True):
        seconds = _seconds(step)
        figures.append(Figure(f"pipeline_step_{step.step_key}_s", seconds, "s", "whole-graph target", TARGET_S))
    hourly = {"RRR_BAR_SECONDS": "3600", "RRR_SYNTHETIC_DAYS": "120"}
    wall_3600, _, outcome = await _whole_loop("3,600-second bars", hourly)
    figures.append(Figure("pipeline_wall_s_3600", wall_3600, "s", f"pipeline_wall_s_60 ({outcome})", wall_60))
    real = {
        "RRR_SOURCE": "files",
        "RRR_BAR_SECONDS": "86400",
        "RRR_CALENDAR": "XNYS",
        "RRR_HORIZON_BARS": "5",
        "RRR_PARTITIONS_START": REAL["start"],
        "RRR_PARTITIONS_END": REAL["end"],
    }
    wall_real, _, outcome = await _whole_loop("real daily index bars", real, index_files=True)
    figures.append(Figure("pipeline_wall_s_files_real", wall_real, "s", f"pipeline_wall_s_60 ({outcome})", wall_60))
    return figures


def run() -> None:
    write_results("bench_pipeline", asyncio.run(_run()))


if __name__ == "__main__":
    run()
