"""Helpers shared by the engine feed tests: a sink that keeps everything, book comparison."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from engine.feeds.book import OrderBook
from engine.feeds.client import FeedClient
from engine.feeds.records import Quote
from engine.replay.market import SyntheticFeed
from feature_store.records import Trade


class KeepingSink:
    def __init__(self) -> None:
        self.trades: list[Trade] = []
        self.quotes: list[Quote] = []
        self.book_events = 0
        self.times: list[int] = []

    def on_trade(self, trade: Trade) -> None:
        self.trades.append(trade)

    def on_book(self, venue: str, book: OrderBook) -> None:
        self.book_events += 1

    def on_quote(self, quote: Quote) -> None:
        self.quotes.append(quote)

    def on_time(self, venue: str, ts_ns: int) -> None:
        self.times.append(ts_ns)


def true_levels(feed: SyntheticFeed, symbol: str) -> tuple[dict[float, float], dict[float, float]]:
    book = feed.books[symbol]
    bids = {float(k): float(v[1]) for k, v in book.bids.items()}
    asks = {float(k): float(v[1]) for k, v in book.asks.items()}
    return bids, asks


async def wait_for(condition: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def books_match(client: FeedClient, feed: SyntheticFeed) -> bool:
    return all(client.synced[s] and client.books[s].levels() == true_levels(feed, s) for s in feed.symbols)
