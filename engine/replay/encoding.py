"""Venue messages of the synthetic market, in each venue's own format.

The replay exchange sends these to its clients; :func:`synthetic_stream` makes a finite
stream of them offline (the seed corpus of the feed fuzzer, and decode benchmarks).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from engine.feeds.binance import venue_symbol
from engine.replay import polygon
from engine.replay.market import MarketEvent, SyntheticFeed, VenueBook
from feature_store.records import Bar

__all__ = [
    "binance_book_ticker",
    "binance_depth",
    "binance_trade",
    "coinbase_l2",
    "coinbase_match",
    "coinbase_ticker",
    "iso_time",
    "synthetic_stream",
]


def iso_time(ns: int) -> str:
    """Epoch nanoseconds as Coinbase writes times (``2021-04-17T16:43:37.089723Z``)."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest // 1000:06d}Z"


def coinbase_match(event: MarketEvent, stamp: int) -> bytes:
    return orjson.dumps(
        {
            "type": "match",
            "trade_id": event.trade_id,
            "side": "sell" if event.taker_buys else "buy",
            "size": f"{event.size:.8f}",
            "price": repr(event.price),
            "product_id": event.symbol,
            "time": iso_time(stamp),
        }
    )


def coinbase_l2(event: MarketEvent, stamp: int) -> bytes:
    changes = [["buy", p, s] for p, s in event.bid_changes] + [["sell", p, s] for p, s in event.ask_changes]
    return orjson.dumps({"type": "l2update", "product_id": event.symbol, "changes": changes, "time": iso_time(stamp)})


def coinbase_ticker(event: MarketEvent, book: VenueBook, stamp: int) -> bytes | None:
    """The ticker after ``event``, or None without a book to quote (a market of trades only)."""
    bids, asks = book.snapshot(1)
    if not bids or not asks:
        return None
    return orjson.dumps(
        {
            "type": "ticker",
            "product_id": event.symbol,
            "price": repr(event.price),
            "best_bid": bids[0][0],
            "best_bid_size": bids[0][1],
            "best_ask_size": asks[0][1],
            "best_ask": asks[0][0],
            "side": "buy" if event.taker_buys else "sell",
            "time": iso_time(stamp),
            "trade_id": event.trade_id,
            "last_size": repr(event.size),
        }
    )


def binance_trade(event: MarketEvent, stamp: int, stream: str) -> bytes:
    ms = stamp // 1_000_000
    kind = "aggTrade" if stream.endswith("@aggTrade") else "trade"
    data: dict[str, Any] = {
        "e": kind,
        "E": ms,
        "s": venue_symbol(event.symbol),
        "p": repr(event.price),
        "q": f"{event.size:.8f}",
        "T": ms,
        "m": not event.taker_buys,
        "M": True,
    }
    data["a" if kind == "aggTrade" else "t"] = event.trade_id
    return orjson.dumps({"stream": stream, "data": data})


def binance_depth(event: MarketEvent, stamp: int, stream: str, update_id: int) -> bytes:
    data = {
        "e": "depthUpdate",
        "E": stamp // 1_000_000,
        "s": venue_symbol(event.symbol),
        "U": update_id,
        "u": update_id,
        "b": [list(c) for c in event.bid_changes],
        "a": [list(c) for c in event.ask_changes],
    }
    return orjson.dumps({"stream": stream, "data": data})


def binance_book_ticker(event: MarketEvent, book: VenueBook, stream: str) -> bytes:
    bids, asks = book.snapshot(1)
    data = {
        "u": book.update_id,
        "s": venue_symbol(event.symbol),
        "b": bids[0][0] if bids else "0",
        "B": bids[0][1] if bids else "0",
        "a": asks[0][0] if asks else "0",
        "A": asks[0][1] if asks else "0",
    }
    return orjson.dumps({"stream": stream, "data": data})


def synthetic_stream(
    venue: str, count: int, *, seed: int = 7, symbols: int = 4
) -> tuple[list[bytes], list[str], dict[str, bytes]]:
    """``count`` messages of the synthetic market as ``venue`` sends them.

    Returns the messages (Coinbase: a book snapshot per symbol first, then trades, book
    changes, tickers and heartbeats; Binance: trades, depth diffs and book tickers), the
    engine's symbols, and (Binance) each symbol's REST depth body at the end of the stream.
    """
    feed = SyntheticFeed(symbols, trades_per_s=5.0, seed=seed, first_trade_id=0)
    out: list[bytes] = []
    if venue == "coinbase":
        for symbol in feed.symbols:
            bids, asks = feed.books[symbol].snapshot()
            out.append(orjson.dumps({"type": "snapshot", "product_id": symbol, "bids": bids, "asks": asks}))
    rounds = feed.rounds()
    while len(out) < count:
        for raw in next(rounds):
            if len(out) >= count:
                break
            event = feed.realize(raw)
            book = feed.books[event.symbol]
            stamp = raw.ts_ns
            if venue == "coinbase":
                out.append(coinbase_match(event, stamp))
                out.append(coinbase_l2(event, stamp))
                ticker = coinbase_ticker(event, book, stamp)
                if ticker is not None:
                    out.append(ticker)
                if event.trade_id % 20 == 0:
                    beat = {"type": "heartbeat", "sequence": 0, "last_trade_id": event.trade_id,
                            "product_id": event.symbol, "time": iso_time(stamp)}  # fmt: skip
                    out.append(orjson.dumps(beat))
            elif venue == "polygon":
                out.append(orjson.dumps([polygon.trade_event(event, stamp), polygon.quote_event(event, stamp)]))
                if event.trade_id % 30 == 0:
                    bar = Bar(event.symbol, stamp // 60_000_000_000 * 60_000_000_000, 60, event.price, event.price,
                              event.price, event.price, event.size, 0.0, event.price, 1)  # fmt: skip
                    out.append(orjson.dumps([polygon.aggregate_event("AM", bar, event.size)]))
            else:
                lower = venue_symbol(event.symbol).lower()
                out.append(binance_trade(event, stamp, f"{lower}@aggTrade"))
                out.append(binance_depth(event, stamp, f"{lower}@depth@100ms", book.update_id))
                out.append(binance_book_ticker(event, book, f"{lower}@bookTicker"))
    snapshots: dict[str, bytes] = {}
    if venue == "binance":
        for symbol in feed.symbols:
            bids, asks = feed.books[symbol].snapshot(1000)
            snapshots[symbol] = orjson.dumps({"lastUpdateId": feed.books[symbol].update_id, "bids": bids, "asks": asks})
    names = [polygon.ticker(s) for s in feed.symbols] if venue == "polygon" else list(feed.symbols)
    return out[:count], names, snapshots
