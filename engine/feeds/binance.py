"""Binance spot market data, combined streams (``wss://stream.binance.com:9443/stream``).

Streams per symbol: ``<sym>@aggTrade`` or ``<sym>@trade`` (``m`` true means the buyer was
the maker, so the taker sold), ``<sym>@bookTicker`` and ``<sym>@depth@100ms`` (diffs with
first and last update ids ``U``/``u``), kept in sync with the REST snapshot
``GET /api/v3/depth`` as Binance documents: drop diffs with ``u <= lastUpdateId``, the first
diff applied must cover ``lastUpdateId + 1``, and each next one must start at the previous
``u + 1``; anything else is a gap and the book is fetched again. ``kline`` streams are
ignored. Messages may come in the ``{"stream", "data"}`` envelope or bare.

Binance writes symbols without a separator (``NKNUSDT``); the engine's symbols are
``BASE-QUOTE`` (``NKN-USDT``). :func:`venue_symbol` maps one way and the decoder the other.
"""

from __future__ import annotations

from typing import Any

import orjson

from engine.errors import DecodeError, decode_reason
from engine.feeds.decoding import (
    MAX_ID,
    MAX_TS_NS,
    MIN_TS_NS,
    NumberCache,
    epoch_ms,
    level_list,
    non_negative,
    positive,
    symbol_text,
    venue_id,
)
from engine.feeds.records import BookUpdate, Event, Quote, Subscribed, VenueError
from feature_store.records import Trade

__all__ = ["VENUE", "BinanceDecoder", "parse_depth_snapshot", "stream_path", "venue_symbol"]

VENUE = "binance"
DEFAULT_URL = "wss://stream.binance.com:9443"
DEFAULT_REST_URL = "https://api.binance.com"
STREAMS = ("aggTrade", "bookTicker", "depth@100ms")
MAX_DIFF_SPAN = 1_000_000  # update ids one depth diff may cover (real ones cover hundreds)
_MIN_MS, _MAX_MS = MIN_TS_NS // 1_000_000, MAX_TS_NS // 1_000_000


def venue_symbol(symbol: str) -> str:
    """``NKN-USDT`` to Binance's ``NKNUSDT``."""
    return symbol.replace("-", "").replace("/", "").upper()


def stream_path(symbols: list[str], streams: tuple[str, ...] = STREAMS) -> str:
    """The combined-stream path for ``symbols``: ``/stream?streams=a@aggTrade/...``."""
    names = [f"{venue_symbol(s).lower()}@{stream}" for stream in streams for s in symbols]
    return "/stream?streams=" + "/".join(names)


class BinanceDecoder:
    """Bytes of one Binance message to a normalized record, or None for an ignored type.

    Args:
        symbols: the engine's symbols, to map Binance's names back (others pass unchanged).

    Raises:
        DecodeError: bad JSON, or a known message type with a missing or malformed field.
    """

    venue = VENUE

    def __init__(self, symbols: list[str] | None = None) -> None:
        self._names = {venue_symbol(s): s for s in symbols or ()}
        self._numbers = NumberCache()

    def symbol(self, raw: object) -> str:
        """The engine's name of Binance's symbol ``raw``."""
        name = self._names.get(raw) if type(raw) is str else None
        return name if name is not None else symbol_text(raw)

    def decode(self, payload: bytes | str) -> Trade | Event | None:
        try:
            msg = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"binance: not JSON: {exc}", "not_json") from exc
        try:
            data = msg.get("data")
            if data is None:
                data = msg
            kind = data.get("e")
            if kind == "depthUpdate":
                first, last, ms, name = data["U"], data["u"], data["E"], data["s"]
                # The checks of venue_id, epoch_ms and symbol, inline for the common case.
                if type(first) is not int or type(last) is not int:
                    first, last = venue_id(first), venue_id(last)
                if not 0 <= first <= last <= first + MAX_DIFF_SPAN or last > MAX_ID:
                    raise ValueError(f"depth update ids U={first} u={last} are not a plausible range")
                if type(ms) is not int or not _MIN_MS <= ms < _MAX_MS:
                    epoch_ms(ms)  # raises, naming what is wrong
                symbol = self._names.get(name) if type(name) is str else None
                return BookUpdate(
                    VENUE,
                    symbol if symbol is not None else self.symbol(name),
                    ms * 1_000_000,
                    self._numbers.levels(data["b"]),
                    self._numbers.levels(data["a"]),
                    False,
                    first,
                    last,
                )
            if kind == "aggTrade" or kind == "trade":
                maker = data["m"]
                if type(maker) is not bool:
                    raise TypeError(f"m must be true or false, got {maker!r}")
                ms, name, number = data["T"], data["s"], data["a"] if kind == "aggTrade" else data["t"]
                if type(ms) is not int or not _MIN_MS <= ms < _MAX_MS:
                    epoch_ms(ms)  # raises, naming what is wrong
                if type(number) is not int or not 0 <= number <= MAX_ID:
                    number = venue_id(number)
                symbol = self._names.get(name) if type(name) is str else None
                return Trade(
                    VENUE,
                    symbol if symbol is not None else self.symbol(name),
                    ms * 1_000_000,
                    positive(data["p"]),
                    positive(data["q"]),
                    "sell" if maker else "buy",
                    str(number),
                )
            if kind is None:
                return self._other(data)
            return None  # kline and any other event type
        except DecodeError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise DecodeError(
                f"binance: malformed message ({exc.__class__.__name__}: {str(exc)[:200]})", decode_reason(exc)
            ) from exc

    def _other(self, data: dict[str, Any]) -> Event | None:
        if "b" in data and "a" in data and "s" in data:  # bookTicker has no event type
            return Quote(
                VENUE,
                self.symbol(data["s"]),
                0,
                positive(data["b"]),
                non_negative(data["B"]),
                positive(data["a"]),
                non_negative(data["A"]),
            )
        if "result" in data and "id" in data:
            return Subscribed(VENUE, {"id": [str(data["id"])[:64]]})
        if "code" in data or "error" in data:
            err = data.get("error", data)
            return VenueError(VENUE, f"{str(err.get('code'))[:64]}: {str(err.get('msg'))[:500]}")
        return None


def parse_depth_snapshot(symbol: str, body: bytes | str) -> BookUpdate:
    """A REST ``/api/v3/depth`` body as a snapshot of ``symbol``'s book.

    Raises:
        DecodeError: the body is not a depth snapshot.
    """
    try:
        data = orjson.loads(body)
        return BookUpdate(
            VENUE,
            symbol,
            0,
            level_list(data["bids"]),
            level_list(data["asks"]),
            True,
            0,
            venue_id(data["lastUpdateId"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise DecodeError(f"binance depth snapshot of {symbol}: malformed ({exc})") from exc
