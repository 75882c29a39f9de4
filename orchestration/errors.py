"""Exceptions raised by the orchestration layer.

Every error derives from :class:`OrchestrationError`::

    OrchestrationError
    └── ConfigError      an orchestration setting from the environment is malformed
"""

from __future__ import annotations


class OrchestrationError(Exception):
    """Root of every error raised by ``orchestration``."""


class ConfigError(OrchestrationError):
    """An orchestration setting read from the environment is malformed."""
