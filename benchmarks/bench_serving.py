"""The model service over HTTP against the same price model in-process, in one run.

The service is a real ``bentoml serve serving.service:ModelService`` (one worker, one torch
thread) on this machine, called with the project's async client; the in-process figures run
the same model version in this process, also on one torch thread. Both share the machine's
cores with the load generator, as the engine will.

Figures:

* ``inprocess_batch1_samples_per_s`` and ``inprocess_batch1000_samples_per_s``: the model
  alone (``price.predict``) at batch 1 and at the engine's batch size (1,000 symbols).
* ``inprocess_online_batch1000_*``: what one ``/forecast`` does, in-process: read 1,000
  symbols' windows from Redis through the window cache, as the service does (a new bar is
  written before each read, as the engine does), assemble, check and predict.
* ``http_batch1_c{1,8,64}_*``: ``/forecast_windows`` with one window per request at 1, 8 and
  64 concurrent requests (adaptive batching merges them): requests/s, p50, p99.
* ``serving_batch1000_p99_ms``: ``/forecast`` for 1,000 symbols at a new bar each call (the
  bar is written first, untimed, as the engine writes it), one call at a time, against the
  10 ms target; beside it ``serving_batch1000_inprocess_p99_ms``, the same read + predict
  in this process in the same run.
* ``*_2_workers``: the same HTTP figures with ``RRR_SERVING_WORKERS=2`` (two processes, each
  with one torch thread and a window cache of its own).
* ``serving_http_over_inprocess``: HTTP samples/s over in-process samples/s for the same
  work, the lower of batch 1 (best concurrency vs ``predict`` at batch 1) and batch 1,000
  (``/forecast`` vs the in-process online path); target at least 0.5.

The model is the production price model of ``$RRR_HOME/bentoml`` when there is one (after
``make demo``), otherwise an untrained sample model of the same architecture (inference cost
does not depend on the weights). Features are random values in a scratch Redis database.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from benchmarks.results_file import Figure, write_results

SYMBOLS = 1000
BARS = 20
NS_MIN = 60 * 10**9
T0 = 1_767_571_200 * 10**9
BATCH1000_TARGET_MS = 10.0
RATIO_TARGET = 0.5
REDIS_DB = 12
SECONDS_PER_LEVEL = 4.0


def _timed(action: Callable[[], object], rounds: int, warmup: int = 20) -> np.ndarray:
    for _ in range(warmup):
        action()
    out = np.empty(rounds)
    for i in range(rounds):
        started = time.perf_counter()
        action()
        out[i] = time.perf_counter() - started
    return out * 1e3


async def _load(call: Callable[[], Awaitable[object]], concurrency: int, seconds: float) -> tuple[float, np.ndarray]:
    """Requests/s and latencies (ms) of ``concurrency`` loops calling ``call`` for ``seconds``."""
    latencies: list[float] = []
    for _ in range(20):
        await call()
    stop = time.perf_counter() + seconds

    async def loop() -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, np.array(latencies) * 1e3


class _NewBars:
    """Writes the next bar of both feature sets for every symbol (as the engine does at a close)."""

    def __init__(self, online: object, symbols: list[str], rng: np.random.Generator) -> None:
        self.online, self.symbols, self.rng = online, symbols, rng
        self.next = T0 + BARS * NS_MIN

    def write(self) -> int:
        from feature_store.features.catalog import PRICE, SENTIMENT

        ts, self.next = self.next, self.next + NS_MIN
        items = [(fs, ts, self.symbols, self.rng.normal(0.0, 0.01, (len(self.symbols), len(fs))).astype(np.float32))
                 for fs in (PRICE, SENTIMENT)]  # fmt: skip
        self.online.write_latest_many(items)  # type: ignore[attr-defined]
        return ts


def _timed_new_bar(bars: _NewBars, read: Callable[[int], object], rounds: int, warmup: int = 20) -> np.ndarray:
    """Milliseconds of ``read(ts)`` of a bar written just before (untimed), ``rounds`` times."""
    for _ in range(warmup):
        read(bars.write())
    out = np.empty(rounds)
    for i in range(rounds):
        ts = bars.write()
        started = time.perf_counter()
        read(ts)
        out[i] = time.perf_counter() - started
    return out * 1e3


def _measure_service(store: Path, redis_url: str, scratch: Path, served: object, one: np.ndarray,
                     symbols: list[str], bars: _NewBars, *, workers: int) -> dict[str, object]:  # fmt: skip
    """Batch-1 load at 1, 8 and 64 concurrent requests and 400 ``/forecast`` calls of 1,000
    symbols, each at a new bar, against a ``bentoml serve`` of ``workers`` workers."""
    from serving import launcher
    from serving.client import ModelClient

    env = {
        **os.environ,
        "BENTOML_HOME": str(store),
        "REDIS_URL": redis_url,
        "RRR_SERVING_THREADS": "1",
        "RRR_SERVING_WORKERS": str(workers),
        "RRR_SERVING_POLL_S": "30",
    }
    service = launcher.start(port=launcher.free_port(), env=env, log_path=scratch / f"serving-{workers}.log")
    try:

        async def measure() -> dict[str, object]:
            results: dict[str, object] = {}
            async with ModelClient(service.url, retries=0, timeout_s=30.0) as client:
                window = one.tolist()
                feature_sets = served.feature_sets  # type: ignore[attr-defined]
                for level in (1, 8, 64):
                    results[f"c{level}"] = await _load(
                        lambda: client.forecast_windows(window, feature_sets), level, SECONDS_PER_LEVEL
                    )
                latencies = []
                for i in range(420):
                    ts = bars.write()
                    started = time.perf_counter()
                    await client.forecast(symbols, ts)
                    if i >= 20:
                        latencies.append(time.perf_counter() - started)
                results["batch1000"] = np.array(latencies) * 1e3
            return results

        return asyncio.run(measure())
    finally:
        service.stop()


def _store(scratch: Path) -> tuple[Path, str]:
    """The model store to serve from and a description of the model in it."""
    real = Path(os.environ.get("RRR_HOME", ".rrr")).resolve() / "bentoml"
    if (real / "models" / "price").is_dir() and (real / "models" / "risk").is_dir():
        os.environ["BENTOML_HOME"] = str(real)
        from serving import registry

        found = registry.list_models("price", "production")
        if found and registry.list_models("risk", "production") and registry.list_models("sentiment", "production"):
            return real, f"production {found[0].tag}"
    store = scratch / "bentoml"
    os.environ["BENTOML_HOME"] = str(store)
    from serving import sample_models

    tags = sample_models.seed()
    return store, f"sample {tags['price']} (untrained, same architecture)"


def main() -> None:
    import torch

    from feature_store.allocator import keep_freed_memory_for_reuse
    from feature_store.features.catalog import PRICE, SENTIMENT
    from feature_store.online_layout import OnlineLayout
    from feature_store.redis_store import RedisOnlineStore
    from feature_store.services import resolve_service_urls, scratch_redis_db

    torch.set_num_threads(1)
    keep_freed_memory_for_reuse()
    scratch = Path(tempfile.mkdtemp(prefix="rrr-bench-serving-"))
    store, model_text = _store(scratch)
    from serving import registry, runtime
    from serving.models import price

    redis_url = scratch_redis_db(resolve_service_urls(), REDIS_DB)  # never a user's keys
    online = RedisOnlineStore.from_url(redis_url, OnlineLayout())
    symbols = [f"B{i:04d}-USD" for i in range(SYMBOLS)]
    rng = np.random.default_rng(0)
    for bar in range(BARS):
        for fs in (PRICE, SENTIMENT):
            values = rng.normal(0.0, 0.01, (SYMBOLS, len(fs))).astype(np.float32)
            online.write_latest(fs, T0 + bar * NS_MIN, symbols, values)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    served = runtime.load_served(registry.production("price"), device)
    print(f"model: {model_text}; in-process on {device}, {torch.get_num_threads()} torch thread(s)")
    n_features = len(served.config.features)
    one = rng.normal(0.0, 0.01, (1, served.config.window, n_features)).astype(np.float32)
    many = rng.normal(0.0, 0.01, (SYMBOLS, served.config.window, n_features)).astype(np.float32)
    in1 = _timed(lambda: price.predict(served.model, one), 3000, 200)
    in1000 = _timed(lambda: price.predict(served.model, many), 300)
    bars = _NewBars(online, symbols, rng)
    cached = RedisOnlineStore.from_url(redis_url, OnlineLayout(), window_cache=True)
    inonline = _timed_new_bar(bars, lambda ts: runtime.forecast_online(served, cached, symbols, ts), 300)
    cached.close()
    in1_rate = 1e3 / float(np.mean(in1))
    in1000_rate = SYMBOLS * 1e3 / float(np.mean(in1000))
    inonline_rate = SYMBOLS * 1e3 / float(np.mean(inonline))

    figures: list[Figure] = []
    try:
        results = _measure_service(store, redis_url, scratch, served, one, symbols, bars, workers=1)
        results2 = _measure_service(store, redis_url, scratch, served, one, symbols, bars, workers=2)
    finally:
        online._client.flushdb()  # the scratch database claimed above
        online.close()
        shutil.rmtree(scratch, ignore_errors=True)

    figures += [
        Figure("inprocess_batch1_samples_per_s", in1_rate, "samples/s", "model alone, batch 1, 1 thread", None),
        Figure("inprocess_batch1000_samples_per_s", in1000_rate, "samples/s", "model alone, batch 1,000", None),
        Figure(
            "inprocess_online_batch1000_p99_ms",
            float(np.percentile(inonline, 99)),
            "ms",
            "target for HTTP",
            BATCH1000_TARGET_MS,
        ),
        Figure("inprocess_online_batch1000_samples_per_s", inonline_rate, "samples/s", "Redis read + predict", None),
    ]
    best_rate = 0.0
    for level in (1, 8, 64):
        rate, lat = results[f"c{level}"]  # type: ignore[misc]
        best_rate = max(best_rate, rate)
        figures += [
            Figure(f"http_batch1_c{level}_req_per_s", rate, "req/s", "in-process batch 1 samples/s", in1_rate),
            Figure(f"http_batch1_c{level}_p50_ms", float(np.percentile(lat, 50)), "ms", "", None),
            Figure(f"http_batch1_c{level}_p99_ms", float(np.percentile(lat, 99)), "ms", "", None),
        ]
    batch1000 = results["batch1000"]
    assert isinstance(batch1000, np.ndarray)
    http1000_rate = SYMBOLS * 1e3 / float(np.mean(batch1000))
    ratio1 = best_rate / in1_rate
    ratio1000 = http1000_rate / inonline_rate
    batch1000_2 = results2["batch1000"]
    assert isinstance(batch1000_2, np.ndarray)
    rate2, lat2 = results2["c64"]  # type: ignore[misc]
    figures += [
        Figure(
            "serving_batch1000_p99_ms",
            float(np.percentile(batch1000, 99)),
            "ms",
            "target (2-core machine)",
            BATCH1000_TARGET_MS,
        ),
        Figure(
            "serving_batch1000_inprocess_p99_ms",
            float(np.percentile(inonline, 99)),
            "ms",
            "HTTP /forecast p99 in the same run",
            float(np.percentile(batch1000, 99)),
        ),
        Figure(
            "serving_batch1000_p99_ms_2_workers",
            float(np.percentile(batch1000_2, 99)),
            "ms",
            "1 worker, same run",
            float(np.percentile(batch1000, 99)),
        ),
        Figure("http_batch1_c64_req_per_s_2_workers", rate2, "req/s", "1 worker, same run", results["c64"][0]),  # type: ignore[index]
        Figure("http_batch1_c64_p99_ms_2_workers", float(np.percentile(lat2, 99)), "ms", "", None),
        Figure(
            "serving_batch1000_p50_ms",
            float(np.percentile(batch1000, 50)),
            "ms",
            "in-process online path p50",
            float(np.percentile(inonline, 50)),
        ),
        Figure("serving_http_batch1000_samples_per_s", http1000_rate, "samples/s", "in-process", inonline_rate),
        Figure("serving_http_over_inprocess_batch1", ratio1, "ratio", "target", RATIO_TARGET),
        Figure("serving_http_over_inprocess_batch1000", ratio1000, "ratio", "target", RATIO_TARGET),
        Figure(
            "serving_http_over_inprocess", min(ratio1, ratio1000), "ratio", "target (lower of the two)", RATIO_TARGET
        ),
    ]
    write_results("bench_serving", figures)


if __name__ == "__main__":
    main()
