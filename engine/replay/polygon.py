"""The replay exchange's Polygon (Massive) stocks protocol, from the synthetic market.

WebSocket ``/stocks`` (also ``/delayed/stocks``): ``connected`` on open; ``auth`` with the
exchange's test key gets ``auth_success`` (any other key ``auth_failed``, then a close);
beyond ``max_connections`` authenticated connections per key a new one gets the
``max_connections`` status and is closed; ``subscribe``/``unsubscribe`` of ``T.``, ``Q.``,
``A.``, ``AM.`` topics (a ticker or ``*``) are acknowledged with ``success`` statuses. Each
synthetic trade is sent as a ``T`` event (sequence numbers increasing per ticker, not
gap-free) and a ``Q`` quote around it; ``A`` and ``AM`` aggregates follow each second and
minute. With a session calendar, nothing is sent while the market is closed.

REST ``GET /v2/aggs/ticker/<T>/range/<multiplier>/<timespan>/<from>/<to>`` answers bar
history (``results`` with ``v vw o c h l t n``; at most ``limit``, 50,000, a page, with a
``next_url`` when more remain); a wrong ``apiKey`` gets 401.

Tickers are the synthetic symbols' base names (``ARC-USD`` trades as ``ARC``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from engine.replay.market import MarketEvent
from feature_store.records import NS_PER_S, Bar

__all__ = [
    "TIMESPANS",
    "aggregate_event",
    "aggs_body",
    "parse_range",
    "polygon_request",
    "quote_event",
    "ticker",
    "trade_event",
]

TIMESPANS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
AGGS_LIMIT = 50_000


def ticker(symbol: str) -> str:
    """The stock ticker a synthetic symbol trades as."""
    return symbol.split("-", 1)[0]


def status(kind: str, message: str) -> bytes:
    return orjson.dumps([{"ev": "status", "status": kind, "message": message}])


def trade_event(event: MarketEvent, stamp: int) -> dict[str, Any]:
    return {
        "ev": "T", "sym": ticker(event.symbol), "x": 4 + event.trade_id % 8, "i": str(event.trade_id), "z": 3,
        "p": round(event.price, 4), "s": max(1, round(event.size)), "c": [37] if event.size < 100 else [],
        "t": stamp // 1_000_000, "q": event.trade_id * 3 + event.trade_id % 2,
    }  # fmt: skip


def quote_event(event: MarketEvent, stamp: int) -> dict[str, Any]:
    tick = max(0.01, round(event.price * 1e-4, 2))
    return {
        "ev": "Q", "sym": ticker(event.symbol), "bx": 4, "bp": round(event.price - tick, 4), "bs": 300, "ax": 7,
        "ap": round(event.price + tick, 4), "as": 200, "c": 1, "i": [], "t": stamp // 1_000_000,
        "q": event.trade_id * 3 + 2, "z": 3,
    }  # fmt: skip


def aggregate_event(kind: str, bar: Bar, accumulated: float) -> dict[str, Any]:
    ms = bar.start_ns // 1_000_000
    return {
        "ev": kind, "sym": ticker(bar.symbol), "v": round(bar.volume), "av": round(accumulated), "op": bar.open,
        "vw": bar.vwap, "o": bar.open, "c": bar.close, "h": bar.high, "l": bar.low, "a": bar.vwap,
        "z": round(bar.volume / max(bar.trades, 1)), "s": ms, "e": ms + bar.interval_s * 1000,
    }  # fmt: skip


def polygon_request(message: str | bytes, key: str, authenticated: bool) -> tuple[str, list[str], list[bytes]]:
    """What one client message asks: ``(action, topics, replies)``; action is ``auth_ok``,
    ``auth_failed``, ``subscribe``, ``unsubscribe`` or ``error``."""
    try:
        request = orjson.loads(message)
        action, params = request["action"], request.get("params", "")
        if not isinstance(action, str) or not isinstance(params, str):
            raise TypeError("action and params must be strings")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return "error", [], [status("error", f"invalid message: {exc}")]
    if action == "auth":
        if params == key:
            return "auth_ok", [], [status("auth_success", "authenticated")]
        return "auth_failed", [], [status("auth_failed", "authentication failed")]
    if not authenticated:
        return "error", [], [status("error", "you must authenticate first")]
    if action in ("subscribe", "unsubscribe"):
        topics = [t.strip() for t in params.split(",") if t.strip()]
        verb = "subscribed to" if action == "subscribe" else "unsubscribed to"
        return action, topics, [status("success", f"{verb}: {t}") for t in topics]
    return "error", [], [status("error", f"unknown action {action!r}")]


def aggs_body(
    symbol_bars: list[Bar],
    name: str,
    multiplier: int,
    timespan: str,
    start_ns: int,
    end_ns: int,
    query: dict[str, list[str]],
    base_url: str,
) -> dict[str, Any]:
    """The aggregates endpoint's answer for ``symbol_bars`` (already of the asked length)."""
    limit = min(int((query.get("limit") or ["5000"])[0]), AGGS_LIMIT)
    descending = (query.get("sort") or ["asc"])[0] == "desc"
    bars = [b for b in symbol_bars if start_ns <= b.start_ns <= end_ns]
    if descending:
        bars.reverse()
    page, rest = bars[:limit], bars[limit:]
    body: dict[str, Any] = {
        "ticker": name, "queryCount": len(page), "resultsCount": len(page), "adjusted": True, "status": "OK",
        "request_id": f"replay-{start_ns}", "count": len(page),
        "results": [{"v": b.volume, "vw": b.vwap, "o": b.open, "c": b.close, "h": b.high, "l": b.low,
                     "t": b.start_ns // 1_000_000, "n": b.trades} for b in page],
    }  # fmt: skip
    if rest:
        nxt = rest[0].start_ns // 1_000_000
        lo, hi = (nxt, end_ns // 1_000_000) if not descending else (start_ns // 1_000_000, nxt)
        params = {k: v[0] for k, v in query.items()}
        body["next_url"] = (
            f"{base_url}/v2/aggs/ticker/{name}/range/{multiplier}/{timespan}/{lo}/{hi}?{urlencode(params)}"
        )
    return body


def parse_range(path: str) -> tuple[str, int, str, int, int] | None:
    """``/v2/aggs/ticker/T/range/1/minute/FROM/TO`` to (ticker, multiplier, timespan, from ns, to ns)."""
    parts = path.strip("/").split("/")
    if len(parts) != 9 or parts[:3] != ["v2", "aggs", "ticker"] or parts[4] != "range":
        return None
    try:
        multiplier = int(parts[5])
        lo, hi = (_bound(p) for p in parts[7:9])
    except ValueError:
        return None
    if "-" in parts[8]:
        hi += 86400 * NS_PER_S - 1  # a date "to" includes that day
    return parts[3], multiplier, parts[6], lo, hi


def _bound(text: str) -> int:
    if "-" in text:
        from datetime import UTC, datetime

        return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()) * NS_PER_S
    return int(text) * 1_000_000
