"""Online store round trips for 1,000 symbols, beside raw MSET/MGET of the same bytes.

In one run, on the same Redis/Valkey server (the embedded one, or ``REDIS_URL``):

* ``online_write_1000_*``: ``RedisOnlineStore.write_latest`` of the price set's new vector
  for 1,000 symbols (one script call: checks, packing, a ring slot per key, TTL refresh
  when the ring wraps), one bar after another.
* ``raw_mset_1000_*``: one ``MSET`` of 1,000 keys holding the same record bytes.
* ``online_read_1000_*``: ``read_windows`` of the 32-bar windows the price model reads,
  for 1,000 symbols (one ``MGET``, header and version checks, window assembly).
* ``raw_mget_1000_*``: one ``MGET`` of 1,000 keys of the same size, bytes only.

* ``online_read_1000_p99_default_malloc_ms``: the same read before the process calls
  :func:`feature_store.allocator.keep_freed_memory_for_reuse`, as serving and the engine
  do at start (every other figure is measured after it).

* ``online_write_round_trips``: requests sent to the server per ``write_latest_many`` of
  two feature sets (counted at redis-py's connection, beside the one round trip the write is
  built for), with the server's own count of ``SCRIPT EXISTS`` calls in the same writes
  (``online_write_script_exists_calls``; 0: the scripts are called by hash directly).
* ``online_read_cached_1000_p99_ms``: the model service's read, through the window cache
  (only the bars written since its last read cross the network), beside the whole read.

Targets on a 2-core machine: write at most 2 ms p99, read at most 5 ms p99.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import numpy as np
import redis

from benchmarks.results_file import Figure, write_results
from feature_store.allocator import keep_freed_memory_for_reuse
from feature_store.features import PRICE
from feature_store.online_layout import OnlineLayout
from feature_store.records import NS_PER_S
from feature_store.redis_store import RedisOnlineStore
from feature_store.services import resolve_service_urls

SYMBOLS = 1000
WINDOW = 32
ROUNDS = 400
WRITE_TARGET_MS = 2.0
READ_TARGET_MS = 5.0
T0 = 1_767_571_200 * NS_PER_S


def percentiles(action: Callable[[int], object], rounds: int = ROUNDS) -> tuple[float, float]:
    for i in range(20):
        action(i)
    timings = []
    for i in range(rounds):
        started = time.perf_counter()
        action(i)
        timings.append((time.perf_counter() - started) * 1e3)
    return float(np.percentile(timings, 50)), float(np.percentile(timings, 99))


def main() -> None:
    url = resolve_service_urls().redis_url
    prefix = "bench:" + secrets.token_hex(4)
    layout = OnlineLayout(prefix=prefix, window=WINDOW)
    store = RedisOnlineStore.from_url(url, layout)
    client = redis.Redis.from_url(url)
    symbols = [f"SYM{i:04d}-USD" for i in range(SYMBOLS)]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(64, SYMBOLS, len(PRICE)))
    minute = 60 * NS_PER_S
    record = layout.record_bytes(PRICE)
    raw_values = {f"{prefix}:raw:{s}": rng.bytes(record) for s in symbols}
    try:
        store.write_latest(PRICE, T0, symbols, vectors[0])
        untuned = percentiles(lambda i: store.read_windows(PRICE, symbols, WINDOW), 200)
        keep_freed_memory_for_reuse()
        write = percentiles(lambda i: store.write_latest(PRICE, T0 + (i + 40) * minute, symbols, vectors[i % 64]))
        mset = percentiles(lambda i: client.mset(raw_values))
        read = percentiles(lambda i: store.read_windows(PRICE, symbols, WINDOW))
        latest = percentiles(lambda i: store.read_latest(PRICE, symbols))
        value_bytes = len(client.get(layout.key(PRICE, symbols[0])) or b"")
        client.mset({key: rng.bytes(value_bytes) for key in raw_values})
        raw_keys = list(raw_values)
        mget = percentiles(lambda i: client.mget(raw_keys))
        cached_store = RedisOnlineStore.from_url(url, layout, window_cache=True)

        def write_and_read_cached(i: int) -> None:
            store.write_latest(PRICE, T0 + (i + 1000) * minute, symbols, vectors[i % 64])
            started = time.perf_counter()
            cached_store.read_windows(PRICE, symbols, WINDOW)
            cached_times.append((time.perf_counter() - started) * 1e3)

        cached_times: list[float] = []
        for i in range(ROUNDS + 20):
            write_and_read_cached(i)
        cached = float(np.percentile(cached_times[20:], 50)), float(np.percentile(cached_times[20:], 99))
        cached_store.close()
        trips, script_exists = _round_trips(store, symbols, vectors, minute, client)
    finally:
        keys = [layout.key(PRICE, s) for s in symbols] + list(raw_values) + [layout.version_key(PRICE)]
        client.delete(*keys)
        store.close()
        client.close()
    write_results(
        "bench_online_store",
        [
            Figure("online_write_1000_p99_ms", write[1], "ms", "target (2-core machine)", WRITE_TARGET_MS),
            Figure("online_write_1000_p50_ms", write[0], "ms", f"raw MSET of 1,000 x {record} B, p50", mset[0]),
            Figure("online_write_1000_p99_vs_raw_ms", write[1], "ms", f"raw MSET of 1,000 x {record} B, p99", mset[1]),
            Figure("online_read_1000_p99_ms", read[1], "ms", "target (2-core machine)", READ_TARGET_MS),
            Figure("online_read_1000_p50_ms", read[0], "ms", f"raw MGET of 1,000 x {value_bytes} B, p50", mget[0]),
            Figure("online_read_1000_p99_vs_raw_ms", read[1], "ms", f"raw MGET 1,000 x {value_bytes} B, p99", mget[1]),
            Figure("online_read_1000_p99_default_malloc_ms", untuned[1], "ms", "read target", READ_TARGET_MS),
            Figure("online_read_latest_1000_p99_ms", latest[1], "ms", "read target", READ_TARGET_MS),
            Figure("online_read_cached_1000_p99_ms", cached[1], "ms", "whole read p99, same run", read[1]),
            Figure("online_read_cached_1000_p50_ms", cached[0], "ms", "whole read p50, same run", read[0]),
            Figure("online_write_round_trips", trips, "requests/write", "target: one round trip", 1.0),
            Figure("online_write_script_exists_calls", script_exists, "calls", "target: none", 0.0),
        ],
    )


def _round_trips(
    store: RedisOnlineStore, symbols: list[str], vectors: np.ndarray, minute: int, client: redis.Redis
) -> tuple[float, float]:
    """Requests sent per two-set write (counted at redis-py's connection) and the server's count
    of SCRIPT EXISTS calls over the same writes."""
    from feature_store.features import RISK

    sent = 0
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: object, command: object, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        original(self, command, check_health)  # type: ignore[arg-type]

    def exists_calls() -> float:
        stats = client.info("commandstats")
        return float(stats.get("cmdstat_script|exists", {}).get("calls", 0))

    risk = np.random.default_rng(1).normal(size=(len(symbols), len(RISK)))
    before = exists_calls()
    redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        for i in range(50):
            ts = T0 + (i + 5000) * minute
            store.write_latest_many([(PRICE, ts, symbols, vectors[i % 64]), (RISK, ts, symbols, risk)])
    finally:
        redis.connection.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
    return sent / 50, exists_calls() - before


if __name__ == "__main__":
    main()
