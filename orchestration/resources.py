"""Dagster resources: PostgreSQL, Redis, the model store and the market data source.

Each is configured from the environment (``DATABASE_URL``, ``REDIS_URL``, ``BENTOML_HOME``,
``RRR_SOURCE``...); when ``DATABASE_URL`` or ``REDIS_URL`` is unset the embedded servers under
``RRR_HOME`` are started (or reused) on first use. Nothing heavy is imported at load time.
"""

# No `from __future__ import annotations`: Dagster reads resource field annotations at runtime.

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg

from orchestration.config import OrchestrationSettings

T = TypeVar("T")


class PostgresResource(dg.ConfigurableResource):  # type: ignore[misc]
    """PostgreSQL holding market data, features, labels and the engine's records."""

    url: str | None = None

    def database_url(self) -> str:
        """The configured URL, or the embedded server's (started on first use)."""
        if self.url:
            return self.url
        from feature_store.services import resolve_service_urls

        return resolve_service_urls().database_url

    def run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``work(pool)`` on a fresh connection pool (schema migrated) and close the pool."""
        from feature_store.database import open_pool

        async def main() -> T:
            pool = await open_pool(self.database_url())
            try:
                return await work(pool)
            finally:
                await pool.close()

        return asyncio.run(main())


class RedisResource(dg.ConfigurableResource):  # type: ignore[misc]
    """Redis, the online feature store."""

    url: str | None = None

    def redis_url(self) -> str:
        """The configured URL, or the embedded server's (started on first use)."""
        if self.url:
            return self.url
        from feature_store.services import resolve_service_urls

        return resolve_service_urls().redis_url


class ModelStoreResource(dg.ConfigurableResource):  # type: ignore[misc]
    """The BentoML model store that holds candidates and production models."""

    home: str | None = None  # (BENTOML_HOME; default $RRR_HOME/bentoml)

    def registry(self) -> Any:
        """``serving.registry``, pointed at this store."""
        if self.home:
            os.environ["BENTOML_HOME"] = self.home
        from serving import registry

        return registry


class SourceResource(dg.ConfigurableResource):  # type: ignore[misc]
    """Where raw market data comes from (``RRR_SOURCE``; see :mod:`orchestration.config`)."""

    kind: str = "synthetic"
    directory: str | None = None

    def settings(self) -> OrchestrationSettings:
        env = dict(os.environ)
        env["RRR_SOURCE"] = self.kind
        if self.directory:
            env["RRR_SOURCE_DIR"] = str(Path(self.directory))
        return OrchestrationSettings.from_env(env)


def resources_from_env() -> dict[str, Any]:
    """The resources, configured from the environment."""
    return {
        "postgres": PostgresResource(url=os.environ.get("DATABASE_URL")),
        "redis": RedisResource(url=os.environ.get("REDIS_URL")),
        "model_store": ModelStoreResource(home=os.environ.get("BENTOML_HOME")),
        "source": SourceResource(
            kind=os.environ.get("RRR_SOURCE", "synthetic"), directory=os.environ.get("RRR_SOURCE_DIR")
        ),
    }
