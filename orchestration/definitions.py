"""The Dagster code location: assembles assets, checks, jobs, schedules and sensors."""

from __future__ import annotations

import dagster as dg

from orchestration.assets import market_data

defs = dg.Definitions(assets=dg.load_assets_from_modules([market_data]))
