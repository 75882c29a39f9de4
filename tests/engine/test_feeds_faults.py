"""The feed clients against the replay exchange's synthetic market, with every fault switch.

Each case runs one client against its own exchange, pauses the market, lets the queues
drain and then compares: the client's books with the exchange's books level by level, and
the trades the client delivered with the trades the exchange published.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.errors import FeedError
from engine.feeds.client import FeedClient
from engine.feeds.venues import BinanceFeed, CoinbaseFeed, make_feed
from engine.replay.faults import parse_faults
from engine.replay.market import SyntheticFeed
from engine.replay.server import ReplayExchange
from tests.engine.feed_helpers import KeepingSink, books_match, wait_for


async def _run(
    venue: str, faults: str, *, seconds: float = 2.5, symbols: int = 4, **client_kw: Any
) -> tuple[FeedClient, KeepingSink, ReplayExchange]:
    feed = SyntheticFeed(symbols, trades_per_s=8, seed=11)
    sink = KeepingSink()
    exchange = ReplayExchange(synthetic=feed, speed=4, faults=faults)
    exchange.pause()  # the market opens once the client is subscribed, so every trade counts
    async with exchange:
        kw: dict[str, Any] = {"stale_after_s": 5.0, "backoff_s": (0.05, 0.5), **client_kw}
        if venue == "coinbase":
            client: FeedClient = CoinbaseFeed(list(feed.symbols), sink, url=exchange.coinbase_url, **kw)
        else:
            client = BinanceFeed(list(feed.symbols), sink, url=exchange.binance_url, rest_url=exchange.rest_url, **kw)
        task = asyncio.create_task(client.run())
        await wait_for(lambda: all(client.synced.values()), what="the first snapshots")
        exchange.resume()
        await asyncio.sleep(seconds)
        exchange.pause()
        await asyncio.sleep(0.2)
        await exchange.drained()
        await wait_for(lambda: books_match(client, feed), timeout=10, what=f"{venue} books to match the exchange")
        client.stop()
        await task
        exchange.stats["published_trades"] = feed.published
    return client, sink, exchange


def _unique_trades(sink: KeepingSink) -> set[tuple[str, str]]:
    return {(t.symbol, t.trade_id) for t in sink.trades}


@pytest.mark.parametrize("venue", ["coinbase", "binance"])
def test_clean_stream_books_and_every_trade(venue: str) -> None:
    client, sink, exchange = asyncio.run(_run(venue, ""))
    assert client.stats.trades == exchange.stats["published_trades"] == len(_unique_trades(sink))
    assert client.stats.book_gaps == client.stats.duplicates == client.stats.malformed == 0


@pytest.mark.parametrize("venue", ["coinbase", "binance"])
def test_dropped_book_message_is_detected_and_the_book_rebuilt(venue: str) -> None:
    client, _, exchange = asyncio.run(_run(venue, "drop=15@book"))
    assert exchange.stats["fault_drop"] == 1
    assert client.stats.book_gaps >= 1 and client.stats.resyncs >= 1  # and books match (checked in _run)


def test_reordered_book_messages_resync_binance() -> None:
    client, _, exchange = asyncio.run(_run("binance", "reorder=15@book"))
    assert exchange.stats["fault_reorder"] == 1
    assert client.stats.book_gaps >= 1 and client.stats.resyncs >= 1


@pytest.mark.parametrize("venue", ["coinbase", "binance"])
def test_duplicated_trade_is_dropped(venue: str) -> None:
    client, sink, exchange = asyncio.run(_run(venue, "duplicate=10@trade"))
    assert exchange.stats["fault_duplicate"] == 1
    assert client.stats.duplicates == 1
    assert len(sink.trades) == len(_unique_trades(sink)) == exchange.stats["published_trades"]


def test_reordered_trade_is_late_not_lost() -> None:
    # One symbol, so that the held trade is overtaken by the next trade of the same symbol.
    client, sink, exchange = asyncio.run(_run("coinbase", "reorder=10@trade", symbols=1))
    assert exchange.stats["fault_reorder"] == 1
    assert client.stats.late_trades == 1 and client.stats.missing_trades == 0
    assert len(sink.trades) == exchange.stats["published_trades"]


def test_dropped_trade_is_a_gap() -> None:
    client, sink, exchange = asyncio.run(_run("binance", "drop=10@trade"))
    assert client.stats.trade_gaps == 1 and client.stats.missing_trades == 1
    assert len(sink.trades) == exchange.stats["published_trades"] - 1


@pytest.mark.parametrize("venue", ["coinbase", "binance"])
def test_stall_trips_the_watchdog_and_the_client_reconnects(venue: str) -> None:
    client, _, exchange = asyncio.run(_run(venue, "stall=20:3", stale_after_s=0.5))
    assert exchange.stats["fault_stall"] == 1
    assert client.stats.stale >= 1 and client.stats.reconnects >= 1 and client.stats.connects >= 2


@pytest.mark.parametrize("venue", ["coinbase", "binance"])
def test_abrupt_close_reconnects_and_rebuilds(venue: str) -> None:
    client, _, exchange = asyncio.run(_run(venue, "close=20"))
    assert exchange.stats["fault_close"] == 1
    assert client.stats.reconnects >= 1 and client.stats.connects >= 2
    assert client.stats.snapshots >= 8  # every book rebuilt from a fresh snapshot


@pytest.mark.parametrize("venue", ["coinbase", "binance"])
def test_venue_error_is_counted_and_the_feed_goes_on(venue: str) -> None:
    client, sink, exchange = asyncio.run(_run(venue, "error=10"))
    assert exchange.stats["fault_error"] == 1 and client.stats.venue_errors == 1
    assert len(sink.trades) == exchange.stats["published_trades"]


def test_backoff_is_capped_and_jittered_against_a_dead_port() -> None:
    async def main() -> FeedClient:
        client = CoinbaseFeed(["X-USD"], KeepingSink(), url="ws://127.0.0.1:9/", backoff_s=(0.01, 0.05))
        task = asyncio.create_task(client.run())
        await asyncio.sleep(0.6)
        client.stop()
        await task
        return client

    client = asyncio.run(main())
    assert client.stats.connects == 0
    assert 6 <= client.stats.reconnects <= 60  # waits of 0.025-0.05 s once capped
    assert "Connect" in client.stats.last_error or "Errno" in client.stats.last_error


def test_bad_configuration_is_refused_with_a_clear_error() -> None:
    with pytest.raises(FeedError, match="ws:// or wss://"):
        CoinbaseFeed(["X-USD"], KeepingSink(), url="http://example.com")
    with pytest.raises(FeedError, match="no symbols"):
        make_feed("coinbase", [], KeepingSink(), url="ws://127.0.0.1:1/")
    with pytest.raises(FeedError, match="unknown venue"):
        make_feed("kraken", ["X-USD"], KeepingSink(), url="ws://127.0.0.1:1/")
    with pytest.raises(ValueError, match="stall needs a duration"):
        parse_faults("stall=3")
    with pytest.raises(ValueError, match="kind must be"):
        parse_faults("drop=3@news")


def test_two_runs_of_the_replay_exchange_never_reuse_a_trade_id() -> None:
    first, second = SyntheticFeed(2, books=False), SyntheticFeed(2, books=False)
    rounds_a, rounds_b = first.rounds(), second.rounds()
    events_a = [first.realize(raw) for raw, _ in zip(next(rounds_a), range(50), strict=False)]
    events_b = [second.realize(raw) for raw, _ in zip(next(rounds_b), range(50), strict=False)]
    ids_a = {(e.symbol, e.trade_id) for e in events_a}
    ids_b = {(e.symbol, e.trade_id) for e in events_b}
    assert len(ids_a) == 50 and not ids_a & ids_b and first.published == 50
    assert SyntheticFeed(2, books=False, first_trade_id=0).trade_ids == [0, 0]  # reproducible when asked
