"""The Polygon (Massive) stocks feed over a real WebSocket to the replay exchange: the
handshake, auth failure, the disconnect statuses and reconnects, the decoder's rules, and
aggregates history through the backfill."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from engine.backfill import BackfillOptions, backfill
from engine.errors import EngineError, FeedError
from engine.feeds.polygon import PolygonDecoder
from engine.feeds.records import Aggregate, Quote, Status
from engine.feeds.venues import PolygonFeed
from engine.replay import polygon as replay_polygon
from engine.replay.market import SyntheticFeed
from engine.replay.server import ReplayExchange
from feature_store.database import open_pool
from feature_store.records import NS_PER_S, Trade
from tests.engine.feed_helpers import KeepingSink, wait_for

MS = 1_634_000_000_000


async def _exchange(**kw: Any) -> ReplayExchange:
    market = SyntheticFeed(3, trades_per_s=20.0, books=False)
    return await ReplayExchange(synthetic=market, speed=1.0, **kw).start()


def _feed(exchange: ReplayExchange, sink: KeepingSink, key: str = "test-key") -> PolygonFeed:
    assert exchange.synthetic is not None
    tickers = [replay_polygon.ticker(s) for s in exchange.synthetic.symbols]
    return PolygonFeed(
        tickers, sink, url=exchange.binance_url + "/stocks", api_key=key, backoff_s=(0.05, 0.2),
        topics=("T", "Q", "A", "AM"),
    )  # fmt: skip


def test_authenticates_subscribes_and_streams_trades_quotes_and_aggregates() -> None:
    async def scenario() -> tuple[PolygonFeed, KeepingSink]:
        exchange = await _exchange()
        sink = KeepingSink()
        feed = _feed(exchange, sink)
        task = asyncio.create_task(feed.run())
        try:
            await wait_for(lambda: len(sink.trades) > 30 and feed.stats.aggregates >= 3, 15, "trades and aggregates")
        finally:
            feed.stop()
            await task
            await exchange.stop()
        return feed, sink

    feed, sink = asyncio.run(scenario())
    assert feed.authenticated and feed.stats.venue_errors == 0 and feed.stats.malformed == 0
    assert {t.symbol for t in sink.trades} <= set(feed.symbols) and all(t.venue == "polygon" for t in sink.trades)
    assert {t.side for t in sink.trades} == {"buy", "sell"}  # the quote rule decided each side
    assert sink.quotes and feed.stats.duplicates == 0 and feed.stats.trade_gaps == 0  # q is not gap-free


def test_a_refused_key_stops_the_feed_with_a_clear_error() -> None:
    async def scenario() -> tuple[PolygonFeed, int]:
        exchange = await _exchange()
        feed = _feed(exchange, KeepingSink(), key="wrong")
        try:
            with pytest.raises(FeedError, match=r"auth_failed.*POLYGON_API_KEY"):
                await asyncio.wait_for(feed.run(), 10)
        finally:
            await exchange.stop()
        return feed, exchange.stats["polygon_auth_failed"]

    feed, refused = asyncio.run(scenario())
    assert refused == 1 and feed.stats.connects == 1  # no hammering with a wrong key
    with pytest.raises(FeedError, match="POLYGON_API_KEY"):
        PolygonFeed(["AAPL"], KeepingSink(), url="ws://127.0.0.1:1/stocks", api_key="")


def test_disconnect_statuses_reconnect_reauthenticate_and_resubscribe() -> None:
    async def scenario() -> tuple[PolygonFeed, PolygonFeed, KeepingSink, int]:
        exchange = await _exchange()
        sink = KeepingSink()
        feed = _feed(exchange, sink)
        task = asyncio.create_task(feed.run())
        second = _feed(exchange, KeepingSink())  # the same key while the first holds its connection
        other = asyncio.create_task(second.run())
        try:
            await wait_for(lambda: len(sink.trades) > 10, 15, "first trades")
            await wait_for(lambda: second.stats.venue_errors >= 1, 15, "max_connections")
            second.stop()
            await other
            for status in ("force_disconnect", "slow_consumer"):
                connects, before = feed.stats.connects, len(sink.trades)
                exchange.polygon_disconnect(status)
                await wait_for(lambda c=connects: feed.stats.connects > c, 15, f"reconnect after {status}")
                await wait_for(lambda b=before: len(sink.trades) > b + 10, 15, f"trades after {status}")
        finally:
            feed.stop()
            await task
            await exchange.stop()
        return feed, second, sink, exchange.stats["polygon_max_connections"]

    feed, second, sink, refused = asyncio.run(scenario())
    assert refused >= 1 and second.last_status == "max_connections" and second.stats.trades == 0
    assert feed.stats.connects == 3 and feed.stats.reconnects == 2 and feed.authenticated
    assert feed.last_status == "slow_consumer"
    ids = [(t.symbol, t.trade_id) for t in sink.trades]
    assert len(ids) == len(set(ids))  # nothing delivered twice across the reconnects


def test_decoder_rules_conditions_sides_and_bad_events() -> None:
    d = PolygonDecoder()

    def trade(price: float, q: int, **kw: Any) -> dict[str, Any]:
        return {
            "ev": "T",
            "sym": "AAPL",
            "x": 4,
            "i": "1",
            "z": 3,
            "p": price,
            "s": 100,
            "c": [],
            "t": MS,
            "q": q,
            **kw,
        }

    quote = {"ev": "Q", "sym": "AAPL", "bx": 4, "bp": 99.0, "bs": 3, "ax": 7, "ap": 101.0, "as": 2, "t": MS, "q": 1}
    frame = [
        {"ev": "status", "status": "auth_success", "message": "authenticated"},
        quote,
        trade(101.0, 10),  # at the ask: a buy
        trade(99.0, 11),  # at the bid: a sell
        trade(100.0, 12, c=[15]),  # an official close print: no last sale
        trade(100.0, 13, s="many"),  # bad size
        trade(100.0, 14, t="soon"),  # bad time
        {
            "ev": "AM",
            "sym": "AAPL",
            "v": 10,
            "vw": 100,
            "o": 100,
            "c": 100,
            "h": 101,
            "l": 99,
            "s": MS,
            "e": MS + 60000,
        },
        {"ev": "LULD", "T": "AAPL"},
        [1, 2],
    ]
    decoded = d.decode(orjson.dumps(frame))
    records, errors, ignored = decoded.records, decoded.errors, decoded.ignored
    kinds = [type(r) for r in records]
    assert kinds == [Status, Quote, Trade, Trade, Aggregate]
    trades = [r for r in records if isinstance(r, Trade)]
    assert [(t.side, t.trade_id, t.ts_ns) for t in trades] == [("buy", "10", MS * 10**6), ("sell", "11", MS * 10**6)]
    assert sorted(e.reason for e in errors) == ["bad_time", "bad_value", "not_last_sale", "wrong_type"]
    assert ignored == 1
    with pytest.raises(EngineError):
        d.decode(b'{"ev": "T"')


def test_sequence_numbers_order_and_find_repeats_but_no_gaps() -> None:
    sink = KeepingSink()
    feed = PolygonFeed(["AAPL"], sink, url="ws://127.0.0.1:1/stocks", api_key="k", max_ahead_s=None)

    def send(*qs: int) -> None:
        events = [{"ev": "T", "sym": "AAPL", "x": 4, "i": "1", "p": 100.0, "s": 1, "t": MS, "q": q} for q in qs]
        feed.handle(orjson.dumps(events))

    send(100, 5000, 90_000)  # increasing, far apart: no gap counted
    send(5000)  # a repeat
    send(60_000)  # late (after a later one), never seen: delivered
    send(2**62)  # implausible: not believed
    send(90_001)
    assert [t.trade_id for t in sink.trades] == ["100", "5000", "90000", "60000", "90001"]
    assert feed.stats.duplicates == 1 and feed.stats.trade_gaps == 0 and feed.stats.late_trades == 1


def test_session_calendar_keeps_the_stream_quiet_while_the_market_is_closed() -> None:
    exchange = ReplayExchange(synthetic=SyntheticFeed(2, books=False), calendar="XNYS")
    saturday = 1_764_417_600 * NS_PER_S  # 2025-11-29 12:00 UTC
    monday = 1_764_601_200 * NS_PER_S  # 2025-12-01 15:00 UTC (10:00 in New York)
    assert not exchange._polygon_open(saturday) and exchange._polygon_open(monday)


def test_aggregates_backfill_pages_and_refuses_a_wrong_key(fresh_database_url: str) -> None:
    async def scenario() -> tuple[Any, int]:
        exchange = await _exchange(history_bars=1200)
        exchange.pause()
        pool = await open_pool(fresh_database_url, min_size=1, max_size=2)
        try:
            assert exchange.synthetic is not None
            tickers = tuple(replay_polygon.ticker(s) for s in exchange.synthetic.symbols)
            end = exchange.started_ns // (60 * NS_PER_S) * 60 * NS_PER_S
            options = BackfillOptions("polygon", tickers, end - 1000 * 60 * NS_PER_S, end, 60,
                                      rest_url=exchange.rest_url, api_key="test-key")  # fmt: skip
            summary = await backfill(options, pool)
            with pytest.raises(EngineError, match="401"):
                await backfill(BackfillOptions("polygon", tickers, end - 60 * NS_PER_S * 2000, end, 60,
                                               rest_url=exchange.rest_url, api_key="wrong"), pool)  # fmt: skip
            async with pool.acquire() as conn:
                trades = await conn.fetchval(
                    "SELECT min(trades) FROM bars WHERE symbol = ANY($1::text[])", list(tickers)
                )
            return summary, trades
        finally:
            await pool.close()
            await exchange.stop()

    summary, min_trades = asyncio.run(scenario())
    assert summary.bars_stored == 3 * 1000 and summary.requests == 3 and min_trades > 0
