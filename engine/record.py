"""``python -m engine record``: stream venues into Redis (features) and PostgreSQL (records).

A session (see :mod:`engine.session`) of venue feeds on the wall clock, with no trader.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.dataplane import DataPlane
from engine.recorder import Recorder
from engine.session import RecordOptions, Session, VenueFeeds, WallClock, check_services
from feature_store.features.catalog import FEATURE_SETS
from feature_store.redis_store import RedisOnlineStore

__all__ = ["RecordOptions", "RecordSummary", "check_services", "record"]


@dataclass
class RecordSummary:
    """What a ``record`` run received and stored."""

    seconds: float
    feeds: dict[str, dict[str, Any]]
    plane: dict[str, Any]
    accepted: dict[str, int]
    written: dict[str, int]
    pending_rows: int
    spooled_batches: int
    write_failures: int = 0

    def lines(self) -> list[str]:
        out = [f"recorded for {self.seconds:.1f} s"]
        for venue, stats in self.feeds.items():
            out.append(
                f"  {venue}: {stats['messages']} messages, {stats['trades']} trades, {stats['book_updates']} book "
                f"updates, {stats['malformed']} malformed, {stats['trade_gaps']} trade gaps, {stats['resyncs']} "
                f"resyncs, {stats['reconnects']} reconnects"
            )
        out.append(
            f"  bars closed: {self.plane['bars']} in {self.plane['intervals_closed']} intervals; online writes "
            f"{self.plane['online_writes']} (failed {self.plane['online_failures']}); "
            f"late trades {self.plane['late_trades']}"
        )
        stored = ", ".join(f"{t} {n}" for t, n in self.written.items())
        out.append(f"  stored in PostgreSQL: {stored}")
        out.append(f"  still pending: {self.pending_rows} rows ({self.spooled_batches} batches spooled on disk)")
        return out


async def record(
    options: RecordOptions,
    *,
    database_url: str | None,
    redis_url: str | None,
    progress: Callable[[RecordSummary], None] | None = None,
    progress_every_s: float = 2.0,
    stop: asyncio.Event | None = None,
) -> RecordSummary:
    """Stream until ``duration_s`` passes or ``stop`` is set; return what was stored.

    Raises:
        ServiceUnreachableError: Redis or PostgreSQL cannot be reached at start (later
            outages are ridden out: features wait in memory, rows in the buffer and spool).
    """
    await check_services(database_url if options.database else None, redis_url if options.online else None)
    source = await VenueFeeds(options).open()
    online = RedisOnlineStore.from_url(redis_url) if options.online and redis_url else None
    recorder = Recorder(database_url, spool_dir=options.spool_dir) if options.database and database_url else None
    plane = DataPlane(
        source.symbols,
        [FEATURE_SETS[name] for name in options.feature_sets],
        online=online,
        recorder=recorder,
        interval=options.interval,
        book_every_s=options.book_every_s if options.books else 0.0,
        book_depth=options.book_depth,
    )
    session = Session(source, WallClock(), plane, recorder=recorder, metrics_port=options.metrics_port)
    if stop is not None:
        session.stop_event = stop
    started = time.monotonic()

    def summary() -> RecordSummary:
        rs = recorder.stats if recorder is not None else None
        return RecordSummary(
            seconds=time.monotonic() - started,
            feeds={f.venue: f.stats.as_dict() for f in session.feeds},
            plane={k: v for k, v in vars(plane.stats).items() if not k.endswith("_s")},
            accepted=dict(rs.accepted) if rs else {},
            written=dict(rs.written) if rs else {},
            pending_rows=rs.buffered_rows if rs else 0,
            spooled_batches=rs.spooled_batches if rs else 0,
            write_failures=rs.write_failures if rs else 0,
        )

    try:
        await session.run(
            duration_s=options.duration_s,
            progress=(lambda: progress(summary())) if progress is not None else None,
            progress_every_s=progress_every_s,
        )
    finally:
        await source.close()
        if online is not None:
            online.close()
    return summary()
