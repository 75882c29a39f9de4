"""The engine as services: ingest shards and a trader, connected by a Redis Stream.

``python -m engine ingest --shard i/n`` streams its share of the symbols (feeds, bars,
features to Redis, recording) and, at each close, once the features are online, adds a
*bar-closed* event to the stream ``{prefix}:{bar}s`` (the interval, the shard and its bars).
``python -m engine trade --shards n`` reads the stream in a consumer group and decides a bar
once every shard has closed it: one batched model call for the whole universe, strategy,
risk, orders stored then sent; then it acknowledges the bar's events. Delivery is at least
once (an event not acknowledged is delivered again after a restart), and handling is
idempotent per bar: a bar at or before the last one decided (kept in Redis beside the
stream) is acknowledged without a second decision. ``python -m engine run`` is the same
parts in one process.

A shard that stops and starts again announces the bars it missed: its warm start fetches
them from the venue's history, and every interval after the last one it announced is
announced from those bars before it goes live, so the trader decides every bar once, late
rather than never. Until then the trader waits for it: a bar is decided only with every
shard's bars (the stale-data limits guard the positions meanwhile).

The trader fills its paper orders against the venue's trades, which it subscribes to
itself (as an execution connection would); it computes no bars and no features.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aredis

from engine.config import BarInterval, EngineConfig
from engine.dataplane import DataPlane, DataPlaneStats
from engine.errors import ConfigError
from engine.feeds.client import NullSink
from engine.recorder import Recorder
from engine.session import RecordOptions, Session, VenueFeeds, WallClock, check_services, warm_up_plane
from engine.summary import summarize
from engine.trade import TradingOptions, open_account, paper_core, start_trader
from engine.trading.breaker import CircuitBreaker
from engine.trading.trader import Trader
from feature_store.config import FeatureStoreSettings
from feature_store.database import open_pool
from feature_store.features.catalog import FEATURE_SETS
from feature_store.features.online import FeatureStep
from feature_store.records import NS_PER_S, Bar
from feature_store.redis_store import RedisOnlineStore
from serving.client import ModelClient

__all__ = ["BarEvents", "Shard", "StreamStats", "run_ingest", "run_stream_trader"]

log = logging.getLogger("engine.streams")

STREAM_PREFIX = "rrr:engine:bars"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the symbols whose CRC-32 modulo ``count`` is ``index``
    (stable across runs and machines, whatever the order symbols are listed in)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` with 0 <= i < n."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ConfigError(f"shard {text!r} is not i/n (e.g. 0/2)") from None
        if not 0 <= index < count:
            raise ConfigError(f"shard {text!r}: i must be 0..n-1")
        return cls(index, count)

    def share(self, symbols: Sequence[str]) -> list[str]:
        return [s for s in symbols if zlib.crc32(s.encode()) % self.count == self.index]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class BarEvents:
    """The stream of bar-closed events of one bar length, and the keys kept beside it."""

    def __init__(self, client: aredis.Redis, interval: BarInterval, prefix: str = STREAM_PREFIX) -> None:
        self.client = client
        self.interval = interval
        self.stream = f"{prefix}:{interval.seconds}s"

    def announced_key(self, shard: Shard) -> str:
        return f"{self.stream}:shard:{shard}:announced"

    def decided_key(self, account: str) -> str:
        return f"{self.stream}:decided:{account}"

    async def announced(self, shard: Shard) -> int | None:
        """The start of the last interval ``shard`` announced (None: never)."""
        value = await self.client.get(self.announced_key(shard))
        return None if value is None else int(value)

    async def announce(self, shard: Shard, start_ns: int, bars: Sequence[Bar], began_wall_ns: int) -> None:
        """Add the event of ``shard`` closing the interval at ``start_ns`` (one round trip)."""
        payload = orjson.dumps([[b.symbol, b.open, b.high, b.low, b.close, b.volume, b.buy_volume, b.vwap, b.trades]
                                for b in bars])  # fmt: skip
        fields = {"start": start_ns, "shard": str(shard), "began": began_wall_ns, "bars": payload}
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.stream, fields, maxlen=100_000, approximate=True)  # type: ignore[arg-type]
            pipe.set(self.announced_key(shard), start_ns)
            await pipe.execute()

    def bars(self, start_ns: int, payload: bytes) -> list[Bar]:
        return [Bar(row[0], start_ns, self.interval.seconds, *row[1:]) for row in orjson.loads(payload)]


# --- ingest ---------------------------------------------------------------------------------


async def run_ingest(
    options: RecordOptions,
    shard: Shard,
    *,
    database_url: str | None,
    redis_url: str,
    warmup_bars: int = 800,
    stop: asyncio.Event | None = None,
) -> dict[str, Any]:
    """Stream ``shard``'s symbols into bars, features (Redis) and the recorder, and announce every
    close on the bar stream, until ``options.duration_s`` passes or ``stop`` is set."""
    await check_services(database_url if options.database else None, redis_url)
    client = aredis.Redis.from_url(redis_url)
    events = BarEvents(client, options.interval)
    source = await VenueFeeds(options).open()
    universe = len(source.symbols)
    source.symbols = shard.share(source.symbols)
    if not source.symbols:
        raise ConfigError(f"shard {shard} holds none of the {universe} symbols")
    online = RedisOnlineStore.from_url(redis_url)
    recorder = Recorder(database_url, spool_dir=options.spool_dir) if options.database and database_url else None
    announced = {"live": 0, "caught_up": 0}

    async def on_close(start_ns: int, bars: list[Bar], steps: list[FeatureStep], began: float) -> None:
        began_wall = time.time_ns() - int((time.monotonic() - began) * NS_PER_S)
        await events.announce(shard, start_ns, bars, began_wall)
        announced["live"] += 1

    plane = DataPlane(source.symbols, [FEATURE_SETS[n] for n in options.feature_sets], online=online,
                      recorder=recorder, interval=options.interval, book_every_s=0.0, on_close=on_close)  # fmt: skip
    pool = await open_pool(database_url, min_size=1, max_size=2) if database_url else None
    try:
        last = await events.announced(shard)
        history = await warm_up_plane(pool, source, plane, warmup_bars) if pool is not None else []
        by_start: dict[int, list[Bar]] = {}
        for bar in history:
            by_start.setdefault(bar.start_ns, []).append(bar)
        # Announce what this shard missed while it was away (or, at a first start, the last
        # warm-up bar, which the trader decides at once as `engine run` does).
        missed = [s for s in sorted(by_start) if last is None or s > last]
        for start in missed if last is not None else missed[-1:]:
            await events.announce(shard, start, by_start[start], time.time_ns())
            announced["caught_up"] += 1
        if missed and last is not None:
            log.info("shard %s announced %d intervals it missed while away", shard, len(missed))
        session = Session(source, WallClock(), plane, recorder=recorder, metrics_port=options.metrics_port)
        if stop is not None:
            session.stop_event = stop
        live = time.monotonic()
        await session.run(duration_s=options.duration_s)
        return {"shard": str(shard), "symbols": len(source.symbols), "seconds": round(time.monotonic() - live, 3),
                "trades": plane.stats.trades, "bars": plane.stats.bars, "announced": announced["live"],
                "caught_up": announced["caught_up"]}  # fmt: skip
    finally:
        await source.close()
        online.close()
        if pool is not None:
            await pool.close()
        await client.aclose()


# --- the trader -----------------------------------------------------------------------------


@dataclass
class StreamStats:
    """What the stream trader did."""

    bars_decided: int = 0
    duplicates: int = 0  # events of bars decided before (delivered again): acknowledged only
    partial_bars: int = 0  # decided without every shard's bars (the trader joined mid-bar)
    partial: list[int] = field(default_factory=list)  # those bars (the last 1,000)
    events: int = 0
    trades: int = 0  # venue trades received for the paper fills
    decided: list[int] = field(default_factory=list)  # the bars decided, in order (the last 10,000)


class _StreamClock(NullSink):
    """What :class:`Trader` asks of a data plane, for a trader that computes no bars: the
    universe, and the close time of the next bar to decide (trades at or past it wait for
    that decision, as in one process)."""

    def __init__(self, symbols: Sequence[str], interval: BarInterval, grace_ns: int) -> None:
        self.symbols = sorted(symbols)
        self.interval_ns = interval.ns
        self.grace_ns = grace_ns
        self.closing_ns: int | None = None
        self.decided_until: int | None = None  # start of the last bar decided
        self.on_close: Any = None
        self.stats = DataPlaneStats()  # no bars computed here: stays empty (summaries read it)

    def next_close_ns(self) -> int | None:
        if self.closing_ns is not None:
            return self.closing_ns
        if self.decided_until is None:
            return None
        return self.decided_until + 2 * self.interval_ns + self.grace_ns

    def wake(self) -> None:
        return None


async def run_stream_trader(
    record: RecordOptions,
    options: TradingOptions,
    shards: int,
    *,
    database_url: str,
    redis_url: str,
    consumer: str = "trader-1",
    stop: asyncio.Event | None = None,
) -> tuple[Trader, StreamStats]:
    """Decide every bar the ``shards`` ingest shards announce, until ``record.duration_s`` passes
    or ``stop`` is set. Returns the trader (its summary) and what the stream brought."""
    await check_services(database_url, redis_url)
    config = EngineConfig(interval=record.interval, namespace=options.namespace)
    client = aredis.Redis.from_url(redis_url)
    events = BarEvents(client, config.interval)
    group = f"trader:{options.account}"
    with contextlib.suppress(aredis.ResponseError):  # BUSYGROUP: it exists
        await client.xgroup_create(events.stream, group, id="$", mkstream=True)  # from now on
    pool = await open_pool(database_url, min_size=1, max_size=4)
    models = ModelClient(options.serving_url, timeout_s=options.model_timeout_s, retries=0)
    source = await VenueFeeds(record).open()
    stats = StreamStats()
    stop_event = stop or asyncio.Event()
    try:
        store, state = await open_account(pool, options, record.spool_dir)
        core = paper_core(options, state, record.venues[0], config.interval.seconds)
        grace_ns = int(options.grace_s * NS_PER_S)
        trader = Trader(core, store, models, interval=config.interval, grace_ns=grace_ns, namespace=config.namespace,
                        breaker=CircuitBreaker(options.breaker_failures, options.breaker_cooldown_s))  # fmt: skip
        core.submit(trader.restore(state))
        await start_trader(trader, models, options)
        clock = _StreamClock(source.symbols, config.interval, grace_ns)
        trader.attach(clock)  # type: ignore[arg-type]
        decided = await client.get(events.decided_key(options.account))
        clock.decided_until = None if decided is None else int(decided)
        pending: dict[int, dict[str, tuple[bytes, bytes, int]]] = {}  # start -> shard -> (id, bars, began)

        async def decide_ready() -> None:
            while pending:
                start = min(pending)
                complete = len(pending[start]) >= shards
                if not complete and not any(len(v) >= shards for s, v in pending.items() if s > start):
                    return  # wait for the other shards
                # A later bar complete before this one: the rest of this one never comes (the
                # trader joined mid-bar): decided with the shards it has.
                if not complete:
                    stats.partial_bars += 1
                    stats.partial = [*stats.partial[-999:], start]
                got = pending.pop(start)
                ids = [entry[0] for entry in got.values()]
                if clock.decided_until is not None and start <= clock.decided_until:
                    stats.duplicates += len(ids)
                else:
                    bars = [b for _, payload, _ in got.values() for b in events.bars(start, payload)]
                    began_wall = min(entry[2] for entry in got.values())
                    began = time.monotonic() - max(0.0, (time.time_ns() - began_wall) / NS_PER_S)
                    clock.closing_ns = start + clock.interval_ns + grace_ns
                    await trader.on_close(start, bars, [], began)
                    clock.decided_until = start
                    stats.bars_decided += 1
                    stats.decided = [*stats.decided[-9_999:], start]
                    await client.set(events.decided_key(options.account), start)
                await client.xack(events.stream, group, *ids)

        async def consume() -> None:
            backlog = True  # first what was delivered to this consumer and never acknowledged
            while not stop_event.is_set():
                read: Any = await client.xreadgroup(
                    group, consumer, {events.stream: "0" if backlog else ">"}, count=1000,
                    block=None if backlog else 200,
                )  # fmt: skip
                entries: list[tuple[bytes, dict[bytes, bytes]]] = read[0][1] if read else []
                if backlog and not entries:
                    backlog = False
                    continue
                for entry_id, fields in entries:
                    stats.events += 1
                    shard_events = pending.setdefault(int(fields[b"start"]), {})
                    shard_events[fields[b"shard"].decode()] = (entry_id, fields[b"bars"], int(fields[b"began"]))
                await decide_ready()

        async def until_stopped() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), timeout=record.duration_s)
            stop_event.set()
            source.stop()
            trader.stop()

        async with asyncio.TaskGroup() as tasks:
            for feed in source.tasks(trader, None):  # type: ignore[arg-type]
                tasks.create_task(feed)
            tasks.create_task(trader.run_flusher())
            tasks.create_task(consume())
            tasks.create_task(until_stopped())
        await trader.flush()
        stats.trades = sum(feed.stats.trades for feed in source.feeds)
        return trader, stats
    finally:
        await source.close()
        await models.close()
        await pool.close()
        await client.aclose()


async def main(args: Any, record: RecordOptions, trading: TradingOptions | None, settings: FeatureStoreSettings) -> int:
    """``python -m engine ingest`` and ``python -m engine trade`` (see the module docstring)."""
    from feature_store.services import resolve_service_urls

    urls = await asyncio.to_thread(resolve_service_urls, settings)
    if not urls.redis_url:
        raise ConfigError("the services mode needs Redis (REDIS_URL, or the embedded server)")
    if trading is None:
        shard = Shard.parse(args.shard)
        done = await run_ingest(record, shard, database_url=urls.database_url if record.database else None,
                                redis_url=urls.redis_url, warmup_bars=args.warmup_bars)  # fmt: skip
        print(orjson.dumps(done).decode())
        return 0
    began = time.monotonic()
    trader, stats = await run_stream_trader(record, trading, args.shards, database_url=urls.database_url,
                                            redis_url=urls.redis_url, consumer=args.consumer)  # fmt: skip
    print("\n".join(summarize(trader, time.monotonic() - began, stats.trades).lines()))
    print(f"  stream: {stats.events} events, {stats.bars_decided} bars decided, {stats.duplicates} delivered again "
          f"(not decided twice), {stats.partial_bars} decided without every shard")  # fmt: skip
    return 0
