"""The venues' feed clients: Coinbase Exchange, Binance spot and Polygon (Massive) stocks, on
the connection loop of :class:`~engine.feeds.client.FeedClient`, and :func:`make_feed`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from websockets.asyncio.client import ClientConnection

from engine.errors import DecodeError, FeedError
from engine.feeds import binance, coinbase, polygon
from engine.feeds.client import MAX_ID_JUMP, Backoff, FeedClient, FeedSink
from engine.feeds.records import BookUpdate, Quote, Status

__all__ = ["BinanceFeed", "CoinbaseFeed", "PolygonFeed", "make_feed"]

log = logging.getLogger("engine.feeds")

MAX_REPEATS = 50  # book updates in a row older than the book: its id is wrong, resync


class CoinbaseFeed(FeedClient):
    """Coinbase Exchange: ``matches``, ``ticker``, ``heartbeat`` and a level-2 channel."""

    venue = coinbase.VENUE

    def __init__(
        self,
        symbols: list[str],
        sink: FeedSink,
        *,
        book_channel: str = "level2_batch",
        quote_check: int = 3,
        **kw: Any,
    ) -> None:
        """See :class:`FeedClient`.

        Args:
            book_channel: ``level2_batch`` (public) or ``level2`` (same messages).
            quote_check: resync a book after this many ``ticker`` messages in a row whose
                best bid or ask (and sizes, where sent) disagree with it; 0 turns the check
                off. This is how a lost ``l2update`` shows on Coinbase, whose book messages
                carry no sequence number.
        """
        if book_channel not in coinbase.BOOK_CHANNELS:
            raise FeedError(f"coinbase: book_channel must be one of {coinbase.BOOK_CHANNELS}, got {book_channel!r}")
        if quote_check < 0:
            raise FeedError(f"coinbase: quote_check must be >= 0, got {quote_check}")
        self.book_channel = book_channel
        self.quote_check = quote_check
        super().__init__(symbols, sink, **kw)
        self._mismatches: dict[str, int] = dict.fromkeys(self.symbols, 0)

    def _on_quote(self, quote: Quote) -> None:
        self.sink.on_quote(quote)
        if not self.quote_check or not self.with_books or not self.synced.get(quote.symbol):
            return
        book = self.books[quote.symbol]
        bid, ask = book.best_bid(), book.best_ask()
        agrees = (
            bid == quote.bid
            and ask == quote.ask
            and (quote.bid_size != quote.bid_size or book.bids.get(bid) == quote.bid_size)
            and (quote.ask_size != quote.ask_size or book.asks.get(ask) == quote.ask_size)
        )
        if agrees:
            self._mismatches[quote.symbol] = 0
            return
        self._mismatches[quote.symbol] += 1
        if self._mismatches[quote.symbol] >= self.quote_check:
            log.warning("coinbase %s: book disagrees with the ticker; resynchronizing", quote.symbol)
            self.stats.book_gaps += 1
            self._mismatches[quote.symbol] = 0
            self._resync(quote.symbol)

    def _decoder(self) -> Any:
        return coinbase.CoinbaseDecoder()

    def channels(self) -> list[str]:
        out = ["matches", "heartbeat", "ticker"]
        return [*out, self.book_channel] if self.with_books else out

    async def _on_open(self, ws: ClientConnection) -> None:
        await ws.send(coinbase.subscribe_message(self.symbols, self.channels()))

    def _on_book_update(self, update: BookUpdate) -> None:
        book = self.books.get(update.symbol)
        if book is None:
            self.stats.ignored += 1
            return
        if update.snapshot:
            self.stats.snapshots += 1
            update.ts_ns = update.ts_ns or time.time_ns()
            self.synced[update.symbol] = True
            self._apply(book, update)
        elif self.synced[update.symbol]:
            self._apply(book, update)
        else:
            self.stats.book_dropped += 1

    def _resync(self, symbol: str) -> None:
        # A new subscription to the book channel sends a fresh snapshot.
        self.stats.resyncs += 1
        self.books[symbol].clear()
        self.synced[symbol] = False
        self._outbox.append(coinbase.unsubscribe_message([symbol], [self.book_channel]))
        self._outbox.append(coinbase.subscribe_message([symbol], [self.book_channel]))


class BinanceFeed(FeedClient):
    """Binance spot combined streams, with depth books synced to the REST snapshot.

    Args:
        rest_url: where ``GET /api/v3/depth`` is served.
        depth_limit: levels asked of the REST snapshot.
        trade_stream: ``aggTrade`` (default) or ``trade``.
    """

    venue = binance.VENUE

    def __init__(
        self,
        symbols: list[str],
        sink: FeedSink,
        *,
        rest_url: str,
        depth_limit: int = 1000,
        trade_stream: str = "aggTrade",
        max_buffered: int = 10_000,
        **kw: Any,
    ) -> None:
        if trade_stream not in ("aggTrade", "trade"):
            raise FeedError(f"binance: trade_stream must be 'aggTrade' or 'trade', got {trade_stream!r}")
        parts = urlsplit(rest_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FeedError(f"binance: REST URL must be http(s)://host..., got {rest_url!r}")
        self.rest_url = rest_url.rstrip("/")
        self.depth_limit = depth_limit
        self.trade_stream = trade_stream
        self.max_buffered = max_buffered
        super().__init__(symbols, sink, **kw)
        self._pending: dict[str, list[BookUpdate]] = {s: [] for s in self.symbols}
        self._repeats: dict[str, int] = {}
        self._fetching: dict[str, asyncio.Task[None]] = {}
        self._http: aiohttp.ClientSession | None = None

    def _decoder(self) -> Any:
        return binance.BinanceDecoder(self.symbols)

    def _connect_url(self) -> str:
        streams = (self.trade_stream, "bookTicker", "depth@100ms") if self.with_books else (self.trade_stream,)
        return self.url.rstrip("/") + binance.stream_path(self.symbols, streams)

    async def _on_open(self, ws: ClientConnection) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        if self.with_books:
            for symbol in self.symbols:
                self._resync(symbol, count=False)

    async def _on_close(self) -> None:
        for task in self._fetching.values():
            task.cancel()
        for task in list(self._fetching.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fetching.clear()
        if self._stopping.is_set() and self._http is not None:
            await self._http.close()
            self._http = None

    def _on_book_update(self, update: BookUpdate) -> None:
        symbol = update.symbol
        book = self.books.get(symbol)
        if book is None:
            self.stats.ignored += 1
            return
        if not self.synced[symbol]:
            pending = self._pending[symbol]
            if len(pending) >= self.max_buffered:  # the snapshot is taking too long: start over
                self.stats.book_dropped += len(pending)
                pending.clear()
            pending.append(update)
            return
        if update.last_id <= book.last_id:
            self.stats.book_dropped += 1  # a repeat of what the book already has
            repeats = self._repeats.get(symbol, 0) + 1
            self._repeats[symbol] = repeats
            if repeats >= MAX_REPEATS or update.last_id + binance.MAX_DIFF_SPAN < book.last_id:
                # Far behind the book, or many in a row: the book's id is what is wrong.
                log.warning("binance %s: updates keep falling behind the book; resynchronizing", symbol)
                self.stats.book_gaps += 1
                self._resync(symbol)
            return
        self._repeats[symbol] = 0
        if update.first_id != book.last_id + 1:
            log.warning(
                "binance %s: depth gap (book at %d, update %d..%d); resynchronizing",
                symbol, book.last_id, update.first_id, update.last_id,
            )  # fmt: skip
            self.stats.book_gaps += 1
            self._resync(symbol)
            self._pending[symbol].append(update)
            return
        self._apply(book, update)

    def _resync(self, symbol: str, count: bool = True) -> None:
        if count:
            self.stats.resyncs += 1
        self.books[symbol].clear()
        self.synced[symbol] = False
        self._pending[symbol] = []
        self._repeats[symbol] = 0
        self._fetch_snapshot_later(symbol)

    def _fetch_snapshot_later(self, symbol: str) -> None:
        """Start fetching the REST snapshot (a task: diffs keep arriving and are buffered)."""
        task = self._fetching.pop(symbol, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._fetching[symbol] = asyncio.get_running_loop().create_task(self._sync(symbol))

    async def _sync(self, symbol: str) -> None:
        backoff = Backoff(0.2, 5.0)
        while True:
            try:
                snapshot = await self._fetch_snapshot(symbol)
            except (aiohttp.ClientError, TimeoutError, DecodeError) as exc:
                log.warning("binance %s: depth snapshot failed: %s", symbol, exc)
                self.stats.last_error = f"depth snapshot of {symbol}: {exc}"
                await asyncio.sleep(backoff.next_delay())
                continue
            if self._install(symbol, snapshot):
                if self._fetching.get(symbol) is asyncio.current_task():
                    del self._fetching[symbol]
                return
            await asyncio.sleep(backoff.next_delay())  # the snapshot was too old: fetch again

    async def _fetch_snapshot(self, symbol: str) -> BookUpdate:
        assert self._http is not None
        params = {"symbol": binance.venue_symbol(symbol), "limit": str(self.depth_limit)}
        async with self._http.get(f"{self.rest_url}/api/v3/depth", params=params) as response:
            body = await response.read()
            if response.status != 200:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=body[:200].decode(errors="replace")
                )
        return binance.parse_depth_snapshot(symbol, body)

    def _install(self, symbol: str, snapshot: BookUpdate) -> bool:
        """Apply a REST snapshot and the diffs buffered meanwhile; False to fetch again."""
        self.stats.snapshots += 1
        pending = [u for u in self._pending[symbol] if u.last_id > snapshot.last_id]
        self._pending[symbol] = []
        if pending and pending[0].first_id > snapshot.last_id + 1:
            self._pending[symbol] = pending  # diffs are ahead of the snapshot: fetch again
            return False
        book = self.books[symbol]
        snapshot.ts_ns = time.time_ns()
        book.apply(snapshot)
        if book.crossed():
            log.warning("binance %s: depth snapshot is crossed; fetching again", symbol)
            self.stats.book_gaps += 1
            book.clear()
            return False
        book.last_id = snapshot.last_id
        self.synced[symbol] = True
        for i, update in enumerate(pending):
            if not self.synced[symbol]:
                self._pending[symbol].append(update)
            elif i == 0:
                self._apply(book, update)  # covers lastUpdateId + 1, checked above
            else:
                self._on_book_update(update)
        if self.synced[symbol]:
            self.sink.on_book(self.venue, book)
        return True


class PolygonFeed(FeedClient):
    """Polygon (now Massive) stocks: trades, quotes and minute aggregates of US equities.

    Each connection authenticates with the key (``POLYGON_API_KEY`` by default), subscribes
    ``T.``, ``Q.`` and ``AM.`` of every symbol once ``auth_success`` comes, and after any
    reconnect does both again. ``auth_failed`` stops the feed with an error (a wrong key does
    not fix itself); ``max_connections`` waits the longest backoff before trying again
    (another client holds the key's connection); ``force_disconnect`` and ``slow_consumer``
    reconnect. Sequence numbers order trades and find repeats; they are not gap-free.

    Args:
        api_key: the key (default: the ``POLYGON_API_KEY`` environment variable).
        topics: the event types to subscribe.
    """

    venue = polygon.VENUE
    gap_free_ids = False
    late_window = MAX_ID_JUMP

    def __init__(
        self,
        symbols: list[str],
        sink: FeedSink,
        *,
        api_key: str | None = None,
        topics: tuple[str, ...] = polygon.TOPICS,
        **kw: Any,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("POLYGON_API_KEY", "")
        if not key:
            raise FeedError("polygon: set POLYGON_API_KEY (the API key) to stream Polygon")
        self._key = key
        self.topics = topics
        super().__init__(symbols, sink, **kw)
        self.authenticated = False
        self.auth_error: str | None = None
        self.last_status = ""  # the last status the server sent before closing a connection

    def _decoder(self) -> Any:
        return polygon.PolygonDecoder()  # each frame decodes to a Frame of many events

    async def _on_open(self, ws: ClientConnection) -> None:
        self.authenticated = False
        await ws.send(polygon.auth_message(self._key))

    def _on_status(self, status: Status) -> None:
        kind = status.status
        if kind == "auth_success":
            self.authenticated = True
            self._outbox.append(polygon.subscribe_message(self.symbols, self.topics))
            log.info("polygon: authenticated; subscribing %d symbols", len(self.symbols))
        elif kind in ("auth_failed", "auth_timeout"):
            self.auth_error = f"polygon: {kind}: {status.message}"
            self.stats.venue_errors += 1
            self.stats.last_error = self.auth_error
            self.stop()
        elif kind in ("max_connections", "force_disconnect", "slow_consumer"):
            self.last_status = kind
            self.stats.venue_errors += 1
            self.stats.last_error = f"{kind}: {status.message}"
            log.warning("polygon: %s (%s); the server closes the connection", kind, status.message)
            if kind == "max_connections":
                self._backoff.attempt = 64  # the longest wait: another client holds the connection
            elif kind == "slow_consumer":
                log.warning("polygon: this client reads more slowly than the server sends; subscribe fewer symbols")
        elif kind == "error":
            self.stats.venue_errors += 1
            self.stats.last_error = status.message
            log.warning("polygon: error: %s", status.message)
        else:
            log.info("polygon: %s: %s", kind, status.message)

    async def run(self) -> None:
        """Stream until stopped; raises :class:`FeedError` if the key is refused."""
        await super().run()
        if self.auth_error is not None:
            raise FeedError(f"{self.auth_error} (check POLYGON_API_KEY)")

    def _on_book_update(self, update: BookUpdate) -> None:
        self.stats.ignored += 1  # no book channel on this venue

    def _resync(self, symbol: str) -> None:
        return None


def make_feed(venue: str, symbols: list[str], sink: FeedSink, *, url: str, rest_url: str = "", **kw: Any) -> FeedClient:
    """A feed client for ``venue`` (``coinbase``, ``binance`` or ``polygon``)."""
    if venue == coinbase.VENUE:
        return CoinbaseFeed(symbols, sink, url=url, **kw)
    if venue == binance.VENUE:
        return BinanceFeed(symbols, sink, url=url, rest_url=rest_url or binance.DEFAULT_REST_URL, **kw)
    if venue == polygon.VENUE:
        kw.pop("books", None)
        return PolygonFeed(symbols, sink, url=url, books=False, **kw)
    raise FeedError(f"unknown venue {venue!r}; known: coinbase, binance, polygon")
