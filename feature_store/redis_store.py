"""The online store on Redis (or Valkey): one round trip to write or read every symbol.

A write is one Lua script call: it refuses the call if the bar is a window or more older
than the newest bar written (see :mod:`feature_store.online_layout`), then per symbol does
one ``SETRANGE`` of the record into its ring slot; a new key also gets its header and TTL,
and each key's TTL is refreshed once per window, spread over the symbols. A read is one
``MGET`` of the version key and every symbol's key, or, with a window cache (the model
service's), one script call returning only the records written since the last read.

Scripts are called with ``EVALSHA`` packed here, several in one write (redis-py's script
objects ask ``SCRIPT EXISTS`` first in a pipeline: a second round trip); a server that
answers ``NOSCRIPT`` is given the scripts and the calls again, which is safe since a write
of the same records is idempotent.

Measured choices (``benchmarks/bench_online_store.py``): a hash of one field per feature is
far too slow for 1,000 symbols in redis-py; a pipeline of 1,000 commands costs ten times
one script call; reading each key's slot before writing it (a per-key guard against late
writes) cost 0.7 ms per 1,000 symbols, so the guard is one bar number per set version.
Scripts touch only keys passed in ``KEYS``, so the store also works on a Redis Cluster when
all keys of a call hash to one slot (use a ``{tag}`` in the prefix).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy.typing as npt
import redis

from feature_store.errors import StorageError
from feature_store.features.registry import FeatureSet
from feature_store.online_layout import LayoutReads, OnlineLayout
from feature_store.stores import FeatureWindows
from feature_store.window_cache import CachedRings, WindowCache

__all__ = ["RedisOnlineStore"]

_WRITE = """
local version, bar, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local rec, offset, full, header = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local ttl_ms, blob = tonumber(ARGV[8]), ARGV[9]
local latest = tonumber(redis.call('GET', KEYS[2]) or '-1')
if latest >= 0 and bar <= latest - window then
  return #KEYS - 3
end
redis.call('SET', KEYS[1], version, 'PX', ttl_ms)
if bar > latest then
  redis.call('SET', KEYS[2], bar, 'PX', ttl_ms)
end
local rewritten = bar < latest
for i = 4, #KEYS do
  local key = KEYS[i]
  local length = redis.call('SETRANGE', key, offset, string.sub(blob, (i - 4) * rec + 1, (i - 3) * rec))
  if length < full then
    redis.call('SETRANGE', key, full - #header, header)
    redis.call('PEXPIRE', key, ttl_ms)
    rewritten = true
  elseif (bar + i - 1) % window == 0 then
    redis.call('PEXPIRE', key, ttl_ms)
  end
end
if rewritten then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[3], now[1] .. '.' .. now[2], 'PX', ttl_ms)
else
  redis.call('PEXPIRE', KEYS[3], ttl_ms)
end
return 0
"""

# Reads the records of bars ``ARGV[1]`` (the newest bar a reader holds) up to the newest bar
# written, or every value whole when the reader's copy cannot be brought up to date that way.
_READ_SINCE = """
local version = redis.call('GET', KEYS[1])
local latest = tonumber(redis.call('GET', KEYS[2]) or '-1')
local generation = redis.call('GET', KEYS[3]) or ''
local since, window, rec = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {version, latest, generation}
if since < 0 or latest < since or latest - since >= window or generation == '' or generation ~= ARGV[2] then
  out[4] = 'whole'
  for i = 4, #KEYS do
    out[i + 1] = redis.call('GET', KEYS[i])
  end
  return out
end
out[4] = 'since'
local a, b = since % window, latest % window
for i = 4, #KEYS do
  if a <= b then
    out[i + 1] = redis.call('GETRANGE', KEYS[i], a * rec, (b + 1) * rec - 1)
  else
    out[i + 1] = redis.call('GETRANGE', KEYS[i], a * rec, window * rec - 1)
      .. redis.call('GETRANGE', KEYS[i], 0, (b + 1) * rec - 1)
  end
end
return out
"""


class RedisOnlineStore(LayoutReads):
    """Online features in Redis.

    Args:
        client: a synchronous ``redis.Redis`` (thread-safe; use ``asyncio.to_thread`` from
            asyncio code). ``RedisOnlineStore.from_url`` builds one.
        layout: key prefix, window length and TTL.
        window_cache: keep the rings read in memory and read only the new bars next time
            (see :mod:`feature_store.window_cache`); the model service does.
    """

    def __init__(self, client: redis.Redis, layout: OnlineLayout | None = None, *, window_cache: bool = False) -> None:
        self._client = client
        self.layout = layout or OnlineLayout()
        self.window_cache = WindowCache() if window_cache else None
        self._shas = {
            script: hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest().encode()
            for script in (_WRITE, _READ_SINCE)
        }
        # Per set version: the symbols last named and their keys as RESP bulk strings, built once.
        self._prepared: dict[tuple[str, str], tuple[tuple[str, ...], bytes]] = {}
        # The last multi-set read: (sets, symbols, keys, the MGET command packed once).
        self._read_prepared: tuple[tuple[tuple[str, str], ...], list[str], list[str], list[bytes] | None] = (
            (),
            [],
            [],
            None,
        )

    @classmethod
    def from_url(cls, url: str, layout: OnlineLayout | None = None, *, window_cache: bool = False) -> RedisOnlineStore:
        """A store on the server at ``url`` (``redis://:password@host:port/db``)."""
        client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
        return cls(client, layout, window_cache=window_cache)

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()

    def in_namespace(self, namespace: str) -> RedisOnlineStore:
        """The same server under ``namespace`` (see :meth:`OnlineLayout.in_namespace`), sharing the
        client (with a window cache of its own when this store has one)."""
        return RedisOnlineStore(
            self._client, self.layout.in_namespace(namespace), window_cache=self.window_cache is not None
        )

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

    # --- writes ---------------------------------------------------------------------------

    def write_latest(self, feature_set: FeatureSet, ts_ns: int, symbols: Sequence[str], values: npt.ArrayLike) -> int:
        """See :meth:`feature_store.stores.OnlineStore.write_latest`."""
        return self.write_latest_many([(feature_set, ts_ns, symbols, values)])

    def write_latest_many(self, items: Sequence[tuple[FeatureSet, int, Sequence[str], npt.ArrayLike]]) -> int:
        """:meth:`write_latest` of several sets in one round trip (an ``EVALSHA`` per set, sent
        together; a server that lost the script gets it and the calls again).

        Each item is ``(feature_set, ts_ns, symbols, values)``. Every item is checked before
        anything is sent. Returns the symbols refused as too old, summed over the items.
        """
        commands = [call for item in items if (call := self._write_command(*item)) is not None]
        if not commands:
            return 0
        results = self._scripts(commands, "write", items[0][0])
        return sum(int(r) for r in results)

    def _write_command(
        self, feature_set: FeatureSet, ts_ns: int, symbols: Sequence[str], values: npt.ArrayLike
    ) -> bytes | None:
        keys = self._keys(feature_set, symbols)
        blob = self.layout.encode(feature_set, ts_ns, symbols, values)
        if not symbols:
            return None
        layout = self.layout
        head = [layout.version_key(feature_set), layout.latest_key(feature_set), layout.generation_key(feature_set)]
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
        return _evalsha(self._shas[_WRITE], head, len(symbols), keys, args)

    def _keys(self, feature_set: FeatureSet, symbols: Sequence[str]) -> bytes:
        # The engine writes (and the service reads) the same symbols every bar: checking,
        # naming and packing them once per set pays.
        names = tuple(symbols)
        cached = self._prepared.get((feature_set.name, feature_set.version))
        if cached is not None and cached[0] == names:
            return cached[1]
        self.layout.check_symbols(feature_set, symbols)
        keys = _bulk([self.layout.key(feature_set, s) for s in symbols])
        if len(self._prepared) > 64:
            self._prepared.clear()
        self._prepared[(feature_set.name, feature_set.version)] = (names, keys)
        return keys

    # --- reads through the window cache ---------------------------------------------------

    def read_windows_many(
        self,
        feature_sets: Sequence[FeatureSet],
        symbols: Sequence[str],
        length: int,
        *,
        as_of_ns: int | None = None,
        max_age_s: float | None = None,
        now_ns: int | None = None,
    ) -> list[FeatureWindows]:
        """See :meth:`LayoutReads.read_windows_many`; with a window cache, one round trip that
        reads only the bars written since the last read of the same symbols."""
        cache = self.window_cache
        if cache is None:
            return super().read_windows_many(
                feature_sets, symbols, length, as_of_ns=as_of_ns, max_age_s=max_age_s, now_ns=now_ns
            )
        self.layout.check_length(length)
        if isinstance(symbols, str):
            raise TypeError("symbols must be a sequence of names, not one string")
        with cache.lock:
            rings = self._cached_rings(cache, feature_sets, list(symbols))
            return [
                self.layout.ring_windows(
                    fs, symbols, length, r.ts, r.records, as_of_ns=as_of_ns, max_age_s=max_age_s, now_ns=now_ns
                )
                for fs, r in zip(feature_sets, rings, strict=True)
            ]

    def _cached_rings(
        self, cache: WindowCache, feature_sets: Sequence[FeatureSet], symbols: list[str]
    ) -> list[CachedRings]:
        held = [cache.get(fs, symbols) for fs in feature_sets]
        commands = [self._read_command(fs, symbols, h) for fs, h in zip(feature_sets, held, strict=True)]
        replies = self._scripts(commands, "read", feature_sets[0])
        out: list[CachedRings | None] = []
        for fs, h, reply in zip(feature_sets, held, replies, strict=True):
            _, latest, generation, mode, *values = reply
            if mode == b"since" and h is not None and h.advance(self.layout, fs, int(latest), generation, values):
                cache.partial_reads += 1
                out.append(h)
            elif mode == b"since":
                out.append(None)  # a key went away since: read whole below
            else:
                out.append(self._whole(cache, fs, symbols, reply))
        if None in out:  # rare: one more round trip, reading those rings whole
            again = [fs for fs, r in zip(feature_sets, out, strict=True) if r is None]
            for fs in again:
                cache.drop(fs, symbols)
            replies = self._scripts([self._read_command(fs, symbols, None) for fs in again], "read", again[0])
            whole = iter(self._whole(cache, fs, symbols, reply) for fs, reply in zip(again, replies, strict=True))
            out = [r if r is not None else next(whole) for r in out]
        return [r for r in out if r is not None]

    def _whole(self, cache: WindowCache, fs: FeatureSet, symbols: list[str], reply: list[Any]) -> CachedRings:
        """The rings of a reply holding every value whole, checked, kept in ``cache``."""
        version, latest, generation, _, *values = reply
        ts, records = self.layout.records(fs, symbols, version, values)
        rings = CachedRings(int(latest), generation, ts.copy(), records.copy())
        cache.whole_reads += 1
        if latest >= 0 and generation:
            cache.put(fs, symbols, rings)
        return rings

    def _read_command(self, feature_set: FeatureSet, symbols: Sequence[str], held: CachedRings | None) -> bytes:
        layout = self.layout
        head = [layout.version_key(feature_set), layout.latest_key(feature_set), layout.generation_key(feature_set)]
        since, generation = (held.since, held.generation) if held is not None else (-1, b"")
        args: list[bytes | str | int] = [since, generation, layout.window, layout.record_bytes(feature_set)]
        return _evalsha(self._shas[_READ_SINCE], head, len(symbols), self._keys(feature_set, symbols), args)

    # --- one round trip -------------------------------------------------------------------

    def _scripts(self, commands: list[bytes], what: str, feature_set: FeatureSet) -> list[Any]:
        """The replies to ``commands`` (``EVALSHA`` calls) sent in one write; a server without
        the scripts (restarted, flushed) is given them and the calls are sent again."""
        replies: list[Any] = self._call(lambda: self._exchange(commands), what, feature_set)
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            for script in self._shas:
                self._call(lambda script=script: self._client.script_load(script), what, feature_set)
            replies = self._call(lambda: self._exchange(commands), what, feature_set)
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise StorageError(f"online {what} of feature set {feature_set.name!r} failed: {reply}") from reply
        return replies

    def _exchange(self, commands: list[bytes]) -> list[Any]:
        """Send ``commands`` (packed) in one write and read every reply; an error reply is
        returned as its exception. Retried like any command of the client."""
        pool = self._client.connection_pool
        conn: Any = pool.get_connection()  # redis-py leaves the connection methods untyped
        try:

            def attempt() -> list[Any]:
                conn.send_packed_command(commands)
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(conn.read_response())
                    except redis.ResponseError as exc:  # the server answered: the connection is in step
                        replies.append(exc)
                return replies

            replies: list[Any] = conn.retry.call_with_retry(attempt, lambda _error: conn.disconnect())
            return replies
        except BaseException:
            conn.disconnect()  # a reply may be half read: never reuse this connection
            raise
        finally:
            pool.release(conn)

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


def _bulk(args: Sequence[bytes | str | int]) -> bytes:
    """``args`` as RESP bulk strings, back to back."""
    out = []
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _evalsha(sha: bytes, head: Sequence[str], symbols: int, keys: bytes, args: Sequence[bytes | str | int]) -> bytes:
    """``EVALSHA sha`` as one RESP command: the ``head`` keys, then the ``symbols`` keys already
    packed, then ``args``."""
    count = 3 + len(head) + symbols + len(args)
    return b"*%d\r\n" % count + _bulk([b"EVALSHA", sha, len(head) + symbols, *head]) + keys + _bulk(args)
