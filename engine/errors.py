"""Exceptions raised by the trading engine.

Every error derives from :class:`EngineError`::

    EngineError
    ├── ConfigError              an engine setting from the environment is malformed
    ├── DecodeError              a venue message could not be decoded (counted and dropped)
    ├── FeedError                a feed cannot run as configured
    └── ServiceUnreachableError  PostgreSQL or Redis could not be reached

A risk denial is not an exception: it is an event with a reason.
"""

from __future__ import annotations


class EngineError(Exception):
    """Root of every error raised by ``engine``."""


class ConfigError(EngineError):
    """An engine setting read from the environment is malformed."""


class DecodeError(EngineError):
    """A venue message could not be decoded (bad JSON, a missing or malformed field).

    Feed clients count these by :attr:`reason` and drop the message; they never stop a feed.

    Attributes:
        reason: a short code for the count (``not_json``, ``missing_field``, ``wrong_type``,
            ``bad_value``, ``bad_time``, ...).
    """

    def __init__(self, message: str, reason: str = "bad_value") -> None:
        super().__init__(message)
        self.reason = reason


def decode_reason(exc: BaseException) -> str:
    """The count reason of an exception raised while decoding a field."""
    if isinstance(exc, DecodeError):
        return exc.reason
    if isinstance(exc, KeyError):
        return "missing_field"
    if isinstance(exc, (TypeError, AttributeError)):
        return "wrong_type"
    return "bad_value"


class FeedError(EngineError):
    """A feed cannot run as configured (unknown venue, bad URL, no symbols)."""


class ServiceUnreachableError(EngineError):
    """PostgreSQL or Redis could not be reached when the command needed it."""
