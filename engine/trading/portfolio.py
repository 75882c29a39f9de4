"""Positions, cash and PnL in exact decimals, rebuilt from fills alone.

Cash starts at the account's initial cash; each fill moves cash by its notional and fee.
Realized PnL is booked against the average entry price when a position is reduced, closed or
flipped. Equity is cash plus every position at its mark (the last bar close).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from engine.trading.orders import Fill, money

__all__ = ["Portfolio", "Position"]

ZERO = Decimal(0)


@dataclass(slots=True)
class Position:
    """One symbol's position: signed quantity, average entry price and realized PnL (net of fees)."""

    symbol: str
    quantity: Decimal = ZERO
    average_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    updated_ns: int = 0

    def apply(self, fill: Fill) -> None:
        qty = fill.signed_quantity
        old = self.quantity
        new = old + qty
        if old == 0 or (old > 0) == (qty > 0):  # opening or adding
            self.average_price = money((self.average_price * abs(old) + fill.price * abs(qty)) / abs(new))
        else:  # reducing, closing or flipping
            closed = min(abs(qty), abs(old))
            sign = 1 if old > 0 else -1
            self.realized_pnl += money((fill.price - self.average_price) * closed * sign)
            if new == 0:
                self.average_price = ZERO
            elif (new > 0) != (old > 0):  # flipped: the rest opens at the fill price
                self.average_price = fill.price
        self.realized_pnl -= fill.fee
        self.fees += fill.fee
        self.quantity = new
        self.updated_ns = fill.ts_ns


class Portfolio:
    """Cash, positions and marks of one account.

    Args:
        initial_cash: the account's starting cash.
    """

    def __init__(self, initial_cash: Decimal) -> None:
        self.initial_cash = initial_cash
        self.cash = initial_cash
        self.positions: dict[str, Position] = {}
        self.marks: dict[str, Decimal] = {}
        self.fills = 0
        self.peak_equity = initial_cash

    def apply(self, fill: Fill) -> Position:
        position = self.positions.get(fill.symbol)
        if position is None:
            position = self.positions[fill.symbol] = Position(fill.symbol)
        position.apply(fill)
        self.cash -= money(fill.signed_quantity * fill.price) + fill.fee
        self.fills += 1
        return position

    def apply_all(self, fills: Iterable[Fill]) -> None:
        for fill in fills:
            self.apply(fill)

    def quantity(self, symbol: str) -> Decimal:
        position = self.positions.get(symbol)
        return position.quantity if position is not None else ZERO

    def mark(self, symbol: str, price: Decimal) -> None:
        self.marks[symbol] = price

    def _mark_of(self, position: Position) -> Decimal:
        return self.marks.get(position.symbol, position.average_price)

    def notional(self, symbol: str) -> Decimal:
        position = self.positions.get(symbol)
        if position is None or position.quantity == 0:
            return ZERO
        return abs(position.quantity) * self._mark_of(position)

    def gross_notional(self) -> Decimal:
        return sum((abs(p.quantity) * self._mark_of(p) for p in self.positions.values() if p.quantity), ZERO)

    def equity(self) -> Decimal:
        return self.cash + sum((p.quantity * self._mark_of(p) for p in self.positions.values() if p.quantity), ZERO)

    def pnl(self) -> Decimal:
        """Total PnL: equity against the initial cash (realized, unrealized, net of fees)."""
        return self.equity() - self.initial_cash

    def realized_pnl(self) -> Decimal:
        return sum((p.realized_pnl for p in self.positions.values()), ZERO)

    def update_peak(self) -> Decimal:
        """Record the equity peak; return the drawdown from it (a fraction, >= 0)."""
        equity = self.equity()
        if equity > self.peak_equity:
            self.peak_equity = equity
        if self.peak_equity <= 0:
            return Decimal(1)
        return max(ZERO, (self.peak_equity - equity) / self.peak_equity)

    def open_positions(self) -> dict[str, Decimal]:
        return {s: p.quantity for s, p in sorted(self.positions.items()) if p.quantity}
