"""Recording to PostgreSQL: trades, bars, book snapshots and features, COPY in batches.

Rows are *acknowledged* when :class:`Recorder` accepts them (the ``add_*`` methods, which
never block and never fail). From there nothing is lost while the database is slow or away:

* rows are sealed into batches (``batch_rows`` rows, or every ``flush_s``) and written
  oldest first, each batch in one transaction with COPY;
* a batch that fails for a connection reason stays queued and is retried with capped
  backoff; writing resumes by itself when the server is back;
* when more than ``max_buffered_rows`` rows wait, the oldest batches are spilled to the
  spool folder (one JSON file per batch, written then renamed, then fsynced) instead of
  growing memory; they are written back first, in order, when the database returns, and
  a recorder started later writes what an earlier one left there;
* on :meth:`Recorder.close` whatever cannot be written in time is spilled too.

Spilling was chosen over back-pressure because the feed must keep reading: a venue drops
a consumer that stops reading, which would lose data upstream instead.

Each batch carries an id, inserted into ``recorded_batches`` in the same transaction: a
batch retried after a lost acknowledgement (the commit went through, the reply did not)
finds its id and is skipped, so every row is stored exactly once. Bars and features go
through a staging table with ``ON CONFLICT DO NOTHING`` so that a bar recorded again after
a restart never blocks the queue. A batch the database refuses for its content (a broken
table rule) is moved to ``spool/rejected`` and counted: it never blocks the rows behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from engine.durable import write_durably
from feature_store.database import ensure_partitions, open_pool
from feature_store.errors import StorageError
from feature_store.features.registry import FeatureSet
from feature_store.records import BAR_COLUMNS, TRADE_COLUMNS, Bar, Trade

__all__ = ["TABLES", "Recorder", "RecorderStats"]

log = logging.getLogger("engine.recorder")


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    time_index: int
    # Tables with a primary key are written through a staging table: (stage, create, insert).
    staged: tuple[str, str, str] | None = None


TABLES: dict[str, _Table] = {
    "trades": _Table("trades", TRADE_COLUMNS, 2),
    "bars": _Table(
        "bars",
        BAR_COLUMNS,
        1,
        (
            "stage_bars",
            "CREATE TEMP TABLE IF NOT EXISTS stage_bars (LIKE bars INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
            "INSERT INTO bars SELECT * FROM stage_bars ON CONFLICT DO NOTHING",
        ),
    ),
    "book_snapshots": _Table(
        "book_snapshots", ("venue", "symbol", "ts_ns", "bid_prices", "bid_sizes", "ask_prices", "ask_sizes"), 2
    ),
    "features": _Table(
        "features",
        ("feature_set", "version", "symbol", "ts_ns", "vals"),
        3,
        (
            "stage_features",
            "CREATE TEMP TABLE IF NOT EXISTS stage_features (LIKE features INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
            "INSERT INTO features SELECT * FROM stage_features ON CONFLICT DO NOTHING",
        ),
    ),
}
_TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    StorageError,
)


@dataclass
class RecorderStats:
    """Counters of the recorder (exported as Prometheus metrics)."""

    accepted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    # Rows known to be in the database, this attempt's or an earlier one's.
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    batches_written: int = 0
    batches_already_stored: int = 0
    batches_spilled: int = 0
    batches_rejected: int = 0
    write_failures: int = 0
    buffered_rows: int = 0
    spooled_batches: int = 0
    connected: bool = False
    last_error: str = ""
    write_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=4096))


@dataclass
class _Batch:
    batch_id: str
    table: str
    rows: list[tuple[Any, ...]]
    count: int
    path: Path | None = None  # where it is spilled, if it is


class Recorder:
    """Buffered, batched, exactly-once recording into PostgreSQL.

    Args:
        database_url: the PostgreSQL URL (migrations are applied on first connect).
        spool_dir: where batches are spilled when the database is away.
        batch_rows: rows per COPY batch.
        flush_s: seal and write at least this often.
        max_buffered_rows: rows kept in memory before the oldest batches spill to disk.
    """

    def __init__(
        self,
        database_url: str,
        *,
        spool_dir: Path,
        batch_rows: int = 20_000,
        flush_s: float = 0.5,
        max_buffered_rows: int = 500_000,
    ) -> None:
        if batch_rows < 1 or max_buffered_rows < batch_rows:
            raise ValueError("need batch_rows >= 1 and max_buffered_rows >= batch_rows")
        self.database_url = database_url
        self.spool_dir = Path(spool_dir)
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.max_buffered_rows = max_buffered_rows
        self.stats = RecorderStats()
        self._open: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TABLES}
        self._queue: deque[_Batch] = deque()
        self._prefix = uuid.uuid4().hex[:12]
        self._seq = 0
        self._pool: asyncpg.Pool | None = None
        self._registered: set[tuple[str, str]] = set()
        self._feature_sets: dict[tuple[str, str], FeatureSet] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        (self.spool_dir / "pending").mkdir(parents=True, exist_ok=True)
        (self.spool_dir / "rejected").mkdir(parents=True, exist_ok=True)
        self._load_spool()

    # --- accepting rows (synchronous, never blocks) ---------------------------------------

    def add_trade(self, trade: Trade) -> None:
        self._add(
            "trades", (trade.venue, trade.symbol, trade.ts_ns, trade.price, trade.size, trade.side, trade.trade_id)
        )

    def add_bar(self, bar: Bar) -> None:
        self._add(
            "bars",
            (
                bar.symbol,
                bar.start_ns,
                bar.interval_s,
                bar.open,
                bar.high,
                bar.low,
                bar.close,
                bar.volume,
                bar.buy_volume,
                bar.vwap,
                bar.trades,
            ),
        )

    def add_book(
        self,
        venue: str,
        symbol: str,
        ts_ns: int,
        bids: Sequence[tuple[float, float]],
        asks: Sequence[tuple[float, float]],
    ) -> None:
        self._add(
            "book_snapshots",
            (
                venue,
                symbol,
                ts_ns,
                [p for p, _ in bids],
                [s for _, s in bids],
                [p for p, _ in asks],
                [s for _, s in asks],
            ),
        )

    def add_features(self, feature_set: FeatureSet, ts_ns: int, symbols: Sequence[str], values: Any) -> None:
        self._feature_sets[(feature_set.name, feature_set.version)] = feature_set
        name, version = feature_set.name, feature_set.version
        for symbol, row in zip(symbols, values.tolist(), strict=True):
            self._add("features", (name, version, symbol, ts_ns, row))

    def _add(self, table: str, row: tuple[Any, ...]) -> None:
        rows = self._open[table]
        rows.append(row)
        self.stats.accepted[table] += 1
        self.stats.buffered_rows += 1
        if len(rows) >= self.batch_rows:
            self._seal(table)
            self._wake.set()

    def _seal(self, table: str) -> None:
        rows = self._open[table]
        if not rows:
            return
        self._open[table] = []
        self._seq += 1
        self._queue.append(_Batch(f"{self._prefix}-{self._seq:09d}", table, rows, len(rows)))
        self._spill_excess()

    # --- writing --------------------------------------------------------------------------

    async def run(self) -> None:
        """Write batches until :meth:`close`; never raises for database trouble."""
        backoff = 0.1
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.flush_s)
            self._wake.clear()
            for table in TABLES:
                self._seal(table)
            try:
                await self._drain()
                backoff = 0.1
            except _TRANSIENT as exc:
                self._disconnected(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Write what is buffered (up to ``timeout_s``), then spill the rest to the spool."""
        self._stopping = True
        self._wake.set()
        for table in TABLES:
            self._seal(table)
        try:
            await asyncio.wait_for(self._drain(), timeout=timeout_s)
        except (*_TRANSIENT, TimeoutError) as exc:
            self._disconnected(exc)
        for batch in self._queue:
            if batch.path is None:
                self._spill(batch)
        if self._pool is not None:
            with contextlib.suppress(*_TRANSIENT):
                await asyncio.wait_for(self._pool.close(), timeout=5)
            self._pool = None

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[0]
            pool = await self._connect()
            if batch.path is not None and not batch.rows:
                batch.rows = _read_spooled(batch.path)
            started = time.perf_counter()
            try:
                stored = await self._write(pool, batch)
            except asyncpg.PostgresError as exc:
                if isinstance(exc, _TRANSIENT):
                    raise
                self._reject(batch, exc)
            else:
                self.stats.write_seconds.append(time.perf_counter() - started)
                # Already stored: an earlier attempt committed and its reply was lost (or an
                # earlier run wrote it from the spool). Its rows are in the database all the
                # same, so they count as written: accepted == written + pending + rejected.
                self.stats.written[batch.table] += len(batch.rows)
                if stored:
                    self.stats.batches_written += 1
                else:
                    self.stats.batches_already_stored += 1
            self._queue.popleft()
            self.stats.buffered_rows -= batch.count
            if batch.path is not None:
                batch.path.unlink(missing_ok=True)
                self.stats.spooled_batches -= 1

    async def _connect(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await open_pool(self.database_url, min_size=1, max_size=2)
            self.stats.connected = True
            log.info("recorder: connected to PostgreSQL")
        return self._pool

    def _disconnected(self, exc: BaseException) -> None:
        self.stats.write_failures += 1
        self.stats.connected = False
        self.stats.last_error = f"{exc.__class__.__name__}: {exc}"
        if self.stats.write_failures <= 5 or self.stats.write_failures % 100 == 0:
            log.warning(
                "recorder: write failed (%s); %d rows wait, retrying", self.stats.last_error, self.stats.buffered_rows
            )
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    async def _write(self, pool: asyncpg.Pool, batch: _Batch) -> bool:
        """Write one batch in one transaction; False if it was already stored."""
        spec = TABLES[batch.table]
        times = [row[spec.time_index] for row in batch.rows]
        async with pool.acquire() as conn:
            if batch.table == "features":
                await self._register(conn, batch)
            await ensure_partitions(conn, spec.name, min(times), max(times))
            async with conn.transaction():
                inserted = await conn.fetchval(
                    "INSERT INTO recorded_batches (batch_id, kind, rows) VALUES ($1, $2, $3) "
                    "ON CONFLICT (batch_id) DO NOTHING RETURNING 1",
                    batch.batch_id,
                    batch.table,
                    len(batch.rows),
                )
                if inserted is None:
                    return False
                if spec.staged is None:
                    await conn.copy_records_to_table(spec.name, records=batch.rows, columns=list(spec.columns))
                    return True
                stage, create, insert = spec.staged
                await conn.execute(create)
                await conn.copy_records_to_table(stage, records=batch.rows, columns=list(spec.columns))
                await conn.execute(insert)
        return True

    async def _register(self, conn: asyncpg.Connection, batch: _Batch) -> None:
        for name, version in {(row[0], row[1]) for row in batch.rows} - self._registered:
            feature_set = self._feature_sets.get((name, version))
            features = json.dumps(feature_set.describe() if feature_set else [])
            await conn.execute(
                "INSERT INTO feature_sets (name, version, features) VALUES ($1, $2, $3::jsonb) ON CONFLICT DO NOTHING",
                name,
                version,
                features,
            )
            self._registered.add((name, version))

    # --- spool ----------------------------------------------------------------------------

    def _spill_excess(self) -> None:
        waiting = sum(len(b.rows) for b in self._queue if b.path is None)
        for batch in self._queue:
            if waiting <= self.max_buffered_rows:
                break
            if batch.path is None:
                waiting -= len(batch.rows)
                self._spill(batch)

    def _spill(self, batch: _Batch) -> None:
        path = self.spool_dir / "pending" / f"{batch.batch_id}.{batch.table}.json"
        rows = [_jsonable(row) for row in batch.rows]
        write_durably(path, orjson.dumps({"batch_id": batch.batch_id, "table": batch.table, "rows": rows}))
        batch.path = path
        batch.rows = []  # the file holds them now
        self.stats.batches_spilled += 1
        self.stats.spooled_batches += 1

    def _load_spool(self) -> None:
        for path in sorted((self.spool_dir / "pending").glob("*.json")):
            data = orjson.loads(path.read_bytes())
            rows = [_restored(row) for row in data["rows"]]
            self._queue.append(_Batch(data["batch_id"], data["table"], rows, len(rows), path))
            self.stats.buffered_rows += len(rows)
            self.stats.spooled_batches += 1
            self.stats.accepted[data["table"]] += len(rows)
        if self._queue:
            log.info("recorder: %d spooled batches from an earlier run will be written first", len(self._queue))

    def _reject(self, batch: _Batch, exc: BaseException) -> None:
        self.stats.batches_rejected += 1
        self.stats.last_error = f"{exc.__class__.__name__}: {exc}"
        log.error(
            "recorder: PostgreSQL refused a %s batch (%s); kept in %s", batch.table, exc, self.spool_dir / "rejected"
        )
        if batch.path is None:
            self._spill(batch)
            self.stats.batches_spilled -= 1
        assert batch.path is not None
        batch.path.rename(self.spool_dir / "rejected" / batch.path.name)
        batch.path = None
        self.stats.spooled_batches -= 1

    def pending_rows(self) -> int:
        """Rows accepted and not yet stored (in memory and in the spool)."""
        return self.stats.buffered_rows


def _jsonable(row: tuple[Any, ...]) -> list[Any]:
    # NaN has no JSON form: feature vectors keep it as the string "NaN".
    return [
        [("NaN" if isinstance(v, float) and math.isnan(v) else v) for v in x] if isinstance(x, list) else x for x in row
    ]


def _restored(row: list[Any]) -> tuple[Any, ...]:
    return tuple([float(v) for v in x] if isinstance(x, list) else x for x in row)


def _read_spooled(path: Path) -> list[tuple[Any, ...]]:
    return [_restored(row) for row in orjson.loads(path.read_bytes())["rows"]]
