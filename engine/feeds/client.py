"""WebSocket feed clients: connect, subscribe, decode, keep books in sync, reconnect.

One :class:`FeedClient` per venue connection (the venues' protocols are in
:mod:`engine.feeds.venues`). It runs until stopped, reconnecting with
capped, jittered exponential backoff (the wait is drawn between half and all of
``min(cap, base * 2**attempt)``); every reconnect resubscribes and rebuilds every book
from a fresh snapshot. A watchdog closes a connection that has been silent for
``stale_after_s`` (a stalled venue often keeps the socket open), which starts a reconnect.

Decoded records go to a :class:`FeedSink`, synchronously, in arrival order. The client
drops what must not reach it, and counts it in :class:`FeedStats`:

* malformed messages (bad JSON, missing or bad fields, a time out of range, a message over
  ``max_message_bytes``), records of symbols not subscribed, records timed more than
  ``max_ahead_s`` ahead of the local clock: ``malformed``, and by reason in ``dropped``;
* unknown message types: ``ignored``;
* a trade whose id was already seen for its symbol (a repeat), or that is more than
  ``_TRACKED_GAP`` ids behind the last: ``duplicates``. A jump in trade ids is counted in
  ``trade_gaps`` and ``missing_trades``; an id not seen that arrives after a later one
  passes and is counted in ``late_trades``. An id more than ``MAX_ID_JUMP`` ahead
  of the symbol's last is not believed (dropped as ``implausible_trade_id``) unless the next
  trade confirms it; ids are forgotten at every reconnect. One bogus id never silences a
  symbol;
* book changes for a book that is not in sync (before its snapshot, or during a resync):
  ``book_dropped``; a book update that does not follow the last one, a book left crossed
  (a snapshot included), or a run of updates the book says it already has, starts a resync
  (``book_gaps``, ``resyncs``). A crossed book never reaches the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.client import ClientConnection

from engine.errors import DecodeError, FeedError
from engine.feeds.book import OrderBook
from engine.feeds.records import Aggregate, BookUpdate, Frame, Heartbeat, Quote, Status, Subscribed, VenueError
from feature_store.records import Trade

__all__ = ["MAX_ID_JUMP", "Backoff", "FeedClient", "FeedSink", "FeedStats", "NullSink"]

log = logging.getLogger("engine.feeds")

_TRACKED_GAP = 1000  # how far behind the last trade id a trade not yet seen is let through as late
MAX_ID_JUMP = 10_000_000  # a trade id this far past the last one is not believed until confirmed


class FeedSink(Protocol):
    """Where a feed delivers its records (called synchronously, in arrival order)."""

    def on_trade(self, trade: Trade) -> None: ...

    def on_book(self, venue: str, book: OrderBook) -> None: ...

    def on_quote(self, quote: Quote) -> None: ...

    def on_time(self, venue: str, ts_ns: int) -> None:
        """The venue's clock reached ``ts_ns`` (heartbeats and every timed message)."""
        ...


class NullSink:
    """A sink that keeps nothing (decode-only runs and tests)."""

    def on_trade(self, trade: Trade) -> None:
        return None

    def on_book(self, venue: str, book: OrderBook) -> None:
        return None

    def on_quote(self, quote: Quote) -> None:
        return None

    def on_time(self, venue: str, ts_ns: int) -> None:
        return None


@dataclass
class FeedStats:
    """Counters of one feed (exported as Prometheus metrics, labelled by venue)."""

    messages: int = 0
    trades: int = 0
    book_updates: int = 0
    quotes: int = 0
    malformed: int = 0
    ignored: int = 0
    duplicates: int = 0
    late_trades: int = 0
    trade_gaps: int = 0
    missing_trades: int = 0
    book_gaps: int = 0
    book_dropped: int = 0
    resyncs: int = 0
    snapshots: int = 0
    connects: int = 0
    reconnects: int = 0
    stale: int = 0
    venue_errors: int = 0
    aggregates: int = 0
    last_error: str = ""
    connected: bool = False
    dropped: dict[str, int] = field(default_factory=dict)  # messages dropped, by reason

    def drop(self, reason: str) -> int:
        """Count one message dropped for ``reason``; return how many so far for it."""
        count = self.dropped.get(reason, 0) + 1
        self.dropped[reason] = count
        return count

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Backoff:
    base_s: float
    cap_s: float
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2.0**self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)


class FeedClient:
    """The connection loop shared by every venue (subclasses add the protocol).

    Args:
        symbols: the engine's symbols (``BASE-QUOTE``).
        sink: where records go.
        url: the venue's WebSocket URL (a replay exchange's in tests and demos).
        books: keep L2 books (subscribe to the book channel).
        stale_after_s: reconnect when nothing arrived for this long.
        backoff_s: (base, cap) of the reconnect backoff.
        max_message_bytes: a longer message is dropped (and the connection refuses one four
            times as long).
        max_ahead_s: records timed further ahead of the local clock are dropped (None: no
            check, for replaying recordings faster than real time).
    """

    venue = "?"
    # Trade ids count every trade (a jump is a gap) and a trade not seen this far behind the
    # last one is a late one; venues whose ids are only ordered (Polygon) say otherwise.
    gap_free_ids = True
    late_window = _TRACKED_GAP

    def __init__(
        self,
        symbols: list[str],
        sink: FeedSink,
        *,
        url: str,
        books: bool = True,
        stale_after_s: float = 10.0,
        backoff_s: tuple[float, float] = (0.1, 10.0),
        max_message_bytes: int = 8 * 2**20,
        max_ahead_s: float | None = 300.0,
    ) -> None:
        if not symbols:
            raise FeedError(f"{self.venue}: no symbols to subscribe")
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise FeedError(f"{self.venue}: feed URL must be ws:// or wss://host..., got {url!r}")
        if stale_after_s <= 0:
            raise FeedError(f"{self.venue}: stale_after_s must be > 0, got {stale_after_s}")
        self.symbols = list(symbols)
        self.sink = sink
        self.url = url
        self.with_books = books
        self.stale_after_s = stale_after_s
        self.max_message_bytes = max_message_bytes
        self.max_ahead_ns = None if max_ahead_s is None else int(max_ahead_s * 1e9)
        self.stats = FeedStats()
        self.books: dict[str, OrderBook] = {s: OrderBook(s) for s in self.symbols}
        self.synced: dict[str, bool] = dict.fromkeys(self.symbols, False)
        self._last_trade: dict[str, int] = {}
        self._seen: dict[str, set[int]] = {}  # ids delivered lately (the last _TRACKED_GAP of them)
        self._suspect: dict[str, int] = {}  # an implausible trade id waiting for confirmation
        self._backoff = Backoff(*backoff_s)
        self._ws: ClientConnection | None = None
        self._last_monotonic = time.monotonic()
        self._outbox: list[bytes] = []
        self._decode: Callable[[bytes], Any] = self._decoder().decode
        self._stopping = asyncio.Event()

    # --- venue hooks ----------------------------------------------------------------------

    def _decoder(self) -> Any:
        raise NotImplementedError

    def _connect_url(self) -> str:
        return self.url

    async def _on_open(self, ws: ClientConnection) -> None:
        """Subscribe and start syncing books (called on every connect)."""

    def _on_book_update(self, update: BookUpdate) -> None:
        raise NotImplementedError

    async def _on_close(self) -> None:
        """Release per-connection resources."""

    # --- the loop -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return (it closes the connection)."""
        self._stopping.set()
        if self._ws is not None:
            self._ws.transport.abort()

    async def run(self) -> None:
        """Stream until :meth:`stop`; never raises for network trouble, only reconnects."""
        watchdog = asyncio.create_task(self._watchdog(), name=f"{self.venue}-watchdog")
        try:
            while not self._stopping.is_set():
                await self._session()
                if self._stopping.is_set():
                    break
                delay = self._backoff.next_delay()
                self.stats.reconnects += 1
                log.info("%s: reconnecting in %.2f s", self.venue, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog

    async def _session(self) -> None:
        url = self._connect_url()
        try:
            async with websockets.connect(
                url,
                open_timeout=10,
                ping_interval=20,
                ping_timeout=20,
                max_size=4 * self.max_message_bytes,
                close_timeout=2,
            ) as ws:
                self._ws = ws
                self.stats.connected = True
                self.stats.connects += 1
                self._last_monotonic = time.monotonic()
                self._reset_books()
                self._reset_trade_ids()
                await self._on_open(ws)
                log.info("%s: connected to %s", self.venue, url.split("?")[0])
                await self._read(ws)
        except (OSError, TimeoutError, websockets.ConnectionClosed, websockets.InvalidHandshake) as exc:
            if not self._stopping.is_set():
                self.stats.last_error = f"{exc.__class__.__name__}: {exc}"
                log.warning("%s: connection lost: %s", self.venue, self.stats.last_error)
        finally:
            self._ws = None
            self.stats.connected = False
            await self._on_close()

    async def _read(self, ws: ClientConnection) -> None:
        handle = self.handle
        outbox = self._outbox
        first = True
        stopping = self._stopping
        read = 0
        while not stopping.is_set():  # stopped: the messages still buffered are not read
            payload = await ws.recv(decode=False)
            self._last_monotonic = time.monotonic()
            handle(payload)
            read += 1
            if not read % 32:
                # recv() returns buffered messages without yielding: let a bar that a message
                # just closed be decided now rather than after the whole backlog.
                await asyncio.sleep(0)
            if outbox:
                for message in outbox:
                    await ws.send(message)
                outbox.clear()
            if first:
                first = False
                self._backoff.attempt = 0  # a connection that delivers resets the backoff

    def handle(self, payload: bytes) -> None:
        """Decode one message and route it (public so that tests and tools can feed lines)."""
        stats = self.stats
        stats.messages += 1
        if len(payload) > self.max_message_bytes:
            self._drop("too_large", f"{len(payload)} bytes, over the {self.max_message_bytes} allowed")
            return
        try:
            record = self._decode(payload)
        except DecodeError as exc:
            self._drop(exc.reason, str(exc))
            return
        if record is None:
            stats.ignored += 1
            return
        self._route(record)

    def _route(self, record: Any) -> None:
        stats = self.stats
        kind = type(record)
        if kind is Trade or kind is BookUpdate or kind is Quote or kind is Heartbeat or kind is Aggregate:
            if record.symbol not in self.synced:
                self._drop("unknown_symbol", f"{record.symbol[:64]!r} is not subscribed")
                return
            ahead = self.max_ahead_ns
            if ahead is not None and record.ts_ns > time.time_ns() + ahead:
                self._drop("future_time", f"{record.symbol}: time {record.ts_ns} is ahead of the local clock")
                return
        if kind is BookUpdate:
            stats.book_updates += 1
            if record.ts_ns == 0:
                record.ts_ns = time.time_ns()
            if self.with_books:
                self._on_book_update(record)
        elif kind is Trade:
            self._on_trade(record)
        elif kind is Quote:
            if not 0.0 < record.bid < record.ask:
                self._drop("crossed_quote", f"{record.symbol}: bid {record.bid} is not below ask {record.ask}")
                return
            stats.quotes += 1
            if record.ts_ns == 0:
                record.ts_ns = time.time_ns()
            self._on_quote(record)
        elif kind is Heartbeat:
            if record.symbol not in self._last_trade:
                self._last_trade[record.symbol] = record.last_trade_id
            self.sink.on_time(self.venue, record.ts_ns)
        elif kind is Aggregate:
            stats.aggregates += 1
            self.sink.on_time(self.venue, record.end_ns)
        elif kind is Status:
            self._on_status(record)
        elif kind is Subscribed:
            shown = {k: v if len(v) <= 5 else f"{len(v)} symbols" for k, v in record.channels.items()}
            log.info("%s: subscribed %s", self.venue, shown)
        elif kind is VenueError:
            stats.venue_errors += 1
            stats.last_error = record.message
            log.warning("%s: venue error: %s", self.venue, record.message)
        elif kind is Frame:
            for error in record.errors:
                self._drop(error.reason, str(error))
            stats.ignored += record.ignored
            for event in record.records:
                self._route(event)
        else:
            stats.ignored += 1

    def _drop(self, reason: str, detail: str) -> None:
        stats = self.stats
        stats.malformed += 1
        count = stats.drop(reason)
        if count <= 10 or count % 1000 == 0:
            log.warning("%s: dropped a message (%s, %d so far): %s", self.venue, reason, count, detail[:300])

    def _on_quote(self, quote: Quote) -> None:
        self.sink.on_quote(quote)

    def _on_status(self, status: Status) -> None:
        log.info("%s: status %s: %s", self.venue, status.status, status.message)

    def _reset_trade_ids(self) -> None:
        # A new connection may come from another server of the venue: ids start over.
        self._last_trade.clear()
        self._seen.clear()
        self._suspect.clear()

    def _on_trade(self, trade: Trade) -> None:
        stats = self.stats
        number = int(trade.trade_id) if trade.trade_id.isdigit() else -1
        if number >= 0:
            symbol = trade.symbol
            seen = self._seen.get(symbol)
            if seen is None:
                seen = self._seen[symbol] = set()
            elif number in seen:
                stats.duplicates += 1
                return
            last = self._last_trade.get(symbol)
            if last is not None:
                if number <= last:
                    behind = last - number
                    if behind <= self.late_window:
                        # Not seen, within the ids remembered: a trade that came late, not a repeat.
                        stats.late_trades += 1
                        if stats.missing_trades > 0:
                            stats.missing_trades -= 1
                        seen.add(number)
                        stats.trades += 1
                        self.sink.on_trade(trade)
                        return
                    if behind <= MAX_ID_JUMP:
                        stats.duplicates += 1  # older than what is remembered: taken as a repeat
                        return
                    # Far below the last id: the last one was bogus (or the venue restarted its
                    # ids). Take this one as the new base instead of dropping every later trade.
                    seen.clear()
                    self._suspect.pop(symbol, None)
                    stats.drop("trade_ids_reset")
                    last = None
                elif number > last + MAX_ID_JUMP:
                    suspect = self._suspect.get(symbol)
                    if suspect is None or not suspect < number <= suspect + MAX_ID_JUMP:
                        self._suspect[symbol] = number
                        self._drop("implausible_trade_id", f"{symbol}: trade id {number} after {last}")
                        return
                    self._suspect.pop(symbol, None)  # confirmed: the venue's ids moved on
                    seen.clear()
                elif number > last + 1 and self.gap_free_ids:
                    stats.trade_gaps += 1
                    stats.missing_trades += number - last - 1
            seen.add(number)
            if len(seen) > 2 * _TRACKED_GAP:  # keep the latest ids
                self._seen[symbol] = set(sorted(seen)[-_TRACKED_GAP:])
            if last is None or number > last:
                self._last_trade[symbol] = number
        stats.trades += 1
        self.sink.on_trade(trade)
        self.sink.on_time(self.venue, trade.ts_ns)

    # --- books ----------------------------------------------------------------------------

    def _reset_books(self) -> None:
        for symbol, book in self.books.items():
            book.clear()
            self.synced[symbol] = False

    def _apply(self, book: OrderBook, update: BookUpdate) -> None:
        book.apply(update)
        if book.crossed():
            log.warning("%s %s: book crossed; resynchronizing", self.venue, book.symbol)
            self.stats.book_gaps += 1
            self._resync(book.symbol)
            return
        self.sink.on_book(self.venue, book)

    def _resync(self, symbol: str) -> None:
        raise NotImplementedError

    async def _watchdog(self) -> None:
        period = min(1.0, self.stale_after_s / 4)
        while True:
            await asyncio.sleep(period)
            ws = self._ws
            if ws is not None and time.monotonic() - self._last_monotonic > self.stale_after_s:
                self.stats.stale += 1
                log.warning("%s: no message for %.1f s; reconnecting", self.venue, self.stale_after_s)
                ws.transport.abort()
