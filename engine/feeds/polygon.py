"""Polygon (now Massive) stocks market data (``wss://socket.polygon.io/stocks``).

The protocol: on connect the server sends ``[{"ev":"status","status":"connected",...}]``;
the client sends ``{"action":"auth","params":KEY}`` and gets ``auth_success`` or
``auth_failed`` (then the server closes); it subscribes with ``{"action":"subscribe",
"params":"T.AAPL,Q.AAPL,AM.AAPL"}`` (``success`` statuses acknowledge). Every frame is a JSON
array of events:

* ``T`` trade: ``sym``, ``x`` exchange, ``i`` trade id (per exchange), ``z`` tape, ``p``
  price, ``s`` size, ``c`` conditions, ``t`` SIP time (ms), ``q`` sequence number;
* ``Q`` quote: ``bx``/``bp``/``bs`` and ``ax``/``ap``/``as``, ``c``, ``i``, ``t``, ``q``, ``z``;
* ``A``/``AM`` second/minute aggregate: ``v``, ``av``, ``op``, ``vw``, ``o``, ``c``, ``h``,
  ``l``, ``a``, ``z``, ``s``/``e`` (start and end, ms);
* ``status``: besides the handshake, ``max_connections``, ``force_disconnect`` and
  ``slow_consumer`` say the server is closing the connection.

Sequence numbers ``q`` increase per symbol but are not gap-free by design: they order trades
and find repeats, never gaps. Trades carry no aggressor side: the quote rule (at or above
the last ask: a buy; at or below the bid: a sell) decides it, the tick rule where there is
no quote. Trades whose conditions say they do not set the last sale price (average-price,
out-of-sequence, prior-reference and official open/close prints, ...) are not market trades
for bars and are dropped as ``not_last_sale``.

The engine's symbols are the tickers themselves (``AAPL``).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from engine.errors import DecodeError, decode_reason
from engine.feeds.decoding import epoch_ms, non_negative, positive, symbol_text, venue_id
from engine.feeds.records import Aggregate, Event, Frame, Quote, Status
from feature_store.records import Trade

__all__ = [
    "DEFAULT_REST_URL",
    "DEFAULT_URL",
    "NOT_LAST_SALE",
    "VENUE",
    "PolygonDecoder",
    "auth_message",
    "subscribe_message",
]

VENUE = "polygon"
DEFAULT_URL = "wss://socket.polygon.io/stocks"
DEFAULT_REST_URL = "https://api.polygon.io"
# Trade conditions (Polygon's unified codes) of prints that do not update the last sale: average
# price (2), cash sale (7), extended hours sold out of sequence (13), official close/open (15,
# 16), next day (20), price variation (21), prior reference price (22), seller (29), sold out of
# sequence (33), corrected consolidated close (38), contingent and qualified contingent (52, 53).
NOT_LAST_SALE = frozenset({2, 7, 13, 15, 16, 20, 21, 22, 29, 33, 38, 52, 53})
TOPICS = ("T", "Q", "AM")
Side = Literal["buy", "sell"]


def auth_message(key: str) -> bytes:
    return orjson.dumps({"action": "auth", "params": key})


def subscribe_message(symbols: list[str], topics: tuple[str, ...] = TOPICS) -> bytes:
    return orjson.dumps({"action": "subscribe", "params": ",".join(f"{t}.{s}" for t in topics for s in symbols)})


class PolygonDecoder:
    """Bytes of one Polygon frame to its records, each event validated on its own."""

    venue = VENUE

    def __init__(self) -> None:
        self._quotes: dict[str, tuple[float, float]] = {}  # last bid and ask per symbol
        self._last_price: dict[str, tuple[float, Side]] = {}  # last price and side per symbol

    def decode(self, payload: bytes | str) -> Frame:
        """The records of one frame, the events dropped (as errors) and the events ignored.

        Raises:
            DecodeError: the frame is not a JSON array (or object) of events.
        """
        try:
            frame = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"polygon: not JSON: {exc}", "not_json") from exc
        if isinstance(frame, dict):
            frame = [frame]
        if not isinstance(frame, list):
            raise DecodeError(f"polygon: a frame must be an array of events, got {type(frame).__name__}", "wrong_type")
        records: list[Trade | Event] = []
        errors: list[DecodeError] = []
        ignored = 0
        for event in frame[:10_000]:
            try:
                record = self._event(event)
            except DecodeError as exc:
                errors.append(exc)
                continue
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
                kind = event.get("ev") if isinstance(event, dict) else type(event).__name__
                errors.append(
                    DecodeError(
                        f"polygon {str(kind)[:20]}: malformed ({exc.__class__.__name__}: {str(exc)[:200]})",
                        decode_reason(exc),
                    )
                )
                continue
            if record is None:
                ignored += 1
            else:
                records.append(record)
        return Frame(records, errors, ignored)

    def _event(self, event: Any) -> Trade | Event | None:
        kind = event["ev"]
        if kind == "T":
            return self._trade(event)
        if kind == "Q":
            return self._quote(event)
        if kind == "AM" or kind == "A":
            return self._aggregate(event)
        if kind == "status":
            return Status(VENUE, str(event["status"])[:64], str(event.get("message", ""))[:500])
        if not isinstance(kind, str):
            raise TypeError(f"ev must be a string, got {type(kind).__name__}")
        return None  # another event type (LULD, imbalances, ...)

    def _trade(self, e: dict[str, Any]) -> Trade:
        symbol = symbol_text(e["sym"])
        price, size = positive(e["p"]), positive(e["s"])
        ts = epoch_ms(e["t"])
        sequence = venue_id(e["q"])
        conditions = e.get("c") or []
        if not isinstance(conditions, list) or not all(type(c) is int for c in conditions):
            raise TypeError(f"conditions must be a list of integers, got {conditions!r}"[:120])
        if NOT_LAST_SALE.intersection(conditions):
            raise DecodeError(
                f"polygon {symbol}: trade with conditions {conditions} sets no last sale", "not_last_sale"
            )
        return Trade(VENUE, symbol, ts, price, size, self._side(symbol, price), str(sequence))

    def _side(self, symbol: str, price: float) -> Side:
        quote = self._quotes.get(symbol)
        last = self._last_price.get(symbol)
        side: Side
        if quote is not None and price >= quote[1]:
            side = "buy"
        elif quote is not None and price <= quote[0]:
            side = "sell"
        elif last is not None and price != last[0]:
            side = "buy" if price > last[0] else "sell"
        else:
            side = last[1] if last is not None else "buy"
        self._last_price[symbol] = (price, side)
        return side

    def _quote(self, e: dict[str, Any]) -> Quote:
        symbol = symbol_text(e["sym"])
        bid, ask = positive(e["bp"]), positive(e["ap"])
        quote = Quote(VENUE, symbol, epoch_ms(e["t"]), bid, non_negative(e["bs"]), ask, non_negative(e["as"]))
        if bid < ask:
            self._quotes[symbol] = (bid, ask)
        return quote

    def _aggregate(self, e: dict[str, Any]) -> Aggregate:
        start, end = epoch_ms(e["s"]), epoch_ms(e["e"])
        if end <= start:
            raise ValueError(f"aggregate ends ({end}) before it starts ({start})")
        o, h, low, c = positive(e["o"]), positive(e["h"]), positive(e["l"]), positive(e["c"])
        if not (low <= min(o, c) and h >= max(o, c)):
            raise ValueError(f"aggregate OHLC inconsistent: {o} {h} {low} {c}")
        volume = non_negative(e["v"])
        vwap = positive(e["vw"]) if "vw" in e else (h + low + c) / 3
        return Aggregate(VENUE, symbol_text(e["sym"]), start, end, o, h, low, c, volume, vwap)
