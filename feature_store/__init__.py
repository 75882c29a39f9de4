"""Data layer: records, sources, embedded services, schema and stores.

Importing the package is cheap; the heavy parts (pandas, asyncpg) load with their modules.
"""

from __future__ import annotations

from feature_store.errors import (
    ConfigError,
    DataValidationError,
    FeatureLookupError,
    FeatureStoreError,
    FeatureVersionError,
    MigrationError,
    MissingFeaturesError,
    ServiceError,
    StaleFeaturesError,
    StorageError,
    UnknownFeatureError,
)

__all__ = [
    "ConfigError",
    "DataValidationError",
    "FeatureLookupError",
    "FeatureStoreError",
    "FeatureVersionError",
    "MigrationError",
    "MissingFeaturesError",
    "ServiceError",
    "StaleFeaturesError",
    "StorageError",
    "UnknownFeatureError",
]
