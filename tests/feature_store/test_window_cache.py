"""The service's window cache against whole reads of the same real Redis, step by step.

Every read through a store with a window cache (which reads only the bars written since its
last read) must equal a fresh whole read: same windows, same bars, same errors. A seeded
random walk of writes covers what happens to an online store: bars in order, gaps, bars
written again (an engine restarting and warming up), writes refused as too old, keys that
expire, another feature-set version, two ingest shards writing halves of one bar, two
namespaces, and a server that forgot the scripts.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from feature_store.errors import FeatureStoreError
from feature_store.features.catalog import PRICE, RISK
from feature_store.features.registry import FeatureSet
from feature_store.online_layout import OnlineLayout
from feature_store.records import NS_PER_S
from feature_store.redis_store import RedisOnlineStore
from feature_store.services import ServiceUrls

T0 = 1_767_571_200 * NS_PER_S
MINUTE = 60 * NS_PER_S
SYMBOLS = [f"S{i:02d}-USD" for i in range(12)]


@pytest.fixture
def stores(service_urls: ServiceUrls) -> Iterator[tuple[RedisOnlineStore, RedisOnlineStore, RedisOnlineStore]]:
    """(writer, cached reader, whole reader) on one fresh prefix."""
    layout = OnlineLayout(prefix="test:" + secrets.token_hex(4), window=8, ttl_s=3600.0)
    writer = RedisOnlineStore.from_url(service_urls.redis_url, layout)
    cached = RedisOnlineStore.from_url(service_urls.redis_url, layout, window_cache=True)
    whole = RedisOnlineStore.from_url(service_urls.redis_url, layout)
    yield writer, cached, whole
    client = redis.Redis.from_url(service_urls.redis_url)
    keys = list(client.scan_iter(match=f"{layout.prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    for store in (writer, cached, whole, client):
        store.close()


def _read(store: RedisOnlineStore, sets: list[FeatureSet], symbols: list[str], length: int, as_of: int | None):
    try:
        reads = store.read_windows_many(sets, symbols, length, as_of_ns=as_of)
    except FeatureStoreError as exc:
        return type(exc).__name__, str(exc)
    return [
        (r.feature_set, r.version, r.symbols, r.ts_ns.tolist(), r.values.tobytes(), r.stored.tobytes()) for r in reads
    ]


def _same(cached: RedisOnlineStore, whole: RedisOnlineStore, sets: list[FeatureSet], symbols: list[str],
          length: int, as_of: int | None = None) -> object:  # fmt: skip
    got, expected = _read(cached, sets, symbols, length, as_of), _read(whole, sets, symbols, length, as_of)
    assert got == expected
    return got


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cached_reads_equal_whole_reads_over_a_random_walk_of_writes(
    stores: tuple[RedisOnlineStore, RedisOnlineStore, RedisOnlineStore], seed: int
) -> None:
    writer, cached, whole = stores
    rng = np.random.default_rng(seed)
    other = RISK.with_interval(120)  # another version of the set (another bar length)
    bar = 10
    counts = {"next": 0, "gap": 0, "again": 0, "too_old": 0, "expire": 0, "shards": 0, "version": 0, "flush": 0}
    for _ in range(160):
        action = rng.choice(list(counts), p=[0.45, 0.08, 0.12, 0.05, 0.05, 0.12, 0.08, 0.05])
        fs = other if action == "version" else RISK
        step = fs.interval_s * NS_PER_S
        symbols = sorted(rng.choice(SYMBOLS, size=int(rng.integers(6, 12)), replace=False).tolist())
        values = rng.normal(size=(len(symbols), len(fs)))
        counts[str(action)] += 1
        if action == "next":
            bar += 1
        elif action == "gap":
            bar += int(rng.integers(2, 12))  # sometimes more than a window
        elif action == "again":  # a restart warming up: a recent bar written again, other values
            writer.write_latest(fs, T0 + (bar - int(rng.integers(1, 7))) * step, symbols, values)
        elif action == "too_old":
            assert writer.write_latest(fs, T0 + (bar - 9) * step, symbols, values) == len(symbols)
        elif action == "expire":  # a key gone (TTL) behind the reader's back
            writer._client.delete(writer.layout.key(fs, str(rng.choice(SYMBOLS))))
        elif action == "shards":  # two shards write halves of one new bar
            bar += 1
            half = len(symbols) // 2
            writer.write_latest(fs, T0 + bar * step, symbols[:half], values[:half])
            _same(cached, whole, [fs], SYMBOLS, 8)
            writer.write_latest(fs, T0 + bar * step, symbols[half:], values[half:])
        elif action == "flush":  # the server lost its scripts (restarted)
            writer._client.script_flush()
        if action in ("next", "gap", "version"):
            writer.write_latest(fs, T0 + bar * step, symbols, values)
        length = int(rng.integers(1, 9))
        asked = SYMBOLS if rng.random() < 0.5 else symbols
        _same(cached, whole, [RISK], asked, length)
        _same(cached, whole, [RISK, other], asked, length)
        _same(cached, whole, [RISK], asked, length, as_of=T0 + bar * RISK.interval_s * NS_PER_S)
    assert all(counts.values()), counts
    cache = cached.window_cache
    assert cache is not None and cache.partial_reads > 100 and cache.whole_reads > 10


def test_only_the_new_bars_are_read_when_the_copy_is_current(
    stores: tuple[RedisOnlineStore, RedisOnlineStore, RedisOnlineStore],
) -> None:
    writer, cached, whole = stores
    rng = np.random.default_rng(0)
    for bar in range(20):
        writer.write_latest(PRICE, T0 + bar * MINUTE, SYMBOLS, rng.normal(size=(len(SYMBOLS), len(PRICE))))
        _same(cached, whole, [PRICE], SYMBOLS, 8, as_of=T0 + bar * MINUTE)
    cache = cached.window_cache
    assert cache is not None and (cache.whole_reads, cache.partial_reads) == (1, 19)
    # What goes over the wire for a current copy: two records per symbol, not the rings.
    held = cache.get(PRICE, SYMBOLS)
    assert held is not None
    command = cached._read_command(PRICE, SYMBOLS, held)
    reply = cached._scripts([command], "read", PRICE)[0]
    assert reply[3] == b"since" and {len(v) for v in reply[4:]} == {cached.layout.record_bytes(PRICE)}


def test_two_namespaces_keep_their_own_copies(service_urls: ServiceUrls) -> None:
    layout = OnlineLayout(prefix="test:" + secrets.token_hex(4), window=8, ttl_s=3600.0)
    writer = RedisOnlineStore.from_url(service_urls.redis_url, layout)
    cached = RedisOnlineStore.from_url(service_urls.redis_url, layout, window_cache=True)
    whole = RedisOnlineStore.from_url(service_urls.redis_url, layout)
    spaces = {ns: (writer.in_namespace(ns), cached.in_namespace(ns), whole.in_namespace(ns)) for ns in ("bt1", "bt2")}
    rng = np.random.default_rng(5)
    try:
        for bar in range(12):
            for ns, (w, _, _) in spaces.items():
                if ns == "bt2" and bar % 3 == 0:
                    continue  # one namespace has gaps
                w.write_latest(RISK, T0 + bar * MINUTE, SYMBOLS, rng.normal(size=(len(SYMBOLS), len(RISK))))
            windows = {ns: _same(c, h, [RISK], SYMBOLS, 8) for ns, (_, c, h) in spaces.items()}
            assert windows["bt1"] != windows["bt2"]
        # A namespace cleared and written again from scratch (a new backtest under its name).
        spaces["bt1"][0].clear_namespace()
        _same(spaces["bt1"][1], spaces["bt1"][2], [RISK], SYMBOLS, 8)  # missing: the same error
        spaces["bt1"][0].write_latest(RISK, T0 + 3 * MINUTE, SYMBOLS, rng.normal(size=(len(SYMBOLS), len(RISK))))
        _same(spaces["bt1"][1], spaces["bt1"][2], [RISK], SYMBOLS, 8)
    finally:
        for w, _, _ in spaces.values():
            w.clear_namespace()
        for store in (writer, cached, whole):
            store.close()


def test_a_closed_market_copy_stays_equal_across_nights_and_weekends(
    stores: tuple[RedisOnlineStore, RedisOnlineStore, RedisOnlineStore],
) -> None:
    from feature_store.features.calendars import session_calendar

    writer = stores[0]
    daily = RISK.with_interval(86400).with_calendar("XNYS")
    days = session_calendar("XNYS", 86400).slots(T0, T0 + 40 * 86400 * NS_PER_S)
    rng = np.random.default_rng(9)
    layout = OnlineLayout.for_interval(86400, prefix=writer.layout.prefix + "d", window=8)
    w, c, h = (RedisOnlineStore(s._client, layout, window_cache=s.window_cache is not None) for s in stores)
    for day in days.tolist():
        w.write_latest(daily, day, SYMBOLS, rng.normal(size=(len(SYMBOLS), len(daily))))
        _same(c, h, [daily], SYMBOLS, 8, as_of=day)
    assert c.window_cache is not None and c.window_cache.partial_reads == len(days) - 1
    w._client.delete(*w._client.keys(f"{layout.prefix}:*"))
