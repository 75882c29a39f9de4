"""Exceptions raised by the serving layer.

Every error derives from :class:`ServingError`::

    ServingError
    └── ConfigError      a serving setting from the environment is malformed
"""

from __future__ import annotations


class ServingError(Exception):
    """Root of every error raised by ``serving``."""


class ConfigError(ServingError):
    """A serving setting read from the environment is malformed."""
