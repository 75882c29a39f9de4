"""Dagster definitions: assets, checks, jobs, schedules, sensors and resources."""

from __future__ import annotations

from orchestration.errors import OrchestrationError

__all__ = ["OrchestrationError"]
