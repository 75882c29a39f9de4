"""The Dagster code location: assets, checks, jobs, schedules, sensors and resources.

Loads in about a second: every heavy import (torch, Great Expectations, BentoML, asyncpg)
happens inside the functions that need it.
"""

from __future__ import annotations

import dagster as dg

from orchestration import automation
from orchestration.assets import engine_data, features, market_data, models, reports, strategy, training_sets
from orchestration.resources import resources_from_env

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
    # One process runs the steps in order: on a 2-core machine a process per step costs more
    # (each would import torch again) than it gains. Scale out with dagster-k8s or Celery.
    executor=dg.in_process_executor,
)
