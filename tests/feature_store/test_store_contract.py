"""One contract for every store backend: in-memory, and real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from feature_store.database import open_pool
from feature_store.errors import (
    DataValidationError,
    FeatureVersionError,
    MissingFeaturesError,
    StaleFeaturesError,
    StorageError,
)
from feature_store.features import PRICE, RISK, compute_features
from feature_store.features.registry import Feature, FeatureSet
from feature_store.memory_store import InMemoryOfflineStore, InMemoryOnlineStore
from feature_store.online_layout import OnlineLayout
from feature_store.postgres_store import PostgresOfflineStore
from feature_store.records import NS_PER_S
from feature_store.redis_store import RedisOnlineStore
from feature_store.services import ServiceUrls
from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market
from feature_store.stores import OfflineStore, OnlineStore
from feature_store.training import forward_return_labels

MINUTE = 60 * NS_PER_S
T0 = 1_767_571_200 * NS_PER_S  # 2026-01-05 00:00 UTC, a multiple of the window's slots


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def online(request: pytest.FixtureRequest) -> Iterator[OnlineStore]:
    layout = OnlineLayout(prefix="test:" + secrets.token_hex(4), window=8, ttl_s=3600.0)
    if request.param == "memory":
        yield InMemoryOnlineStore(layout)
        return
    urls: ServiceUrls = request.getfixturevalue("service_urls")
    store = RedisOnlineStore.from_url(urls.redis_url, layout)
    yield store
    store.close()


def vectors(n: int, seed: int, features: int = len(RISK)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, features))


# --- online ---------------------------------------------------------------------------------


def test_latest_vectors_round_trip_as_float32(online: OnlineStore) -> None:
    values = vectors(3, 1)
    values[1, 2] = np.nan  # warm-up stays NaN
    assert online.write_latest(RISK, T0, ["A", "B", "C"], values) == 0
    got = online.read_latest(RISK, ["C", "A", "B"])
    assert got.symbols == ("C", "A", "B")
    assert got.version == RISK.version
    assert got.ts_ns.tolist() == [T0] * 3
    np.testing.assert_array_equal(got.values, values[[2, 0, 1]].astype(np.float32))


def test_windows_hold_the_last_bars_oldest_first(online: OnlineStore) -> None:
    per_bar = [vectors(2, seed) for seed in range(10)]
    for i, values in enumerate(per_bar):
        online.write_latest(RISK, T0 + i * MINUTE, ["A", "B"], values)
    windows = online.read_windows(RISK, ["A", "B"], 5)
    assert windows.ts_ns.tolist() == [T0 + 9 * MINUTE] * 2
    assert windows.stored.all()
    expected = np.stack([per_bar[i] for i in range(5, 10)], axis=1).astype(np.float32)
    np.testing.assert_array_equal(windows.values, expected)


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_closed_market_keeps_its_last_session_bars_across_nights_and_weekends(
    backend: str, request: pytest.FixtureRequest
) -> None:
    from feature_store.features.calendars import session_calendar

    daily = RISK.with_interval(86400).with_calendar("XNYS")
    days = session_calendar("XNYS", 86400).slots(T0, T0 + 40 * 86400 * NS_PER_S)  # weekends and a holiday between
    layout = OnlineLayout.for_interval(86400, prefix="test:" + secrets.token_hex(4), window=8)
    if backend == "memory":
        store: OnlineStore = InMemoryOnlineStore(layout)
    else:
        store = RedisOnlineStore.from_url(request.getfixturevalue("service_urls").redis_url, layout)
    per_bar = [vectors(1, seed) for seed in range(len(days))]
    for day, values in zip(days.tolist(), per_bar, strict=True):
        store.write_latest(daily, day, ["A"], values)
    windows = store.read_windows(daily, ["A"], 8)
    if isinstance(store, RedisOnlineStore):
        store.close()
    assert windows.stored.all() and windows.ts_ns.tolist() == [days[-1]]
    expected = np.stack(per_bar[-8:], axis=1).astype(np.float32)
    np.testing.assert_array_equal(windows.values, expected)


def test_several_sets_read_in_one_call_equal_their_reads_one_by_one(online: OnlineStore) -> None:
    for i in range(6):
        online.write_latest(RISK, T0 + i * MINUTE, ["A", "B"], vectors(2, i))
        online.write_latest(PRICE, T0 + i * MINUTE, ["A", "B"], vectors(2, 10 + i, len(PRICE)))
    both = online.read_windows_many([PRICE, RISK], ["B", "A"], 4, as_of_ns=T0 + 5 * MINUTE)
    for fs, got in zip((PRICE, RISK), both, strict=True):
        one = online.read_windows(fs, ["B", "A"], 4)
        assert got.feature_set == fs.name and got.symbols == ("B", "A")
        np.testing.assert_array_equal(got.values, one.values)
    with pytest.raises(MissingFeaturesError, match="symbols: C"):
        online.read_windows_many([PRICE, RISK], ["A", "C"], 4)
    with pytest.raises(StaleFeaturesError):
        online.read_windows_many([PRICE, RISK], ["A"], 4, as_of_ns=T0 + 6 * MINUTE)


def test_a_bar_not_written_is_a_nan_row_of_the_window(online: OnlineStore) -> None:
    online.write_latest(RISK, T0, ["A"], vectors(1, 0))
    online.write_latest(RISK, T0 + 2 * MINUTE, ["A"], vectors(1, 2))
    windows = online.read_windows(RISK, ["A"], 3)
    assert windows.stored.tolist() == [[True, False, True]]
    assert np.isnan(windows.values[0, 1]).all()


def test_a_late_write_never_overwrites_a_newer_bar(online: OnlineStore) -> None:
    online.write_latest(RISK, T0 + 8 * MINUTE, ["A"], vectors(1, 8))  # same slot as T0 in a window of 8
    assert online.write_latest(RISK, T0, ["A"], vectors(1, 0)) == 1
    np.testing.assert_array_equal(online.read_latest(RISK, ["A"]).values, vectors(1, 8).astype(np.float32))


def test_reading_another_version_is_a_version_error(online: OnlineStore) -> None:
    online.write_latest(RISK, T0, ["A"], vectors(1, 0))
    changed = FeatureSet("risk", (*RISK.features[:-1], Feature("volume_z_60", RISK.features[0].expr, "x")))
    with pytest.raises(FeatureVersionError, match=f"holds version {RISK.version}"):
        online.read_latest(changed, ["A"])


def test_bars_of_another_length_do_not_overwrite_the_version_readers_check(online: OnlineStore) -> None:
    """An engine on one-second bars beside one on one-minute bars: each set keeps its own version."""
    seconds = RISK.with_interval(1)
    assert seconds.version != RISK.version
    online.write_latest(RISK, T0, ["A"], vectors(1, 0))
    online.write_latest(seconds, T0 + NS_PER_S, ["A"], vectors(1, 1))
    np.testing.assert_array_equal(online.read_latest(RISK, ["A"]).values, vectors(1, 0).astype(np.float32))
    np.testing.assert_array_equal(online.read_latest(seconds, ["A"]).values, vectors(1, 1).astype(np.float32))


def test_symbols_never_written_are_missing(online: OnlineStore) -> None:
    online.write_latest(RISK, T0, ["A"], vectors(1, 0))
    with pytest.raises(MissingFeaturesError, match="symbols: B"):
        online.read_windows(RISK, ["A", "B"], 2)


def test_stale_or_other_bars_are_errors_not_answers(online: OnlineStore) -> None:
    online.write_latest(RISK, T0, ["A", "B"], vectors(2, 0))
    online.write_latest(RISK, T0 + MINUTE, ["A"], vectors(1, 1))
    with pytest.raises(StaleFeaturesError, match="symbols: B"):
        online.read_latest(RISK, ["A", "B"], as_of_ns=T0 + MINUTE)
    with pytest.raises(StaleFeaturesError, match="more than 90"):
        online.read_windows(RISK, ["A", "B"], 2, max_age_s=90, now_ns=T0 + 3 * MINUTE)
    assert online.read_latest(RISK, ["A"], max_age_s=90, now_ns=T0 + 3 * MINUTE).ts_ns.tolist() == [T0 + MINUTE]


@pytest.mark.parametrize(
    ("symbols", "values", "problem"),
    [
        (["A"], np.zeros((1, 3)), "shape"),
        (["A", "A"], np.zeros((2, len(RISK))), "distinct"),
        (["A B"], np.zeros((1, len(RISK))), "malformed symbol"),
        (["A"], np.full((1, len(RISK)), np.inf), "infinite"),
    ],
)
def test_bad_writes_are_refused_and_store_nothing(online: OnlineStore, symbols: Any, values: Any, problem: str) -> None:
    with pytest.raises(DataValidationError, match=problem):
        online.write_latest(RISK, T0, symbols, values)
    with pytest.raises(MissingFeaturesError):
        online.read_latest(RISK, ["A"])


def test_a_write_off_the_bar_grid_is_refused(online: OnlineStore) -> None:
    with pytest.raises(DataValidationError, match="not a bar start"):
        online.write_latest(RISK, T0 + 1, ["A"], vectors(1, 0))


def test_a_window_longer_than_the_store_keeps_is_refused(online: OnlineStore) -> None:
    with pytest.raises(ValueError, match=r"1\.\.8"):
        online.read_windows(RISK, ["A"], 9)


def test_keys_expire_after_their_ttl() -> None:
    clock = Clock()
    store = InMemoryOnlineStore(OnlineLayout(window=8, ttl_s=1000.0), clock_ns=clock)
    store.write_latest(RISK, T0, ["A"], vectors(1, 0))
    clock.now += 999 * NS_PER_S
    store.read_latest(RISK, ["A"])
    clock.now += 2 * NS_PER_S
    with pytest.raises(MissingFeaturesError):
        store.read_latest(RISK, ["A"])


def test_redis_keys_carry_a_ttl(service_urls: ServiceUrls) -> None:
    layout = OnlineLayout(prefix="test:" + secrets.token_hex(4), window=8, ttl_s=1000.0)
    store = RedisOnlineStore.from_url(service_urls.redis_url, layout)
    try:
        store.write_latest(RISK, T0 + 3 * MINUTE, ["A"], vectors(1, 0))
        ttl = store._client.pttl(layout.key(RISK, "A"))
        assert 990_000 < ttl <= 1_000_000
    finally:
        store.close()


def test_an_unreachable_redis_is_a_storage_error() -> None:
    store = RedisOnlineStore.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(StorageError, match="online read of feature set 'risk' failed"):
        store.read_latest(RISK, ["A"])
    with pytest.raises(StorageError, match="online read of feature set 'price' failed"):
        store.read_windows_many([PRICE, RISK], ["A"], 4)


def test_repeated_reads_of_the_same_symbols_see_new_bars_and_survive_a_dropped_connection(
    service_urls: ServiceUrls,
) -> None:
    """The engine and the service read the same symbols every bar (the read command is
    prepared once): each read must still see what was written since, and a connection the
    server dropped is replaced."""
    layout = OnlineLayout(prefix="test:" + secrets.token_hex(4), window=8, ttl_s=3600.0)
    store = RedisOnlineStore.from_url(service_urls.redis_url, layout)
    admin = redis.Redis.from_url(service_urls.redis_url)
    try:
        for i in range(3):
            store.write_latest(RISK, T0 + i * MINUTE, ["A", "B"], vectors(2, i))
            store.write_latest(PRICE, T0 + i * MINUTE, ["A", "B"], vectors(2, 10 + i, len(PRICE)))
            got = store.read_windows_many([PRICE, RISK], ["A", "B"], 2, as_of_ns=T0 + i * MINUTE)
            np.testing.assert_array_equal(got[1].values[:, -1], vectors(2, i).astype(np.float32))
            np.testing.assert_array_equal(got[0].values[:, -1], vectors(2, 10 + i, len(PRICE)).astype(np.float32))
        assert admin.client_kill_filter(_id=store._client.client_id()) == 1  # the server drops the store's connection
        again = store.read_windows_many([PRICE, RISK], ["A", "B"], 2, as_of_ns=T0 + 2 * MINUTE)
        np.testing.assert_array_equal(again[1].values, got[1].values)
        other = store.read_windows_many([RISK], ["B"], 3)  # another read in between, then the first again
        assert other[0].symbols == ("B",) and other[0].values.shape == (1, 3, len(RISK))
        again = store.read_windows_many([PRICE, RISK], ["A", "B"], 2)
        np.testing.assert_array_equal(again[0].values, got[0].values)
    finally:
        admin.close()
        store.close()


# --- offline --------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "postgres"])
def offline(request: pytest.FixtureRequest) -> Iterator[OfflineStore]:
    if request.param == "memory":
        yield InMemoryOfflineStore()
        return
    url: str = request.getfixturevalue("fresh_database_url")
    loop = asyncio.new_event_loop()
    pool = loop.run_until_complete(open_pool(url))
    store = PostgresOfflineStore(pool)
    store.loop = loop  # type: ignore[attr-defined]
    yield store
    loop.run_until_complete(pool.close())
    loop.close()


def run(store: OfflineStore, coroutine: Any) -> Any:
    loop = getattr(store, "loop", None)
    return loop.run_until_complete(coroutine) if loop is not None else asyncio.run(coroutine)


@pytest.fixture(scope="module")
def market_bars() -> pd.DataFrame:
    return simulate_market(SyntheticMarketConfig(symbols=3, days=0.4, seed=4)).bars()


def test_features_round_trip_bit_for_bit_with_nan_warm_up(offline: OfflineStore, market_bars: pd.DataFrame) -> None:
    features = compute_features(PRICE, market_bars)
    assert run(offline, offline.write_features(PRICE, features)) == len(features)
    back = run(offline, offline.read_features(PRICE, 0, 2**62))
    pd.testing.assert_frame_equal(back, features, check_dtype=False)


def test_features_are_read_by_time_range_and_symbols(offline: OfflineStore, market_bars: pd.DataFrame) -> None:
    features = compute_features(PRICE, market_bars)
    run(offline, offline.write_features(PRICE, features))
    start, end = int(features["ts_ns"].iloc[100]), int(features["ts_ns"].iloc[200])
    symbol = str(features["symbol"].iloc[0])
    back = run(offline, offline.read_features(PRICE, start, end, [symbol]))
    want = features[(features["ts_ns"] >= start) & (features["ts_ns"] < end) & (features["symbol"] == symbol)]
    pd.testing.assert_frame_equal(back, want.reset_index(drop=True), check_dtype=False)
    assert len(run(offline, offline.read_features(RISK, 0, 2**62))) == 0  # another set, nothing


def test_a_rewrite_with_replace_is_idempotent_and_without_is_refused(
    offline: OfflineStore, market_bars: pd.DataFrame
) -> None:
    features = compute_features(RISK, market_bars)
    run(offline, offline.write_features(RISK, features))
    run(offline, offline.write_features(RISK, features, replace=True))
    assert len(run(offline, offline.read_features(RISK, 0, 2**62))) == len(features)
    with pytest.raises((StorageError, DataValidationError)):
        run(offline, offline.write_features(RISK, features.iloc[:10]))
    assert len(run(offline, offline.read_features(RISK, 0, 2**62))) == len(features)


def test_bad_feature_tables_are_refused_whole(offline: OfflineStore, market_bars: pd.DataFrame) -> None:
    features = compute_features(RISK, market_bars)
    broken = features.copy()
    broken.loc[50, "ret_1"] = np.inf
    with pytest.raises(DataValidationError, match="ret_1 is infinite"):
        run(offline, offline.write_features(RISK, broken))
    with pytest.raises(DataValidationError, match="missing column"):
        run(offline, offline.write_features(RISK, features.drop(columns=["ret_15"])))
    with pytest.raises(DataValidationError, match="not features of this set"):
        run(offline, offline.write_features(RISK, features.assign(extra=1.0)))
    assert len(run(offline, offline.read_features(RISK, 0, 2**62))) == 0


def test_labels_round_trip_and_filter(offline: OfflineStore, market_bars: pd.DataFrame) -> None:
    labels = pd.concat([forward_return_labels(market_bars, h) for h in (1, 15)], ignore_index=True)
    assert run(offline, offline.write_labels(labels)) == len(labels)
    back = run(offline, offline.read_labels(["fwd_ret_15"], 0, 2**62))
    want = labels[labels["name"] == "fwd_ret_15"].sort_values(["symbol", "ts_ns"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(back, want, check_dtype=False)
    broken = labels.head(3).assign(value=[0.1, np.nan, 0.2])
    with pytest.raises(DataValidationError, match="finite"):
        run(offline, offline.write_labels(broken))
