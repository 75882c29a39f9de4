"""Exceptions raised by the data layer.

Every error the package raises derives from :class:`FeatureStoreError`::

    FeatureStoreError
    ├── ConfigError            a setting from the environment is malformed
    ├── ServiceError           an embedded PostgreSQL/Redis server failed to start or stop
    ├── MigrationError         the database schema could not be brought up to date
    ├── DataValidationError    input data breaks a rule (names the source, row and problem)
    └── StorageError           a read or write against a store failed; nothing was stored
"""

from __future__ import annotations


class FeatureStoreError(Exception):
    """Root of every error raised by ``feature_store``."""


class ConfigError(FeatureStoreError):
    """A setting read from the environment is missing or malformed."""


class ServiceError(FeatureStoreError):
    """An embedded server could not be started, reached or stopped."""


class MigrationError(FeatureStoreError):
    """The schema migrations could not be applied or do not match the database."""


class DataValidationError(FeatureStoreError):
    """Input data breaks a rule; it was rejected as a whole.

    Attributes:
        source: the file (or other input) the data came from.
        row: 1-based line number in the source file (the header is line 1 for CSV files
            with a header), or ``None`` when the problem concerns the whole input.
        problem: what is wrong, in words.
    """

    def __init__(self, source: str, row: int | None, problem: str) -> None:
        self.source = source
        self.row = row
        self.problem = problem
        where = f"{source}, row {row}" if row is not None else source
        super().__init__(f"{where}: {problem}")


class StorageError(FeatureStoreError):
    """A store operation failed; a failed write leaves nothing of itself behind."""
