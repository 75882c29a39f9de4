"""The online store on Redis (or Valkey): one round trip to write or read every symbol.

Writes run one Lua script: per symbol, a ``GETRANGE`` of the 8-byte timestamp in the target
slot (a newer bar there refuses the write) and a ``SETRANGE`` of the record; the header and
TTL are set when the key is new or the ring wraps. Reads are one ``MGET`` of the version
key and every symbol's key. See :mod:`feature_store.online_layout` for the bytes.

Measured choices (``benchmarks/bench_online_store.py``): a hash of one field per feature is
far too slow for 1,000 symbols in redis-py, and a pipeline of 1,000 commands costs ten
times one script call; the script keeps the write to one command however many symbols.
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
from feature_store.online_layout import OnlineLayout
from feature_store.stores import FeatureVectors, FeatureWindows

__all__ = ["RedisOnlineStore"]

_WRITE = """
local header, rec, offset = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl_ms, refresh, version, blob = tonumber(ARGV[4]), ARGV[5] == '1', ARGV[6], ARGV[7]
local refused = 0
redis.call('SET', KEYS[1], version, 'PX', ttl_ms)
for i = 2, #KEYS do
  local record = string.sub(blob, (i - 2) * rec + 1, (i - 1) * rec)
  local stored = redis.call('GETRANGE', KEYS[i], offset, offset + 7)
  if #stored == 8 and stored > string.sub(record, 1, 8) then
    refused = refused + 1
  else
    redis.call('SETRANGE', KEYS[i], offset, record)
    if #stored < 8 or refresh then
      redis.call('SETRANGE', KEYS[i], 0, header)
      redis.call('PEXPIRE', KEYS[i], ttl_ms)
    end
  end
end
return refused
"""


class RedisOnlineStore:
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

    @classmethod
    def from_url(cls, url: str, layout: OnlineLayout | None = None) -> RedisOnlineStore:
        """A store on the server at ``url`` (``redis://:password@host:port/db``)."""
        return cls(redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0), layout)

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()

    def write_latest(self, feature_set: FeatureSet, ts_ns: int, symbols: Sequence[str], values: npt.ArrayLike) -> int:
        """See :meth:`feature_store.stores.OnlineStore.write_latest`."""
        blob = self.layout.encode(feature_set, ts_ns, symbols, values)
        if not symbols:
            return 0
        keys = [self.layout.version_key(feature_set)] + [self.layout.key(feature_set, s) for s in symbols]
        args: list[bytes | str | int] = [
            self.layout.header(feature_set),
            self.layout.record_bytes(feature_set),
            self.layout.slot_offset(feature_set, ts_ns),
            int(self.layout.ttl_s * 1000),
            "1" if self.layout.refreshes_ttl(feature_set, ts_ns) else "0",
            feature_set.version,
            blob,
        ]
        return int(self._call(lambda: self._write_script(keys=keys, args=args), "write", feature_set))

    def read_latest(
        self,
        feature_set: FeatureSet,
        symbols: Sequence[str],
        *,
        as_of_ns: int | None = None,
        max_age_s: float | None = None,
        now_ns: int | None = None,
    ) -> FeatureVectors:
        """See :meth:`feature_store.stores.OnlineStore.read_latest`."""
        version, blobs = self._mget(feature_set, symbols)
        return self.layout.decode_latest(
            feature_set, symbols, version, blobs, as_of_ns=as_of_ns, max_age_s=max_age_s, now_ns=now_ns
        )

    def read_windows(
        self,
        feature_set: FeatureSet,
        symbols: Sequence[str],
        length: int,
        *,
        as_of_ns: int | None = None,
        max_age_s: float | None = None,
        now_ns: int | None = None,
    ) -> FeatureWindows:
        """See :meth:`feature_store.stores.OnlineStore.read_windows`."""
        self.layout.check_length(length)
        version, blobs = self._mget(feature_set, symbols)
        return self.layout.decode_windows(
            feature_set, symbols, length, version, blobs, as_of_ns=as_of_ns, max_age_s=max_age_s, now_ns=now_ns
        )

    def _mget(self, feature_set: FeatureSet, symbols: Sequence[str]) -> tuple[bytes | None, list[bytes | None]]:
        if isinstance(symbols, str):
            raise TypeError("symbols must be a sequence of names, not one string")
        keys = [self.layout.version_key(feature_set)] + [self.layout.key(feature_set, s) for s in symbols]
        values = self._call(lambda: self._client.mget(keys), "read", feature_set)
        return values[0], list(values[1:])

    def _call(self, action: Any, what: str, feature_set: FeatureSet) -> Any:
        try:
            return action()
        except redis.RedisError as exc:
            raise StorageError(f"online {what} of feature set {feature_set.name!r} failed: {exc}") from exc
