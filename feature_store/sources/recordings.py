"""Read exchange WebSocket recordings (the cryptofeed capture format) into trades.

Line format: ``URL <-> TIME`` (connection opened), ``URL <- TIME: PAYLOAD`` (sent by the
client), ``TIME: PAYLOAD`` (received; TIME is the local receive time in epoch seconds).

Trades come from Coinbase Exchange ``match`` messages (``side`` there is the maker's side,
so the taker side is the opposite; ``last_match``, the trade printed before the
subscription, is skipped because it predates the stream) and from Binance spot ``aggTrade``
and ``trade`` events (``m`` true means the buyer was the maker, so the taker sold), in the
combined-stream envelope ``{"stream": ..., "data": {...}}`` or bare.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from feature_store.records import NS_PER_S, Trade

__all__ = ["RecordedMessage", "RecordingReport", "iter_messages", "parse_trade", "read_recording_trades"]


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """One message received on the recorded connection."""

    url: str
    received_ns: int
    payload: bytes


@dataclass
class RecordingReport:
    """What reading a recording produced."""

    trades: list[Trade] = field(default_factory=list)
    messages: int = 0
    malformed: int = 0
    skipped: int = 0


def iter_messages(path: str | Path) -> Iterator[RecordedMessage]:
    """Yield the received messages of a recording, in order (sent lines are skipped)."""
    url = ""
    with Path(path).open("rb") as handle:
        for raw in handle:
            line = raw.rstrip(b"\r\n")
            if b" <-> " in line[:400]:
                url = line.split(b" <-> ", 1)[0].decode()
                continue
            if b" <- " in line[:400] or b" -> " in line[:400]:
                continue
            stamp, sep, payload = line.partition(b": ")
            if not sep:
                continue
            try:
                received = float(stamp)
            except ValueError:
                continue
            yield RecordedMessage(url, round(received * NS_PER_S), payload)


def parse_trade(message: Any) -> Trade | None:
    """Normalize one decoded venue message into a :class:`Trade`, or ``None`` if not a trade.

    Raises:
        KeyError, ValueError, TypeError: a trade message with missing or malformed fields.
    """
    if not isinstance(message, dict):
        return None
    if "stream" in message and isinstance(message.get("data"), dict):
        message = message["data"]
    kind = message.get("type") or message.get("e")
    if kind == "match":
        maker = message["side"]
        if maker not in ("buy", "sell"):
            raise ValueError(f"side {maker!r}")
        return Trade(
            venue="coinbase",
            symbol=str(message["product_id"]),
            ts_ns=_iso_ns(str(message["time"])),
            price=_positive(message["price"]),
            size=_positive(message["size"]),
            side="sell" if maker == "buy" else "buy",
            trade_id=str(message["trade_id"]),
        )
    if kind in ("aggTrade", "trade"):
        return Trade(
            venue="binance",
            symbol=str(message["s"]),
            ts_ns=int(message["T"]) * 1_000_000,
            price=_positive(message["p"]),
            size=_positive(message["q"]),
            side="sell" if bool(message["m"]) else "buy",
            trade_id=str(message["a"] if kind == "aggTrade" else message["t"]),
        )
    return None


def read_recording_trades(path: str | Path) -> RecordingReport:
    """All trades in a recording; malformed trade messages are counted and dropped."""
    report = RecordingReport()
    for msg in iter_messages(path):
        report.messages += 1
        try:
            decoded = orjson.loads(msg.payload)
            trade = parse_trade(decoded)
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
            report.malformed += 1
            continue
        if trade is None:
            report.skipped += 1
        else:
            report.trades.append(trade)
    return report


def _positive(text: Any) -> float:
    value = float(text)
    if not (value > 0 and value != float("inf")):
        raise ValueError(f"expected a positive finite number, got {text!r}")
    return value


def _iso_ns(text: str) -> int:
    # datetime keeps microseconds; venues print at most that, so this is exact.
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    seconds = calendar.timegm(stamp.utctimetuple())
    return seconds * NS_PER_S + stamp.microsecond * 1000
