"""Coinbase Exchange market data (``wss://ws-feed.exchange.coinbase.com``), as recorded.

Channels: ``matches`` (trades; ``side`` is the maker's side, so the taker's is the
opposite; ``last_match`` is the trade printed before the subscription), ``ticker`` (best
bid and ask), ``heartbeat`` (per product, with ``last_trade_id``) and ``level2`` /
``level2_batch`` (a ``snapshot`` then ``l2update`` changes; the same messages, the batch
channel being the one open without authentication today).

The public level-2 messages carry no sequence number: a lost ``l2update`` cannot be seen
from the book messages themselves. The client resynchronizes a book (a fresh subscription
gives a fresh snapshot) when it is crossed, and on every reconnect; trade-id gaps are seen
through ``matches`` and ``heartbeat``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson

from engine.errors import DecodeError, decode_reason
from engine.feeds.decoding import IsoClock, NumberCache, level_list, non_negative, positive, symbol_text, venue_id
from engine.feeds.records import BookUpdate, Event, Heartbeat, Quote, Subscribed, VenueError
from feature_store.records import Trade

__all__ = ["VENUE", "CoinbaseDecoder", "subscribe_message", "unsubscribe_message"]

VENUE = "coinbase"
DEFAULT_URL = "wss://ws-feed.exchange.coinbase.com"
BOOK_CHANNELS = ("level2", "level2_batch")


def subscribe_message(symbols: list[str], channels: list[str]) -> bytes:
    """The subscribe request for ``symbols`` on ``channels``."""
    return orjson.dumps({"type": "subscribe", "product_ids": symbols, "channels": channels})


def unsubscribe_message(symbols: list[str], channels: list[str]) -> bytes:
    """The unsubscribe request for ``symbols`` on ``channels``."""
    return orjson.dumps({"type": "unsubscribe", "product_ids": symbols, "channels": channels})


class CoinbaseDecoder:
    """Bytes of one Coinbase message to a normalized record, or None for an ignored type.

    Raises:
        DecodeError: bad JSON, or a known message type with a missing or malformed field.
    """

    venue = VENUE

    def __init__(self) -> None:
        self._clock = IsoClock()
        self._numbers = NumberCache()
        self._handlers: dict[str, Callable[[dict[str, Any]], Trade | Event]] = {
            "match": self._match,
            "ticker": self._ticker,
            "heartbeat": self._heartbeat,
            "last_match": self._last_match,
            "snapshot": self._snapshot,
            "subscriptions": self._subscriptions,
            "error": self._error,
        }

    def decode(self, payload: bytes | str) -> Trade | Event | None:
        try:
            msg = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"coinbase: not JSON: {exc}", "not_json") from exc
        try:
            kind = msg["type"]
            if kind == "l2update":  # nearly every message: decoded inline
                bids: list[tuple[float, float]] = []
                asks: list[tuple[float, float]] = []
                numbers = self._numbers
                prices, sizes = numbers.prices, numbers.sizes
                product = msg["product_id"]
                if type(product) is not str:
                    product = symbol_text(product)
                changes = msg["changes"]
                if type(changes) is not list:
                    raise TypeError(f"changes must be a list, got {type(changes).__name__}")
                for side, price, size in changes:
                    p = prices.get(price)
                    if p is None:
                        p = numbers.price(price)
                    s = sizes.get(size)
                    if s is None:
                        s = numbers.size(size)
                    if side == "buy":
                        bids.append((p, s))
                    elif side == "sell":
                        asks.append((p, s))
                    else:
                        raise ValueError(f"bad side {side!r}")
                return BookUpdate(VENUE, product, self._clock.ns(msg["time"]), bids, asks)
            if type(kind) is not str:
                raise TypeError(f"type must be a string, got {type(kind).__name__}")
            handler: Callable[[dict[str, Any]], Trade | Event] | None = self._handlers.get(kind)
            return None if handler is None else handler(msg)
        except DecodeError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            kind = msg.get("type") if isinstance(msg, dict) else type(msg).__name__
            raise DecodeError(
                f"coinbase {str(kind)[:40]}: malformed ({exc.__class__.__name__}: {str(exc)[:200]})", decode_reason(exc)
            ) from exc

    def _snapshot(self, msg: dict[str, Any]) -> BookUpdate:
        return BookUpdate(
            VENUE, symbol_text(msg["product_id"]), 0, level_list(msg["bids"]), level_list(msg["asks"]), True
        )

    def _match(self, msg: dict[str, Any]) -> Trade:
        maker = msg["side"]
        if maker != "buy" and maker != "sell":
            raise ValueError(f"bad side {maker!r}")
        return Trade(
            VENUE,
            symbol_text(msg["product_id"]),
            self._clock.ns(msg["time"]),
            positive(msg["price"]),
            positive(msg["size"]),
            "sell" if maker == "buy" else "buy",
            str(venue_id(msg["trade_id"])),
        )

    def _last_match(self, msg: dict[str, Any]) -> Heartbeat:
        return Heartbeat(VENUE, symbol_text(msg["product_id"]), self._clock.ns(msg["time"]), venue_id(msg["trade_id"]))

    def _heartbeat(self, msg: dict[str, Any]) -> Heartbeat:
        return Heartbeat(
            VENUE, symbol_text(msg["product_id"]), self._clock.ns(msg["time"]), venue_id(msg["last_trade_id"])
        )

    def _ticker(self, msg: dict[str, Any]) -> Quote:
        return Quote(
            VENUE,
            symbol_text(msg["product_id"]),
            self._clock.ns(msg["time"]) if "time" in msg else 0,
            positive(msg["best_bid"]),
            non_negative(msg["best_bid_size"]) if "best_bid_size" in msg else math.nan,
            positive(msg["best_ask"]),
            non_negative(msg["best_ask_size"]) if "best_ask_size" in msg else math.nan,
        )

    def _subscriptions(self, msg: dict[str, Any]) -> Subscribed:
        return Subscribed(
            VENUE, {str(c["name"])[:64]: [str(p)[:64] for p in c.get("product_ids", ())] for c in msg["channels"]}
        )

    def _error(self, msg: dict[str, Any]) -> VenueError:
        reason = msg.get("reason")
        text = str(msg.get("message", "error"))[:500]
        return VenueError(VENUE, f"{text}: {str(reason)[:500]}" if reason else text)
