"""The Dagster code location: assets, checks, jobs, schedules, sensors and resources.

Loads in about a second: every heavy import (torch, Great Expectations, BentoML, asyncpg)
happens inside the functions that need it.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from orchestration import automation
from orchestration.assets import engine_data, features, market_data, models, reports, strategy, training_sets
from orchestration.resources import resources_from_env


def _executor() -> Any:
    """One process runs the steps in order by default: on a 2-core machine a process per step
    costs more (each imports torch again) than it gains. ``RRR_DAGSTER_EXECUTOR=celery`` runs
    each step as a Celery task on the workers instead (``deploy/celery``: the executor's
    settings, Valkey as broker and backend, and a PostgreSQL instance every worker shares)."""
    choice = os.environ.get("RRR_DAGSTER_EXECUTOR", "in_process")
    if choice == "celery":
        from dagster_celery import celery_executor

        return celery_executor
    if choice != "in_process":
        raise ValueError(f"RRR_DAGSTER_EXECUTOR must be in_process or celery, got {choice!r}")
    return dg.in_process_executor


defs = dg.Definitions(
    assets=[
        *dg.load_assets_from_modules([market_data, features, training_sets, models, reports, strategy]),
        *engine_data.engine_assets,
    ],
    jobs=[
        automation.whole_loop,
        automation.market_data_job,
        automation.feature_job,
        automation.retrain_job,
        automation.rollback_job,
        automation.observe_engine,
    ],
    schedules=[automation.feature_schedule, automation.daily_retrain],
    sensors=[automation.new_market_data, automation.model_quality, automation.run_failure_alert],
    resources=resources_from_env(),
    executor=_executor(),
)
