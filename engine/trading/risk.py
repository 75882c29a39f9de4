"""Pre-trade risk checks: plain synchronous code, no I/O.

An order that only reduces a position (towards flat, never past it) always passes: the
checks exist to stop new risk, and the kill switch must be able to flatten. An order that
adds risk is checked in this order, and the first failing check denies it:

``kill_switch``   the drawdown kill switch has tripped (it flattens and stays tripped).
``write_backlog`` the trading records cannot be written (PostgreSQL away for too long).
``stale_model``   the model service is unavailable (circuit breaker open) or the forecast
                  is not for the bar being decided.
``stale_data``    the symbol's last trade is older than ``max_data_age_s``.
``price_band``    the order's reference price is too far from the last trade.
``order_rate``    more than ``max_orders_per_s`` orders in the last second.
``max_position``  the position after the order would exceed the per-symbol quantity or
                  notional limit.
``max_gross``     the total notional after the order would exceed the limit.
``var_limit``     the portfolio's VaR(99%) from the risk model is above its limit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal

from engine.trading.orders import Order
from engine.trading.portfolio import Portfolio
from feature_store.records import NS_PER_S

__all__ = ["PreTradeRisk", "RiskEvent", "RiskLimits", "reduces"]


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """The limits the checks enforce (every field has a safe default)."""

    max_position_notional: Decimal = Decimal(20_000)
    max_position_quantity: Decimal | None = None
    max_gross_notional: Decimal = Decimal(500_000)
    max_orders_per_s: int = 2_000
    price_band: Decimal = Decimal("0.05")
    max_var_fraction: Decimal = Decimal("0.05")
    max_data_age_s: float = 30.0
    max_drawdown: Decimal = Decimal("0.10")

    def __post_init__(self) -> None:
        for name in ("max_position_notional", "max_gross_notional", "price_band", "max_var_fraction", "max_drawdown"):
            if getattr(self, name) <= 0:
                raise ValueError(f"risk limit {name} must be > 0, got {getattr(self, name)}")
        if self.max_orders_per_s <= 0 or self.max_data_age_s <= 0:
            raise ValueError("risk limits max_orders_per_s and max_data_age_s must be > 0")


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """A refused order (``kind`` is the check that refused it), or a change of the risk state
    (``kill_switch_tripped``, ``breaker_open``, ``breaker_closed``, ``model_unavailable``:
    then ``client_order_id`` is empty and ``symbol`` is ``*``)."""

    client_order_id: str
    symbol: str
    ts_ns: int
    kind: str
    reason: str


def reduces(position: Decimal, order: Order) -> bool:
    """True if ``order`` only moves ``position`` towards zero (never past it)."""
    if position == 0:
        return False
    signed = order.quantity if order.side == "buy" else -order.quantity
    after = position + signed
    return abs(after) < abs(position) and (after == 0 or (after > 0) == (position > 0))


class PreTradeRisk:
    """The pre-trade checks and the state they keep (order times, kill switch, VaR)."""

    def __init__(self, limits: RiskLimits | None = None) -> None:
        self.limits = limits or RiskLimits()
        self.killed: str | None = None
        self.killed_ns = 0
        self.var99: Decimal | None = None
        self.model_problem: str | None = None
        self.write_backlog = False
        self._sent: deque[int] = deque()

    def trip(self, reason: str, ts_ns: int) -> bool:
        """Trip the kill switch; True if it was not tripped already."""
        if self.killed is not None:
            return False
        self.killed, self.killed_ns = reason, ts_ns
        return True

    def drawdown_breached(self, drawdown: Decimal) -> bool:
        return drawdown >= self.limits.max_drawdown

    def note_sent(self, ts_ns: int) -> None:
        self._sent.append(ts_ns)

    def check(
        self,
        order: Order,
        reference: Decimal,
        portfolio: Portfolio,
        last_trade: tuple[Decimal, int] | None,
        now_ns: int,
        *,
        totals: tuple[Decimal, Decimal] | None = None,
    ) -> RiskEvent | None:
        """Check ``order`` (priced at ``reference``) before it is stored and sent.

        ``totals``: the portfolio's gross notional and equity when the caller checks many orders
        against one unchanged portfolio (computed here otherwise: each sums every position)."""
        position = portfolio.quantity(order.symbol)
        if reduces(position, order):
            return None
        limits = self.limits

        def deny(check: str, reason: str) -> RiskEvent:
            return RiskEvent(order.client_order_id, order.symbol, now_ns, check, reason)

        if self.killed is not None:
            return deny("kill_switch", f"the kill switch is tripped ({self.killed}); no new risk")
        if self.write_backlog:
            return deny("write_backlog", "trading records cannot be written to PostgreSQL; no new risk")
        if self.model_problem is not None:
            return deny("stale_model", self.model_problem)
        if last_trade is None:
            return deny("stale_data", f"no trade of {order.symbol} seen yet")
        last_price, last_ns = last_trade
        age_s = (now_ns - last_ns) / NS_PER_S
        if age_s > limits.max_data_age_s:
            return deny(
                "stale_data", f"last trade of {order.symbol} is {age_s:.1f} s old (limit {limits.max_data_age_s} s)"
            )
        band = abs(reference - last_price) / last_price
        if band > limits.price_band:
            return deny(
                "price_band",
                f"reference price {reference} is {band:.2%} from the last trade {last_price} "
                f"(band {limits.price_band:.2%})",
            )
        sent = self._sent
        while sent and sent[0] <= now_ns - NS_PER_S:
            sent.popleft()
        if len(sent) >= limits.max_orders_per_s:
            return deny("order_rate", f"{len(sent)} orders in the last second (limit {limits.max_orders_per_s})")
        signed = order.quantity if order.side == "buy" else -order.quantity
        after = position + signed
        if limits.max_position_quantity is not None and abs(after) > limits.max_position_quantity:
            return deny("max_position", f"position would be {after} (limit {limits.max_position_quantity} per symbol)")
        after_notional = abs(after) * reference
        if after_notional > limits.max_position_notional:
            return deny(
                "max_position",
                f"position notional would be {after_notional:.2f} (limit {limits.max_position_notional} per symbol)",
            )
        gross_now, equity = totals if totals is not None else (portfolio.gross_notional(), portfolio.equity())
        gross = gross_now - portfolio.notional(order.symbol) + after_notional
        if gross > limits.max_gross_notional:
            return deny("max_gross", f"gross notional would be {gross:.2f} (limit {limits.max_gross_notional})")
        if self.var99 is not None and (equity <= 0 or self.var99 / equity > limits.max_var_fraction):
            return deny(
                "var_limit",
                f"portfolio VaR(99%) {self.var99:.2f} is above {limits.max_var_fraction:.2%} of equity {equity:.2f}",
            )
        return None
