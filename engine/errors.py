"""Exceptions raised by the trading engine.

Every error derives from :class:`EngineError`::

    EngineError
    └── ConfigError      an engine setting from the environment is malformed

A risk denial is not an exception: it is an event with a reason.
"""

from __future__ import annotations


class EngineError(Exception):
    """Root of every error raised by ``engine``."""


class ConfigError(EngineError):
    """An engine setting read from the environment is malformed."""
