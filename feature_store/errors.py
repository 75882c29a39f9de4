"""Exceptions raised by the data layer.

Every error the package raises derives from :class:`FeatureStoreError`::

    FeatureStoreError
    ├── ConfigError            a setting from the environment is malformed
    ├── ServiceError           an embedded PostgreSQL/Redis server failed to start or stop
    ├── MigrationError         the database schema could not be brought up to date
    ├── DataValidationError    input data breaks a rule (names the source, row and problem)
    ├── StorageError           a read or write against a store failed; nothing was stored
    ├── UnknownFeatureError    an unknown feature set, feature or symbol was named
    └── FeatureLookupError     stored features cannot answer a read correctly
        ├── FeatureVersionError    they were computed by another feature-set version
        ├── MissingFeaturesError   some symbols have none
        └── StaleFeaturesError     some symbols' latest bar is too old (or not the one asked for)
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


class UnknownFeatureError(FeatureStoreError):
    """A feature set, feature name or symbol that the store does not know was named."""


class FeatureLookupError(FeatureStoreError):
    """Stored features cannot answer the read without giving a wrong answer.

    Attributes:
        feature_set: the feature set read.
        symbols: the symbols concerned, sorted.
        problem: what is wrong with them, in words.
    """

    def __init__(self, feature_set: str, symbols: list[str], problem: str) -> None:
        self.feature_set = feature_set
        self.symbols = sorted(symbols)
        self.problem = problem
        shown = ", ".join(self.symbols[:10]) + (f" and {len(self.symbols) - 10} more" if len(self.symbols) > 10 else "")
        super().__init__(f"feature set {feature_set!r}: {problem}" + (f" (symbols: {shown})" if shown else ""))


class FeatureVersionError(FeatureLookupError):
    """The stored features were computed by another version of the feature set."""


class MissingFeaturesError(FeatureLookupError):
    """No stored features exist for some of the symbols read."""


class StaleFeaturesError(FeatureLookupError):
    """The latest stored bar of some symbols is older than allowed, or not the bar asked for."""
