"""A real ``bentoml serve`` of sample models in a throwaway model store, for one benchmark run."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from feature_store.config import FeatureStoreSettings
from feature_store.services import resolve_service_urls, scratch_redis_db
from serving import launcher


@contextmanager
def sample_model_service(*, interval_s: int, redis_db: int, prefix: str) -> Iterator[tuple[str, str, Path]]:
    """Seed sample models on ``interval_s`` features, serve them, yield ``(service URL, Redis URL
    of database redis_db (a scratch one, emptied), data folder)``; stop the service after.

    Raises:
        RuntimeError: seeding the sample models failed (its error output is in the message).
    """
    # Emptied only on the embedded server (or with RRR_SCRATCH_REDIS_OK=1): never a user's keys.
    redis_url = scratch_redis_db(resolve_service_urls(FeatureStoreSettings.from_env()), redis_db)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        home = Path(tmp)
        env = {
            **os.environ,
            "RRR_HOME": str(home),
            "BENTOML_HOME": str(home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "REDIS_URL": redis_url,
        }
        argv = [sys.executable, "-m", "serving.sample_models", "--interval-s", str(interval_s)]
        seeded = subprocess.run(argv, env=env, capture_output=True, text=True)
        if seeded.returncode != 0:
            raise RuntimeError(f"seeding sample models failed: {seeded.stderr[-3000:]}")
        service = launcher.start(port=launcher.free_port(), env=env, log_path=home / "serving.log")
        try:
            yield service.url, redis_url, home
        finally:
            service.stop()
