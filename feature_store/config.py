"""Settings of the data layer, read once from the environment.

Variables:
    RRR_HOME: data folder for embedded servers and artefacts (default ``./.rrr``).
    DATABASE_URL: an external PostgreSQL server; when unset an embedded one is started.
    REDIS_URL: an external Redis/Valkey server; when unset an embedded one is started.
    RRR_DATABASE: database name used on the embedded PostgreSQL server (default ``rrr``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from feature_store.errors import ConfigError


@dataclass(frozen=True, slots=True)
class FeatureStoreSettings:
    """Typed settings of the data layer.

    Attributes:
        home: the platform's data folder (embedded servers, reports, model store).
        database_url: external PostgreSQL URL, or ``None`` to use the embedded server.
        redis_url: external Redis URL, or ``None`` to use the embedded server.
        database: database created and used on the embedded PostgreSQL server.
    """

    home: Path
    database_url: str | None
    redis_url: str | None
    database: str = "rrr"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FeatureStoreSettings:
        """Read the settings from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        home = Path(env.get("RRR_HOME", ".rrr")).expanduser().resolve()
        database_url = env.get("DATABASE_URL") or None
        redis_url = env.get("REDIS_URL") or None
        if database_url is not None and not database_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"DATABASE_URL must start with postgresql:// or postgres://, got {database_url!r}")
        if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {redis_url!r}")
        database = env.get("RRR_DATABASE", "rrr")
        if not database.replace("_", "").isalnum():
            raise ConfigError(f"RRR_DATABASE must be letters, digits and _, got {database!r}")
        return cls(home=home, database_url=database_url, redis_url=redis_url, database=database)
