"""The replay exchange: a local WebSocket server speaking Coinbase Exchange and Binance spot.

One port serves both venues and their REST endpoints:

* ``ws://HOST:PORT/`` speaks Coinbase Exchange: ``subscribe``/``unsubscribe`` requests,
  ``subscriptions`` acks, ``matches`` (``last_match`` first), ``ticker``, ``heartbeat``
  (every second) and ``level2``/``level2_batch`` (a ``snapshot`` on subscription, then
  ``l2update``);
* ``ws://HOST:PORT/stream?streams=...`` speaks Binance combined streams (``aggTrade``,
  ``trade``, ``bookTicker``, ``depth``/``depth@100ms``);
* ``GET http://HOST:PORT/api/v3/depth?symbol=...`` answers Binance's depth snapshot;
* ``GET /api/v3/klines`` (Binance, up to 1,000 a page) and ``GET /products/<id>/candles``
  (Coinbase, up to 300 a page, newest first) answer bar history: ``history_bars`` bars
  simulated before the exchange started (their last close is the first live price), then
  the bars of what the exchange has published since. ``rest_limit`` requests a second are
  answered, the rest get ``429`` with ``Retry-After``.

It is fed either by the synthetic market (:class:`~engine.replay.market.SyntheticFeed`),
one market broadcast to every connection, paced by ``speed`` (1 = real time, 0 = as fast
as the clients take it) with times restamped to the wall clock; or by recordings
(:class:`~engine.replay.market.RecordedTape`), replayed byte for byte from their start on
every connection. Fault switches (:mod:`engine.replay.faults`) apply per connection to the
data messages. A client slower than the market is disconnected once ``max_queue`` messages
wait for it, as venues do; at ``speed=0`` the market waits for the slowest client instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from engine.feeds.binance import venue_symbol
from engine.replay import polygon
from engine.replay.encoding import (
    binance_book_ticker,
    binance_depth,
    binance_trade,
    coinbase_l2,
    coinbase_match,
    coinbase_ticker,
    iso_time,
)
from engine.replay.faults import Fault, parse_faults
from engine.replay.history import BarHistory
from engine.replay.market import MarketEvent, RecordedTape, SyntheticFeed, VenueBook
from feature_store.features.calendars import session_calendar
from feature_store.records import NS_PER_S, Bar

__all__ = ["ReplayExchange"]

log = logging.getLogger("engine.replay")

_CLOSE = object()  # queue marker: close the connection
_CLOSE_NORMAL = object()  # queue marker: close it after what was queued before (a status)


@dataclass(eq=False)
class _Conn:
    ws: ServerConnection
    venue: str
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    products: set[str] = field(default_factory=set)
    channels: set[str] = field(default_factory=set)
    streams: set[str] = field(default_factory=set)
    sent: Counter[str] = field(default_factory=Counter)
    held: tuple[bytes, str] | None = None
    authenticated: bool = False


class ReplayExchange:
    """A local exchange for the engine's feeds.

    Args:
        synthetic: the synthetic market to broadcast (or None).
        coinbase_tape, binance_tape: recordings to replay (or None).
        binance_rest: recorded REST depth bodies by venue symbol (with ``binance_tape``).
        speed: 1 = real time, 2 = twice as fast, 0 = as fast as possible.
        market_clock: stamp synthetic events with market time (starting now) rather than the
            wall clock, so that at ``speed`` 60 a one-minute bar closes every second.
        faults: a fault spec (see :mod:`engine.replay.faults`).
        host, port: where to listen (port 0: a free port).
        history_bars: bars of history before the start served by the klines and candles
            endpoints (per bar length asked).
        rest_limit: REST requests answered per second (None: no limit); the rest get 429.
        polygon_key: the one API key the Polygon protocol accepts.
        polygon_max_connections: authenticated Polygon connections allowed per key.
        calendar: a session calendar (``XNYS``) outside whose sessions the Polygon stream
            sends nothing (None: always open).
    """

    def __init__(
        self,
        *,
        synthetic: SyntheticFeed | None = None,
        coinbase_tape: RecordedTape | None = None,
        binance_tape: RecordedTape | None = None,
        binance_rest: dict[str, bytes] | None = None,
        speed: float = 1.0,
        faults: str | list[Fault] = "",
        host: str = "127.0.0.1",
        port: int = 0,
        max_queue: int = 200_000,
        market_clock: bool = False,
        history_bars: int = 1000,
        rest_limit: int | None = None,
        polygon_key: str = "test-key",
        polygon_max_connections: int = 1,
        calendar: str | None = None,
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        if synthetic is None and coinbase_tape is None and binance_tape is None:
            raise ValueError("the replay exchange needs a synthetic market or a recording")
        self.synthetic = synthetic
        self.coinbase_tape = coinbase_tape
        self.binance_tape = binance_tape
        self.binance_rest = binance_rest or {}
        self.speed = speed
        self.market_clock = market_clock
        self.faults = parse_faults(faults) if isinstance(faults, str) else faults
        self.host = host
        self.port = port
        self.max_queue = max_queue
        self.high_water = max(1, max_queue // 4)
        self.stats: Counter[str] = Counter()
        self._conns: set[_Conn] = set()
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._tape_books: dict[str, VenueBook] = {}
        if synthetic is not None:
            self._venue_names = {venue_symbol(s): s for s in synthetic.symbols}
        else:
            self._venue_names = {}
        self.polygon_key = polygon_key
        self.polygon_max_connections = polygon_max_connections
        self.calendar = calendar
        self._sessions = session_calendar(calendar, 60) if calendar is not None else None
        self.rest_limit = rest_limit
        self._rest_times: list[float] = []
        self.history = BarHistory(
            synthetic,
            [t for t in (coinbase_tape, binance_tape) if t is not None],
            history_bars=history_bars,
            polygon_key=polygon_key,
            is_open=self._polygon_open,
            rest_url=lambda: self.rest_url,
        )
        self.started_ns = self.history.started_ns
        self._drained = asyncio.Event()
        self._paused = asyncio.Event()
        self._resume = asyncio.Event()

    # --- life -----------------------------------------------------------------------------

    @property
    def coinbase_url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    @property
    def binance_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> ReplayExchange:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._http,
            compression=None,
            max_size=2**20,
            ping_interval=20,
            ping_timeout=20,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        if self.synthetic is not None:
            self._tasks.append(asyncio.create_task(self._broadcast(self.synthetic), name="replay-market"))
            self._tasks.append(asyncio.create_task(self._heartbeats(self.synthetic), name="replay-heartbeats"))
            for task in self._tasks:
                task.add_done_callback(_report_crash)
        log.info("replay exchange listening on %s:%d", self.host, self.port)
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> ReplayExchange:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def pause(self) -> None:
        """Stop the synthetic market (connections stay open; heartbeats go on)."""
        self._resume.clear()
        self._paused.set()

    def resume(self) -> None:
        """Restart the synthetic market where it stopped (times continue from now)."""
        self._paused.clear()
        self._resume.set()

    async def _resumed(self) -> None:
        await self._resume.wait()

    async def drained(self, timeout: float = 10.0) -> None:
        """Wait until every connection's queue is empty (all queued messages were sent)."""
        deadline = time.monotonic() + timeout
        while any(c.queue.qsize() or c.held for c in self._conns):
            if time.monotonic() > deadline:
                raise TimeoutError("replay exchange queues did not drain")
            await asyncio.sleep(0.01)

    def close_all(self) -> None:
        """Drop every connection abruptly (as a network failure would)."""
        for conn in list(self._conns):
            conn.ws.transport.abort()

    # --- HTTP -----------------------------------------------------------------------------

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path.startswith("/api/") or parts.path.startswith("/products/"):
            now = time.monotonic()
            self._rest_times = [t for t in self._rest_times if now - t < 1.0]
            if self.rest_limit is not None and len(self._rest_times) >= self.rest_limit:
                self.stats["rest_rate_limited"] += 1
                response = _json_response(
                    connection, HTTPStatus.TOO_MANY_REQUESTS, {"code": -1003, "msg": "Too many requests."}
                )
                response.headers["Retry-After"] = "1"
                return response
            self._rest_times.append(now)
        if parts.path == "/api/v3/klines":
            self.stats["rest_klines"] += 1
            status, body = await self.history.klines(parse_qs(parts.query))
            return _json_response(connection, status, body)
        if parts.path.startswith("/v2/aggs/ticker/"):
            self.stats["rest_aggs"] += 1
            status, body = await self.history.aggs(parts.path, parse_qs(parts.query))
            return _json_response(connection, status, body)
        if parts.path.startswith("/products/") and parts.path.endswith("/candles"):
            self.stats["rest_candles"] += 1
            status, body = await self.history.candles(parts.path.split("/")[2], parse_qs(parts.query))
            return _json_response(connection, status, body)
        if parts.path == "/api/v3/depth":
            query = parse_qs(parts.query)
            symbol = (query.get("symbol") or [""])[0]
            limit = int((query.get("limit") or ["1000"])[0]) if (query.get("limit") or ["1"])[0].isdigit() else 1000
            body = self._depth(symbol, limit)
            self.stats["rest_depth"] += 1
            if body is None:
                return _json_response(connection, HTTPStatus.BAD_REQUEST, {"code": -1121, "msg": "Invalid symbol."})
            return _json_response(connection, HTTPStatus.OK, body)
        if parts.path == "/products":  # Coinbase's product list: what this exchange streams
            self.stats["rest_products"] += 1
            return _json_response(connection, HTTPStatus.OK, [{"id": s, "status": "online"} for s in self.products()])
        if parts.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return connection.respond(HTTPStatus.NOT_FOUND, f"no such endpoint {parts.path}\n")
        return None

    def products(self) -> list[str]:
        """The symbols this exchange streams (the synthetic market's, or those of its recordings)."""
        if self.synthetic is not None:
            return list(self.synthetic.symbols)
        return sorted(self._tape_books) if self._tape_books else []

    def _depth(self, symbol: str, limit: int) -> Any:
        if self.synthetic is not None:
            name = self._venue_names.get(symbol)
            if name is None:
                return None
            book = self.synthetic.books[name]
            bids, asks = book.snapshot(limit)
            return {"lastUpdateId": book.update_id, "bids": bids, "asks": asks}
        tape_book = self._tape_books.get(symbol)
        if tape_book is not None:
            bids, asks = tape_book.snapshot(limit)
            return {"lastUpdateId": tape_book.update_id, "bids": bids, "asks": asks}
        recorded = self.binance_rest.get(symbol)
        return None if recorded is None else orjson.loads(recorded)

    async def bars(self, symbol: str, interval_s: int, start_ns: int, end_ns: int) -> list[Bar]:
        """The bars of ``symbol`` starting in ``[start_ns, end_ns)`` (see :class:`BarHistory`)."""
        return await self.history.bars(symbol, interval_s, start_ns, end_ns)

    # --- connections ----------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        parts = urlsplit(ws.request.path)
        venue = "binance" if parts.path.startswith("/stream") or parts.path.startswith("/ws") else "coinbase"
        if parts.path.rstrip("/") in ("/stocks", "/delayed/stocks"):
            venue = "polygon"
        conn = _Conn(ws, venue)
        if venue == "polygon":
            conn.queue.put_nowait((polygon.status("connected", "Connected Successfully"), ""))
        if venue == "binance":
            streams = parse_qs(parts.query).get("streams", [""])[0]
            conn.streams = set(filter(None, streams.split("/")))
            if parts.path.startswith("/ws/"):
                conn.streams.add(parts.path[4:])
        self._conns.add(conn)
        self.stats["connections"] += 1
        writer = asyncio.create_task(self._writer(conn))
        tape: asyncio.Task[None] | None = None
        try:
            if venue == "binance" and self.binance_tape is not None:
                tape = asyncio.create_task(self._play_binance_tape(conn, self.binance_tape))
            async for message in ws:
                if venue == "polygon":
                    if not self._polygon_request(conn, message):
                        break
                elif venue == "coinbase":
                    started = self._coinbase_request(conn, message)
                    if started and self.coinbase_tape is not None and tape is None:
                        tape = asyncio.create_task(self._play_coinbase_tape(conn, self.coinbase_tape))
                else:
                    self._binance_request(conn, message)
        except ConnectionClosed:
            pass
        finally:
            self._conns.discard(conn)
            for task in (writer, tape):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self._drained.set()

    def _polygon_request(self, conn: _Conn, message: str | bytes) -> bool:
        """Answer one Polygon client message; False when the connection must close."""
        action, topics, replies = polygon.polygon_request(message, self.polygon_key, conn.authenticated)
        if action == "auth_ok":
            held = sum(1 for c in self._conns if c.venue == "polygon" and c.authenticated)
            if held >= self.polygon_max_connections:
                self.stats["polygon_max_connections"] += 1
                message_text = "Maximum number of websocket connections exceeded."
                conn.queue.put_nowait((polygon.status("max_connections", message_text), ""))
                conn.queue.put_nowait((_CLOSE_NORMAL, ""))
                return True
            conn.authenticated = True
        for reply in replies:
            conn.queue.put_nowait((reply, ""))
        if action == "auth_failed":
            self.stats["polygon_auth_failed"] += 1
            conn.queue.put_nowait((_CLOSE_NORMAL, ""))
        elif action == "subscribe":
            conn.products.update(topics)
        elif action == "unsubscribe":
            conn.products.difference_update(topics)
        return True

    def polygon_disconnect(self, kind: str) -> None:
        """Send every Polygon connection the status ``kind`` (``force_disconnect``,
        ``slow_consumer``...) and close it, as the venue does."""
        for conn in list(self._conns):
            if conn.venue == "polygon":
                conn.queue.put_nowait((polygon.status(kind, f"{kind} (replay exchange)"), ""))
                conn.queue.put_nowait((_CLOSE_NORMAL, ""))

    def _polygon_open(self, stamp: int) -> bool:
        if self._sessions is None:
            return True
        minute = stamp // (60 * NS_PER_S) * 60 * NS_PER_S
        return bool(self._sessions.is_open(np.array([minute], dtype=np.int64))[0])

    def _coinbase_request(self, conn: _Conn, message: str | bytes) -> bool:
        try:
            request = orjson.loads(message)
            kind = request["type"]
            products = [str(p) for p in request.get("product_ids", [])]
            channels = [c if isinstance(c, str) else str(c["name"]) for c in request["channels"]]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            self._send_now(conn, {"type": "error", "message": "Failed to subscribe", "reason": f"malformed: {exc}"})
            return False
        if kind not in ("subscribe", "unsubscribe"):
            self._send_now(conn, {"type": "error", "message": "Failed to subscribe", "reason": f"unknown type {kind}"})
            return False
        known = set(self.synthetic.symbols) if self.synthetic is not None else None
        unknown = [p for p in products if known is not None and p not in known]
        if unknown:
            self._send_now(
                conn,
                {"type": "error", "message": "Failed to subscribe", "reason": f"{unknown[0]} is not a valid product"},
            )
            return False
        if kind == "unsubscribe":
            for channel in channels:
                conn.channels.discard(f"{channel}")
                for product in products:
                    conn.products.discard(f"{channel}:{product}")
            return False
        for channel in channels:
            conn.channels.add(channel)
            for product in products:
                conn.products.add(f"{channel}:{product}")
        if self.coinbase_tape is not None:
            return True  # the tape carries its own acks and snapshots
        ack = {
            "type": "subscriptions",
            "channels": [
                {"name": c, "product_ids": sorted(p.split(":", 1)[1] for p in conn.products if p.startswith(c + ":"))}
                for c in sorted(conn.channels)
            ],
        }
        self._send_now(conn, ack)
        if self.synthetic is not None:
            for channel in channels:
                if channel in ("level2", "level2_batch"):
                    for product in products:
                        bids, asks = self.synthetic.books[product].snapshot()
                        self._send_now(conn, {"type": "snapshot", "product_id": product, "bids": bids, "asks": asks})
                if channel == "matches":
                    for product in products:
                        i = self.synthetic.symbols.index(product)
                        self._send_now(
                            conn,
                            {
                                "type": "last_match",
                                "trade_id": self.synthetic.trade_ids[i],
                                "product_id": product,
                                "time": iso_time(time.time_ns()),
                            },
                        )
        return True

    def _binance_request(self, conn: _Conn, message: str | bytes) -> None:
        try:
            request = orjson.loads(message)
            method, params, ident = request["method"], request.get("params", []), request["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._send_now(conn, {"error": {"code": 2, "msg": "Invalid request"}, "id": None})
            return
        if method == "SUBSCRIBE":
            conn.streams.update(params)
        elif method == "UNSUBSCRIBE":
            conn.streams.difference_update(params)
        self._send_now(conn, {"result": None, "id": ident})

    def _send_now(self, conn: _Conn, message: Any) -> None:
        conn.queue.put_nowait((orjson.dumps(message), ""))

    def _offer(self, conn: _Conn, payload: bytes, kind: str) -> None:
        if conn.queue.qsize() >= self.max_queue:
            self.stats["slow_consumers"] += 1
            log.warning("replay: a client fell %d messages behind; disconnecting it", self.max_queue)
            conn.queue.put_nowait((_CLOSE, ""))
            return
        conn.queue.put_nowait((payload, kind))

    async def _writer(self, conn: _Conn) -> None:
        ws = conn.ws
        queue = conn.queue
        try:
            while True:
                payload, kind = await queue.get()
                if payload is _CLOSE:
                    await ws.close(1008, "slow consumer")
                    return
                if payload is _CLOSE_NORMAL:
                    await ws.close(1000, "closed by the server")
                    return
                if kind and self.faults:
                    if not await self._faulted(conn, payload, kind):
                        continue
                else:
                    await ws.send(payload)
                if conn.held is not None and kind == conn.held[1] and conn.held[0] is not payload:
                    held, conn.held = conn.held, None  # a reordered message goes after the next of its kind
                    await ws.send(held[0])
                if queue.qsize() < self.high_water:
                    self._drained.set()
        except ConnectionClosed:
            return

    async def _faulted(self, conn: _Conn, payload: bytes, kind: str) -> bool:
        """Send ``payload`` through the fault switches; False when it was not sent."""
        conn.sent["any"] += 1
        conn.sent[kind] += 1
        ws = conn.ws
        for fault in self.faults:
            if fault.kind != "any" and fault.kind != kind:
                continue
            count = conn.sent[fault.kind]
            if not fault.armed() or count % fault.every != 0:
                continue
            fault.fired += 1
            self.stats[f"fault_{fault.name}"] += 1
            log.info("replay: fault %s at message %d (%s)", fault.name, count, fault.kind)
            if fault.name == "drop":
                return False
            if fault.name == "duplicate":
                await ws.send(payload)
            elif fault.name == "reorder":
                conn.held = (payload, kind)
                return False
            elif fault.name == "stall":
                await asyncio.sleep(fault.seconds)
            elif fault.name == "close":
                ws.transport.abort()
                raise ConnectionClosed(None, None)
            elif fault.name == "error":
                error = (
                    {"type": "error", "message": "replay exchange fault", "reason": "injected"}
                    if conn.venue == "coinbase"
                    else {"code": -1003, "msg": "replay exchange fault (injected)"}
                )
                await ws.send(orjson.dumps(error))
        await ws.send(payload)
        return True

    # --- the synthetic market -------------------------------------------------------------

    async def _broadcast(self, feed: SyntheticFeed) -> None:
        start_wall = time.time_ns()
        start_mono = time.monotonic()
        origin: int | None = None
        sent = 0
        for round_events in feed.rounds():
            for raw in round_events:
                if self._paused.is_set():
                    await self._resumed()
                    start_mono, start_wall, origin = time.monotonic(), time.time_ns(), raw.ts_ns
                if origin is None:
                    origin = raw.ts_ns
                if self.speed > 0:
                    due = (raw.ts_ns - origin) / 1e9 / self.speed
                    wait = due - (time.monotonic() - start_mono)
                    if wait > 0.001:
                        await asyncio.sleep(wait)
                    stamp = start_wall + (raw.ts_ns - origin if self.market_clock else int(due * 1e9))
                else:
                    stamp = start_wall + raw.ts_ns - origin if self.market_clock else time.time_ns()
                self._publish(feed.realize(raw), stamp)
                sent += 1
                if sent % 256 == 0:
                    await self._backpressure()
            await asyncio.sleep(0)

    async def _backpressure(self) -> None:
        if self.speed > 0:
            await asyncio.sleep(0)
            return
        while any(c.queue.qsize() >= self.high_water for c in self._conns):
            self._drained.clear()
            await self._drained.wait()
        await asyncio.sleep(0)

    def _publish(self, event: MarketEvent, stamp: int) -> None:
        self.stats["trades"] += 1
        self.history.record(event, stamp)
        if not self._conns:
            return
        assert self.synthetic is not None  # only the synthetic market publishes events
        coinbase: dict[str, bytes] = {}
        binance: dict[str, bytes] = {}
        stocks: dict[tuple[str, ...], bytes] = {}
        for conn in self._conns:
            if conn.venue == "polygon":
                if not conn.authenticated or not self._polygon_open(stamp):
                    continue
                name = polygon.ticker(event.symbol)
                kinds = tuple(k for k in ("T", "Q") if f"{k}.{name}" in conn.products or f"{k}.*" in conn.products)
                if kinds:
                    if kinds not in stocks:
                        makers = {"T": polygon.trade_event, "Q": polygon.quote_event}
                        stocks[kinds] = orjson.dumps([makers[k](event, stamp) for k in kinds])
                    self._offer(conn, stocks[kinds], "trade")
                continue
            if conn.venue == "coinbase":
                if f"matches:{event.symbol}" in conn.products:
                    if "match" not in coinbase:
                        coinbase["match"] = coinbase_match(event, stamp)
                    self._offer(conn, coinbase["match"], "trade")
                if (event.bid_changes or event.ask_changes) and (
                    f"level2:{event.symbol}" in conn.products or f"level2_batch:{event.symbol}" in conn.products
                ):
                    if "l2" not in coinbase:
                        coinbase["l2"] = coinbase_l2(event, stamp)
                    self._offer(conn, coinbase["l2"], "book")
                if f"ticker:{event.symbol}" in conn.products:
                    if "ticker" not in coinbase:
                        ticker = coinbase_ticker(event, self.synthetic.books[event.symbol], stamp)
                        coinbase["ticker"] = ticker if ticker is not None else b""
                    if coinbase["ticker"]:  # none in a market of trades only
                        self._offer(conn, coinbase["ticker"], "quote")
            else:
                lower = venue_symbol(event.symbol).lower()
                for stream in (f"{lower}@aggTrade", f"{lower}@trade"):
                    if stream in conn.streams:
                        if stream not in binance:
                            binance[stream] = binance_trade(event, stamp, stream)
                        self._offer(conn, binance[stream], "trade")
                if event.bid_changes or event.ask_changes:
                    for stream in (f"{lower}@depth@100ms", f"{lower}@depth"):
                        if stream in conn.streams:
                            if stream not in binance:
                                book = self.synthetic.books[event.symbol]
                                binance[stream] = binance_depth(event, stamp, stream, book.update_id)
                            self._offer(conn, binance[stream], "book")
                    stream = f"{lower}@bookTicker"
                    if stream in conn.streams:
                        if stream not in binance:
                            binance[stream] = binance_book_ticker(event, self.synthetic.books[event.symbol], stream)
                        self._offer(conn, binance[stream], "quote")

    async def _heartbeats(self, feed: SyntheticFeed) -> None:
        last_minute = time.time_ns() // (60 * NS_PER_S)
        while True:
            await asyncio.sleep(1.0)
            now_ns = time.time_ns()
            minute = now_ns // (60 * NS_PER_S)
            self._aggregates(feed, now_ns // NS_PER_S - 1, last_minute if minute > last_minute else None)
            last_minute = minute
            now = iso_time(now_ns)
            for conn in list(self._conns):
                if conn.venue != "coinbase" or "heartbeat" not in conn.channels:
                    continue
                for i, symbol in enumerate(feed.symbols):
                    if f"heartbeat:{symbol}" in conn.products:
                        message = {
                            "type": "heartbeat",
                            "sequence": 0,
                            "last_trade_id": feed.trade_ids[i],
                            "product_id": symbol,
                            "time": now,
                        }
                        conn.queue.put_nowait((orjson.dumps(message), ""))

    def _aggregates(self, feed: SyntheticFeed, second: int, minute: int | None) -> None:
        """Polygon ``A`` aggregates of ``second`` and, when a minute ended, ``AM`` of ``minute``."""
        conns = [c for c in self._conns if c.venue == "polygon" and c.authenticated]
        if not conns or not self._polygon_open(second * NS_PER_S):
            return
        spans = [("A", 1, second * NS_PER_S)]
        if minute is not None:
            spans.append(("AM", 60, minute * 60 * NS_PER_S))
        for symbol in feed.symbols:
            name = polygon.ticker(symbol)
            for kind, seconds, start in spans:
                wanted = [c for c in conns if f"{kind}.{name}" in c.products or f"{kind}.*" in c.products]
                if not wanted:
                    continue
                bars = self.history.published_bars(symbol, seconds, start, start + seconds * NS_PER_S)
                if bars:
                    payload = orjson.dumps([polygon.aggregate_event(kind, bars[0], bars[0].volume)])
                    for conn in wanted:
                        self._offer(conn, payload, "quote")

    # --- recordings -----------------------------------------------------------------------

    async def _play_coinbase_tape(self, conn: _Conn, tape: RecordedTape) -> None:
        channel_of = {
            "snapshot": "level2",
            "l2update": "level2",
            "match": "matches",
            "last_match": "matches",
            "ticker": "ticker",
            "heartbeat": "heartbeat",
        }
        await self._play(conn, tape, lambda msg: _coinbase_wanted(conn, msg, channel_of))

    async def _play_binance_tape(self, conn: _Conn, tape: RecordedTape) -> None:
        self._tape_books = {}
        for symbol, body in self.binance_rest.items():
            snapshot = orjson.loads(body)
            book = VenueBook()
            book.replace(snapshot["bids"], snapshot["asks"], int(snapshot["lastUpdateId"]))
            self._tape_books[symbol] = book

        def wanted(msg: dict[str, Any]) -> str | None:
            stream = msg.get("stream")
            if stream not in conn.streams:
                return None
            data = msg.get("data", {})
            if data.get("e") == "depthUpdate":
                book = self._tape_books.get(data["s"])
                if book is not None and data["u"] > book.update_id:
                    for p, s in data["b"]:
                        book.change(True, p, s)
                    for p, s in data["a"]:
                        book.change(False, p, s)
                    book.update_id = data["u"]
                return "book"
            return "trade" if data.get("e") in ("aggTrade", "trade") else "quote"

        await self._play(conn, tape, wanted)

    async def _play(self, conn: _Conn, tape: RecordedTape, wanted: Any) -> None:
        start = time.monotonic()
        origin = tape.messages[0].received_ns
        for i, message in enumerate(tape.messages):
            try:
                decoded = orjson.loads(message.payload)
            except orjson.JSONDecodeError:
                kind: str | None = "any"  # pass broken bytes on as they were recorded
            else:
                kind = wanted(decoded) if isinstance(decoded, dict) else "any"
            if kind is None:
                continue
            if self.speed > 0:
                wait = (message.received_ns - origin) / 1e9 / self.speed - (time.monotonic() - start)
                if wait > 0.001:
                    await asyncio.sleep(wait)
            conn.queue.put_nowait((message.payload, "" if kind == "control" else kind))
            if i % 256 == 0:
                while conn.queue.qsize() >= self.high_water:
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0)
        self.stats["tapes_finished"] += 1


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("replay exchange: %s stopped: %r", task.get_name(), task.exception(), exc_info=task.exception())


def _coinbase_wanted(conn: _Conn, msg: dict[str, Any], channel_of: dict[str, str]) -> str | None:
    kind = msg.get("type")
    if kind == "subscriptions":
        return "control"
    channel = channel_of.get(str(kind))
    if channel is None:
        return "any"
    product = msg.get("product_id")
    if not any(f"{c}:{product}" in conn.products for c in _aliases(channel)):
        return None
    if kind in ("snapshot", "last_match"):
        return "control"
    return {"level2": "book", "matches": "trade"}.get(channel, "quote")


def _aliases(channel: str) -> tuple[str, ...]:
    return ("level2", "level2_batch") if channel == "level2" else (channel,)


def _json_response(connection: ServerConnection, status: HTTPStatus, body: Any) -> Response:
    response = connection.respond(status, "")
    payload = orjson.dumps(body)
    headers = Headers(
        [(k, v) for k, v in response.headers.raw_items() if k.lower() not in ("content-type", "content-length")]
    )
    headers["Content-Type"] = "application/json"
    headers["Content-Length"] = str(len(payload))
    return Response(response.status_code, response.reason_phrase, headers, payload)
