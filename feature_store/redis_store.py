"""The online store on Redis (or Valkey): one round trip to write or read every symbol.

A write is one Lua script call: it refuses the call if the bar is a window or more older
than the newest bar written (see :mod:`feature_store.online_layout`), then per symbol does
one ``SETRANGE`` of the record into its ring slot; a new key also gets its header and TTL,
and each key's TTL is refreshed once per window, spread over the symbols. A read is one
``MGET`` of the version key and every symbol's key.

Measured choices (``benchmarks/bench_online_store.py``): a hash of one field per feature is
far too slow for 1,000 symbols in redis-py; a pipeline of 1,000 commands costs ten times
one script call; reading each key's slot before writing it (a per-key guard against late
writes) cost 0.7 ms per 1,000 symbols, so the guard is one bar number per set version.
Scripts touch only keys passed in ``KEYS``, so the store also works on a Redis Cluster when
all keys of a call hash to one slot (use a ``{tag}`` in the prefix).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy.typing as npt
import redis

from feature_store.errors import StorageError
from feature_store.features.registry import FeatureSet
from feature_store.online_layout import LayoutReads, OnlineLayout

__all__ = ["RedisOnlineStore"]

_WRITE = """
local version, bar, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local rec, offset, full, header = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local ttl_ms, blob = tonumber(ARGV[8]), ARGV[9]
local latest = tonumber(redis.call('GET', KEYS[2]) or '-1')
if latest >= 0 and bar <= latest - window then
  return #KEYS - 2
end
redis.call('SET', KEYS[1], version, 'PX', ttl_ms)
if bar > latest then
  redis.call('SET', KEYS[2], bar, 'PX', ttl_ms)
end
for i = 3, #KEYS do
  local key = KEYS[i]
  local length = redis.call('SETRANGE', key, offset, string.sub(blob, (i - 3) * rec + 1, (i - 2) * rec))
  if length < full then
    redis.call('SETRANGE', key, full - #header, header)
    redis.call('PEXPIRE', key, ttl_ms)
  elseif (bar + i) % window == 0 then
    redis.call('PEXPIRE', key, ttl_ms)
  end
end
return 0
"""


class RedisOnlineStore(LayoutReads):
    """Online features in Redis.

    Args:
        client: a synchronous ``redis.Redis`` (thread-safe; use ``asyncio.to_thread`` from
            asyncio code). ``RedisOnlineStore.from_url`` builds one.
        layout: key prefix, window length and TTL.
    """

    def __init__(self, client: redis.Redis, layout: OnlineLayout | None = None) -> None:
        self._client = client
        self.layout = layout or OnlineLayout()
        self._write_script = client.register_script(_WRITE)
        self._prepared: dict[tuple[str, str], tuple[tuple[str, ...], list[str]]] = {}
        # The last multi-set read: (sets, symbols, keys, the MGET command packed once).
        self._read_prepared: tuple[tuple[tuple[str, str], ...], list[str], list[str], list[bytes] | None] = (
            (),
            [],
            [],
            None,
        )

    @classmethod
    def from_url(cls, url: str, layout: OnlineLayout | None = None) -> RedisOnlineStore:
        """A store on the server at ``url`` (``redis://:password@host:port/db``)."""
        return cls(redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0), layout)

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()

    def in_namespace(self, namespace: str) -> RedisOnlineStore:
        """The same server under ``namespace`` (see :meth:`OnlineLayout.in_namespace`), sharing the client."""
        return RedisOnlineStore(self._client, self.layout.in_namespace(namespace))

    def clear_namespace(self) -> int:
        """Delete every key of this namespaced store; return how many. Refused on a live prefix."""
        if ":ns:" not in self.layout.prefix:
            raise ValueError(f"refusing to clear {self.layout.prefix!r}: only a namespaced store can be cleared")
        deleted = 0
        try:
            batch: list[bytes] = []
            for key in self._client.scan_iter(match=f"{self.layout.prefix}:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += int(self._client.delete(*batch))
                    batch = []
            if batch:
                deleted += int(self._client.delete(*batch))
        except redis.RedisError as exc:
            raise StorageError(f"clearing online namespace {self.layout.prefix!r} failed: {exc}") from exc
        return deleted

    def write_latest(self, feature_set: FeatureSet, ts_ns: int, symbols: Sequence[str], values: npt.ArrayLike) -> int:
        """See :meth:`feature_store.stores.OnlineStore.write_latest`."""
        call = self._script_call(feature_set, ts_ns, symbols, values)
        if call is None:
            return 0
        keys, args = call
        return int(self._call(lambda: self._write_script(keys=keys, args=args), "write", feature_set))

    def write_latest_many(self, items: Sequence[tuple[FeatureSet, int, Sequence[str], npt.ArrayLike]]) -> int:
        """:meth:`write_latest` of several sets in one round trip (one pipeline of scripts).

        Each item is ``(feature_set, ts_ns, symbols, values)``. Every item is checked before
        anything is sent. Returns the symbols refused as too old, summed over the items.
        """
        calls = [call for item in items if (call := self._script_call(*item)) is not None]
        if not calls:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for keys, args in calls:
            self._write_script(keys=keys, args=args, client=pipe)
        results = self._call(pipe.execute, "write", items[0][0])
        return sum(int(r) for r in results)

    def _script_call(
        self, feature_set: FeatureSet, ts_ns: int, symbols: Sequence[str], values: npt.ArrayLike
    ) -> tuple[list[str], list[bytes | str | int]] | None:
        keys = self._keys(feature_set, symbols)
        blob = self.layout.encode(feature_set, ts_ns, symbols, values)
        if not symbols:
            return None
        layout = self.layout
        args: list[bytes | str | int] = [
            feature_set.version,
            layout.bar_number(feature_set, ts_ns),
            layout.window,
            layout.record_bytes(feature_set),
            layout.slot_offset(feature_set, ts_ns),
            layout.value_bytes(feature_set),
            layout.header(feature_set),
            int(layout.ttl_s * 1000),
            blob,
        ]
        return [layout.version_key(feature_set), layout.latest_key(feature_set), *keys], args

    def _keys(self, feature_set: FeatureSet, symbols: Sequence[str]) -> list[str]:
        # The engine writes the same symbols every bar: checking and naming them once per
        # set pays.
        names = tuple(symbols)
        cached = self._prepared.get((feature_set.name, feature_set.version))
        if cached is not None and cached[0] == names:
            return cached[1]
        self.layout.check_symbols(feature_set, symbols)
        keys = [self.layout.key(feature_set, s) for s in symbols]
        if len(self._prepared) > 64:
            self._prepared.clear()
        self._prepared[(feature_set.name, feature_set.version)] = (names, keys)
        return keys

    def _fetch(self, feature_set: FeatureSet, symbols: Sequence[str]) -> tuple[bytes | None, list[bytes | None]]:
        keys = [self.layout.version_key(feature_set)] + [self.layout.key(feature_set, s) for s in symbols]
        values = self._call(lambda: self._client.mget(keys), "read", feature_set)
        return values[0], list(values[1:])

    def _fetch_many(
        self, feature_sets: Sequence[FeatureSet], symbols: Sequence[str]
    ) -> list[tuple[bytes | None, list[bytes | None]]]:
        # A model reads the same symbols every bar: building 2,000 key names (~0.7 ms) and
        # packing them into the MGET command (~0.6 ms) once pays.
        sets = tuple((fs.name, fs.version) for fs in feature_sets)
        last_sets, last_symbols, keys, packed = self._read_prepared
        if sets != last_sets or last_symbols != symbols:
            keys = []
            for fs in feature_sets:
                keys.append(self.layout.version_key(fs))
                keys.extend(self.layout.key(fs, s) for s in symbols)
            packed = None
        values, packed = self._call(lambda: self._mget(keys, packed), "read", feature_sets[0]) if keys else ([], None)
        self._read_prepared = (sets, list(symbols), keys, packed)
        out, step = [], len(symbols) + 1
        for i in range(len(feature_sets)):
            chunk = values[i * step : (i + 1) * step]
            out.append((chunk[0], list(chunk[1:])))
        return out

    def _mget(self, keys: list[str], packed: list[bytes] | None) -> tuple[list[bytes | None], list[bytes]]:
        """``MGET keys`` and the packed command, sending ``packed`` when given instead of
        packing the command again; retried like any command of the client."""
        pool = self._client.connection_pool
        conn: Any = pool.get_connection()  # redis-py leaves the connection methods untyped
        try:
            command = packed if packed is not None else conn.pack_command("MGET", *keys)

            def attempt() -> list[bytes | None]:
                conn.send_packed_command(command)
                return conn.read_response()  # type: ignore[no-any-return]

            return conn.retry.call_with_retry(attempt, lambda _error: conn.disconnect()), command
        except redis.ResponseError:
            raise  # the server answered: the connection is in step
        except BaseException:
            conn.disconnect()  # a reply may be half read: never reuse this connection
            raise
        finally:
            pool.release(conn)

    def _call(self, action: Any, what: str, feature_set: FeatureSet) -> Any:
        try:
            return action()
        except redis.RedisError as exc:
            raise StorageError(f"online {what} of feature set {feature_set.name!r} failed: {exc}") from exc
