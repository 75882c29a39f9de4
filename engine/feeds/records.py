"""What the feed decoders produce, besides :class:`feature_store.records.Trade`.

These records live only inside the engine (they are never stored as such), so they are
plain slotted dataclasses: a frozen dataclass costs four times as much to build, and book
messages are most of what a venue sends.

Times are UTC epoch nanoseconds; ``ts_ns == 0`` means the venue did not send a time (a
Binance ``bookTicker``, a Coinbase ``snapshot``) and the feed client stamps the local
receive time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import DecodeError

__all__ = ["Aggregate", "BookUpdate", "Event", "Frame", "Heartbeat", "Quote", "Status", "Subscribed", "VenueError"]

Level = tuple[float, float]


@dataclass(slots=True)
class BookUpdate:
    """Changes to one symbol's L2 book, or a whole snapshot.

    Attributes:
        bids, asks: ``(price, size)`` pairs; size 0 removes the level.
        snapshot: True when this replaces the whole book.
        first_id, last_id: the venue's update ids covered (Binance ``U``/``u``, or
            ``lastUpdateId`` for a REST snapshot); 0 where the venue has none (Coinbase).
    """

    venue: str
    symbol: str
    ts_ns: int
    bids: list[Level]
    asks: list[Level]
    snapshot: bool = False
    first_id: int = 0
    last_id: int = 0


@dataclass(slots=True)
class Quote:
    """Best bid and offer as the venue reports it (``ticker``, ``bookTicker``)."""

    venue: str
    symbol: str
    ts_ns: int
    bid: float
    bid_size: float
    ask: float
    ask_size: float


@dataclass(slots=True)
class Heartbeat:
    """A sign of life for one symbol; ``last_trade_id`` lets a quiet market's gaps show."""

    venue: str
    symbol: str
    ts_ns: int
    last_trade_id: int


@dataclass(slots=True)
class Subscribed:
    """The venue acknowledged a subscription: channel name to symbols."""

    venue: str
    channels: dict[str, list[str]] = field(default_factory=dict)


@dataclass(slots=True)
class VenueError:
    """The venue sent an error message."""

    venue: str
    message: str


@dataclass(slots=True)
class Status:
    """A venue's status message about the connection (Polygon: ``connected``, ``auth_success``,
    ``auth_failed``, ``success``, ``max_connections``, ``force_disconnect``, ``slow_consumer``...)."""

    venue: str
    status: str
    message: str


@dataclass(slots=True)
class Aggregate:
    """A venue's own bar of one symbol over ``[start_ns, end_ns)`` (Polygon ``A``/``AM``)."""

    venue: str
    symbol: str
    start_ns: int
    end_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float

    @property
    def ts_ns(self) -> int:
        return self.end_ns


@dataclass(slots=True)
class Frame:
    """One message holding many events (Polygon): their records, the events that failed to
    decode, and how many were of types the engine does not use."""

    records: list[Any]
    errors: list[DecodeError]
    ignored: int = 0


# A decoder returns one of these, a Trade, or None for a message it ignores.
Event = BookUpdate | Quote | Heartbeat | Subscribed | VenueError | Status | Aggregate | Frame
