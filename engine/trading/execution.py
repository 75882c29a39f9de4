"""The execution-client interface and the paper broker that implements it.

A live venue adapter implements :class:`ExecutionClient` the same way: ``submit`` sends an
order (its client order id is the idempotency key the venue deduplicates on), ``cancel``
cancels what is left of it, and fills come back through ``on_trade`` (for a venue adapter:
its private fill stream). The paper broker fills orders against the public trade stream:

* an order may fill from its ``eligible_ns`` (the decision's venue time) on;
* a market order takes each later trade of its symbol, up to ``participation`` of the
  trade's size, at the trade's price moved against it by ``slippage_bps``, paying the taker
  fee; a limit order fills at its limit when a trade prints at or through it (maker fee);
* what is left at ``expires_ns`` is cancelled.

Everything is a function of the trade stream, so the same trades give the same fills live
and in a backtest.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

from engine.trading.orders import Fill, Order, money, price_of, quantity
from feature_store.records import Trade

__all__ = ["ExecutionClient", "PaperBroker", "PaperCosts"]

BPS = Decimal("0.0001")


class ExecutionClient(Protocol):
    """What the trader needs from a venue (paper or live)."""

    def submit(self, order: Order) -> None:
        """Send ``order`` (already stored). Sending the same client order id twice is a no-op."""

    def cancel(self, client_order_id: str, ts_ns: int) -> Order | None:
        """Cancel what is left of an open order; return it, or None if it is not open."""

    def restore(self, order: Order) -> None:
        """Take back an open order found in the database after a restart (not sent again)."""

    def on_trade(self, trade: Trade) -> list[Fill]:
        """The fills this market trade caused."""

    def expire(self, now_ns: int) -> list[Order]:
        """Cancel open orders whose time is up; return them."""

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Open orders, of ``symbol`` or all."""


@dataclass(frozen=True, slots=True)
class PaperCosts:
    """Paper trading costs: taker and maker fees and slippage in basis points, participation cap."""

    taker_fee_bps: Decimal = Decimal(5)
    maker_fee_bps: Decimal = Decimal(1)
    slippage_bps: Decimal = Decimal(2)
    participation: Decimal = Decimal("0.5")

    def __post_init__(self) -> None:
        for name in ("taker_fee_bps", "maker_fee_bps", "slippage_bps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.participation <= 1:
            raise ValueError(f"participation must be in (0, 1], got {self.participation}")


class PaperBroker:
    """Fills orders against the live trade stream (see the module docstring)."""

    def __init__(self, costs: PaperCosts | None = None) -> None:
        self.costs = costs or PaperCosts()
        self._open: dict[str, dict[str, Order]] = {}  # symbol -> client order id -> order
        self._known: set[str] = set()
        self.duplicate_sends = 0

    def submit(self, order: Order) -> None:
        if order.client_order_id in self._known:
            self.duplicate_sends += 1
            return
        self._known.add(order.client_order_id)
        order.status = "sent" if order.filled_quantity == 0 else "partially_filled"
        order.sends += 1
        self._open.setdefault(order.symbol, {})[order.client_order_id] = order

    def restore(self, order: Order) -> None:
        self._known.add(order.client_order_id)
        if order.is_open:
            self._open.setdefault(order.symbol, {})[order.client_order_id] = order

    def cancel(self, client_order_id: str, ts_ns: int) -> Order | None:
        for orders in self._open.values():
            order = orders.pop(client_order_id, None)
            if order is not None:
                order.status = "cancelled"
                order.updated_ns = ts_ns
                return order
        return None

    def expire(self, now_ns: int) -> list[Order]:
        out = []
        for orders in self._open.values():
            for order in [o for o in orders.values() if o.expires_ns and o.expires_ns <= now_ns]:
                del orders[order.client_order_id]
                order.status = "cancelled"
                order.updated_ns = order.expires_ns
                order.reason = "expired"
                out.append(order)
        return out

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        if symbol is not None:
            return list(self._open.get(symbol, {}).values())
        return [o for orders in self._open.values() for o in orders.values()]

    def on_trade(self, trade: Trade) -> list[Fill]:
        orders = self._open.get(trade.symbol)
        if not orders:
            return []
        fills = []
        for order in list(orders.values()):
            if trade.ts_ns < order.eligible_ns:
                continue
            if order.expires_ns and trade.ts_ns >= order.expires_ns:
                continue  # expire() cancels it at its time
            fill = self._match(order, trade)
            if fill is None:
                continue
            fills.append(fill)
            order.filled_quantity += fill.quantity
            order.updated_ns = trade.ts_ns
            if order.remaining <= 0:
                order.status = "filled"
                del orders[order.client_order_id]
            else:
                order.status = "partially_filled"
        return fills

    def _match(self, order: Order, trade: Trade) -> Fill | None:
        costs = self.costs
        price = price_of(trade.price)
        if order.order_type == "limit":
            assert order.limit_price is not None
            through = price <= order.limit_price if order.side == "buy" else price >= order.limit_price
            if not through:
                return None
            liquidity: Literal["maker", "taker"] = "maker"
            fill_price, fee_bps = order.limit_price, costs.maker_fee_bps
        else:
            slip = price * costs.slippage_bps * BPS
            fill_price = money(price + slip if order.side == "buy" else price - slip)
            fee_bps, liquidity = costs.taker_fee_bps, "taker"
        qty = min(order.remaining, quantity(price_of(trade.size) * costs.participation))
        if qty <= 0:
            return None
        return Fill(
            client_order_id=order.client_order_id,
            fill_id=f"{trade.venue}:{trade.trade_id}",
            ts_ns=trade.ts_ns,
            symbol=order.symbol,
            side=order.side,
            quantity=qty,
            price=fill_price,
            fee=money(qty * fill_price * fee_bps * BPS),
            liquidity=liquidity,
        )
