"""Orders and fills, with exact decimal quantities and prices.

A client order id is derived from what caused the order (account, symbol, bar, purpose), so
the same decision always produces the same id: a restart that recomputes a decision finds
the order already stored and never sends it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

__all__ = [
    "OPEN_STATUSES",
    "Fill",
    "Order",
    "OrderSide",
    "OrderStatus",
    "money",
    "order_id",
    "price_of",
    "quantity",
]

OrderSide = Literal["buy", "sell"]
OrderStatus = Literal["new", "sent", "partially_filled", "filled", "cancelled", "rejected"]
OPEN_STATUSES: frozenset[str] = frozenset({"new", "sent", "partially_filled"})

QUANTUM = Decimal("1e-8")
_PRICE_CACHE: dict[float, Decimal] = {}


def quantity(value: Decimal) -> Decimal:
    """``value`` rounded to the lot quantum (1e-8), half-even."""
    return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def money(value: Decimal) -> Decimal:
    """``value`` rounded to 1e-8 of the quote currency, half-even."""
    return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def price_of(value: float) -> Decimal:
    """The exact decimal a venue printed for ``value`` (its shortest repr), cached."""
    out = _PRICE_CACHE.get(value)
    if out is None:
        if len(_PRICE_CACHE) > 1_000_000:
            _PRICE_CACHE.clear()
        out = _PRICE_CACHE[value] = Decimal(repr(value))
    return out


def order_id(account: str, symbol: str, bar_ns: int, purpose: str = "t") -> str:
    """The idempotent client order id of ``account``'s order for ``symbol`` at bar ``bar_ns``.

    ``purpose`` tells orders of the same bar apart (``t``: towards the target, ``x``: the
    kill switch flattening).
    """
    return f"{account}-{symbol}-{bar_ns}-{purpose}"


@dataclass(slots=True)
class Order:
    """An order as the engine keeps it (and stores it before sending it).

    Attributes:
        eligible_ns: venue time from which it may fill (the decision's time), so that live
            and backtest fill it against the same trades.
        expires_ns: venue time at which what is left of it is cancelled.
    """

    client_order_id: str
    account: str
    venue: str
    symbol: str
    side: OrderSide
    quantity: Decimal
    order_type: Literal["market", "limit"] = "market"
    limit_price: Decimal | None = None
    status: OrderStatus = "new"
    decision_id: str | None = None
    created_ns: int = 0
    updated_ns: int = 0
    eligible_ns: int = 0
    expires_ns: int = 0
    filled_quantity: Decimal = Decimal(0)
    sends: int = 0
    reason: str = ""

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def signed_remaining(self) -> Decimal:
        return self.remaining if self.side == "buy" else -self.remaining


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of an order. ``fill_id`` is the trade it matched, so it is idempotent."""

    client_order_id: str
    fill_id: str
    ts_ns: int
    symbol: str
    side: OrderSide
    quantity: Decimal
    price: Decimal
    fee: Decimal
    liquidity: Literal["maker", "taker"]

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity if self.side == "buy" else -self.quantity
