"""The trading core: bar closes and forecasts to decisions and orders, trades to fills.

:class:`TradingCore` is synchronous and deterministic: given the same trades, bar closes and
forecasts in the same order it makes the same decisions, orders and fills, which is what
makes a backtest agree with a live run. Time is the venue's: a bar ``[t, t + bar)`` is
decided at ``t + bar + grace`` (``now_ns``), its orders may fill from that instant on, and
the shell hands the core every trade before that instant before the decision and every
trade after it after the decision.

What the core changes is kept in a journal (fills, orders whose state changed, decisions,
risk events) that the shell writes to PostgreSQL (:mod:`engine.trading.store`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, Decimal

import numpy as np
import numpy.typing as npt

from engine.trading.execution import ExecutionClient
from engine.trading.orders import QUANTUM, Fill, Order, order_id, price_of
from engine.trading.portfolio import Portfolio
from engine.trading.risk import PreTradeRisk, RiskEvent
from engine.trading.strategy import SentimentBook, StrategyParams, target_weights
from feature_store.records import Trade

__all__ = ["Decision", "Forecasts", "Journal", "TradingCore"]


@dataclass(slots=True)
class Forecasts:
    """The model service's answer for one bar: per symbol the forecast mean and sd.

    Attributes:
        models: model name -> version tag that made them.
        feature_sets: feature set -> version the model read.
        bars: each symbol's last bar in its window (the bar the forecast is for).
    """

    symbols: list[str]
    mean: npt.NDArray[np.float64]
    sd: npt.NDArray[np.float64]
    bars: list[int]
    models: dict[str, str]
    feature_sets: dict[str, str]
    horizon_bars: int
    rejected: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_response(cls, response: Mapping[str, object]) -> Forecasts:
        """From the service's ``/forecast`` answer."""
        return cls(
            symbols=list(response["symbols"]),  # type: ignore[call-overload]
            mean=np.asarray(response["mean"], dtype=np.float64),
            sd=np.asarray(response["sd"], dtype=np.float64),
            bars=[int(t) for t in response["ts_ns"]],  # type: ignore[attr-defined]
            models=dict(response["models"]),  # type: ignore[call-overload]
            feature_sets=dict(response["feature_sets"]),  # type: ignore[call-overload]
            horizon_bars=int(response.get("horizon_bars", 1)),  # type: ignore[call-overload]
            rejected=dict(response.get("rejected") or {}),  # type: ignore[call-overload]
        )

    def feature_set_version(self) -> str:
        return ",".join(f"{k}:{v}" for k, v in sorted(self.feature_sets.items()))


@dataclass(frozen=True, slots=True)
class Decision:
    """One symbol's decision at one bar, as stored in ``decisions``."""

    decision_id: str
    ts_ns: int
    symbol: str
    forecast: float
    forecast_std: float
    sentiment: float
    value_at_risk: float | None
    target_position: Decimal
    action: str
    reason: str
    model_versions: dict[str, str]
    feature_set_version: str


@dataclass
class Journal:
    """What changed since the last write: the store takes it whole, in one transaction."""

    fills: list[Fill] = field(default_factory=list)
    orders: dict[str, Order] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    events: list[RiskEvent] = field(default_factory=list)
    symbols: set[str] = field(default_factory=set)  # positions touched by fills

    def __len__(self) -> int:
        return len(self.fills) + len(self.orders) + len(self.decisions) + len(self.events)

    def take(self) -> Journal:
        out = Journal(self.fills, self.orders, self.decisions, self.events, self.symbols)
        self.fills, self.orders, self.decisions, self.events, self.symbols = [], {}, [], [], set()
        return out

    def put_back(self, older: Journal) -> None:
        """Return a journal whose write failed, ahead of what came since."""
        self.fills[:0] = older.fills
        self.orders = {**older.orders, **self.orders}
        self.decisions[:0] = older.decisions
        self.events[:0] = older.events
        self.symbols |= older.symbols


@dataclass
class CoreStats:
    """Counters of the core (exported as Prometheus metrics)."""

    decisions: int = 0
    orders: int = 0
    fills: int = 0
    denials: int = 0
    cancels: int = 0
    bars_decided: int = 0
    bars_without_model: int = 0
    max_drawdown: float = 0.0
    params_changes: int = 0
    denials_by_check: dict[str, int] = field(default_factory=dict)
    # Why symbols were held rather than traded: inside_band, below_min_order, no price yet, ...
    holds_by_reason: dict[str, int] = field(default_factory=dict)


class TradingCore:
    """Strategy, pre-trade risk, execution and portfolio for one account.

    Args:
        account: the account name (orders, fills and decisions are stored under it).
        portfolio: its cash and positions (rebuilt from stored fills after a restart).
        broker: the execution client.
        risk: the pre-trade checks.
        params: the strategy's parameters.
        venue: the venue orders go to.
        order_ttl_ns: how long an order may wait for fills before what is left is cancelled.
    """

    def __init__(
        self,
        account: str,
        portfolio: Portfolio,
        broker: ExecutionClient,
        risk: PreTradeRisk,
        params: StrategyParams | None = None,
        *,
        venue: str = "paper",
        order_ttl_ns: int = 5_000_000_000,
    ) -> None:
        self.account = account
        self.portfolio = portfolio
        self.broker = broker
        self.risk = risk
        self.params = params or StrategyParams()
        self.venue = venue
        self.order_ttl_ns = order_ttl_ns
        self.sentiment = SentimentBook()
        self.journal = Journal()
        self.stats = CoreStats()
        self.last_trade: dict[str, tuple[float, int]] = {}
        self.orders: dict[str, Order] = {}  # open orders by client order id
        # Stored but never sent before a restart, for a bar that is decided again (see restore).
        self.awaiting: dict[str, Order] = {}
        self.now_ns = 0

    # --- market data ---------------------------------------------------------------------

    def note_close(self, symbol: str, close: float, end_ns: int) -> None:
        """A bar of ``symbol`` closed at ``close`` (ending at ``end_ns``): its last price when no
        trade of it was seen (bars from history at a warm start)."""
        if symbol not in self.last_trade:
            self.last_trade[symbol] = (close, end_ns)

    def on_trade(self, trade: Trade, *, match: bool = True) -> None:
        """A market trade: remember its price and let the broker fill against it."""
        self.last_trade[trade.symbol] = (trade.price, trade.ts_ns)
        if not match:
            return
        fills = self.broker.on_trade(trade)
        if fills:
            self._apply(fills)

    def _apply(self, fills: Sequence[Fill]) -> None:
        journal, orders = self.journal, self.orders
        for fill in fills:
            self.portfolio.apply(fill)
            journal.fills.append(fill)
            journal.symbols.add(fill.symbol)
            self.stats.fills += 1
            order = orders.get(fill.client_order_id)
            if order is not None:
                journal.orders[order.client_order_id] = order
                if not order.is_open:
                    del orders[order.client_order_id]

    def add_news(self, ts_ns: int, symbols: Sequence[str], score: float) -> None:
        self.sentiment.add(ts_ns, symbols, score)

    def expire(self, now_ns: int) -> None:
        for order in self.broker.expire(now_ns):
            self.journal.orders[order.client_order_id] = order
            self.orders.pop(order.client_order_id, None)
            self.stats.cancels += 1

    def event(self, event: RiskEvent) -> None:
        self.journal.events.append(event)
        if event.client_order_id:
            self.stats.denials += 1
            by = self.stats.denials_by_check
            by[event.kind] = by.get(event.kind, 0) + 1

    # --- decisions -----------------------------------------------------------------------

    def decide(
        self,
        bar_ns: int,
        closes: Mapping[str, float],
        forecasts: Forecasts | None,
        now_ns: int,
    ) -> list[Order]:
        """Decide bar ``bar_ns`` at venue time ``now_ns``; return the orders to store, then send.

        ``closes`` are the closes of the bars that closed; ``forecasts`` None means the model
        service gave nothing for this bar (no new risk is opened; the kill switch still works).
        """
        self.now_ns = now_ns
        portfolio, risk = self.portfolio, self.risk
        for symbol, close in closes.items():
            portfolio.mark(symbol, price_of(close))
        self.expire(now_ns)
        self._drop_awaiting(now_ns)
        drawdown = portfolio.update_peak()
        self.stats.max_drawdown = max(self.stats.max_drawdown, float(drawdown))
        orders: list[Order] = []
        if risk.drawdown_breached(drawdown) and risk.trip(
            f"drawdown {drawdown:.2%} reached the limit {risk.limits.max_drawdown:.2%}", now_ns
        ):
            self.event(RiskEvent("", "*", now_ns, "kill_switch_tripped", risk.killed or ""))
        if risk.killed is not None:
            orders.extend(self._flatten(bar_ns, now_ns))
        self.stats.bars_decided += 1
        if forecasts is None:
            self.stats.bars_without_model += 1
            return orders
        orders.extend(self._decide(bar_ns, forecasts, now_ns))
        return orders

    def _flatten(self, bar_ns: int, now_ns: int) -> list[Order]:
        out = []
        for order in self.broker.open_orders():
            if not order.client_order_id.endswith("-x"):
                self._cancel(order.client_order_id, now_ns)
        for symbol, qty in self.portfolio.open_positions().items():
            if any(o.client_order_id.endswith("-x") for o in self.broker.open_orders(symbol)):
                continue
            order = self._order(symbol, -qty, bar_ns, now_ns, "x", None)
            order.reason = "kill switch: flatten"
            out.append(order)
        return out

    def _cancel(self, client_order_id: str, now_ns: int) -> None:
        order = self.broker.cancel(client_order_id, now_ns)
        if order is not None:
            order.reason = order.reason or "replaced"
            self.journal.orders[client_order_id] = order
            self.orders.pop(client_order_id, None)
            self.stats.cancels += 1

    def _order(
        self, symbol: str, signed_qty: Decimal, bar_ns: int, now_ns: int, purpose: str, decision_id: str | None
    ) -> Order:
        return Order(
            client_order_id=order_id(self.account, symbol, bar_ns, purpose),
            account=self.account,
            venue=self.venue,
            symbol=symbol,
            side="buy" if signed_qty > 0 else "sell",
            quantity=abs(signed_qty),
            decision_id=decision_id,
            created_ns=now_ns,
            updated_ns=now_ns,
            eligible_ns=now_ns,
            expires_ns=now_ns + self.order_ttl_ns,
        )

    def universe(self, symbols: Sequence[str]) -> list[str]:
        """The symbols to decide at a bar: ``symbols`` plus any other still held or with an open order."""
        held = set(self.portfolio.open_positions()) | {o.symbol for o in self.orders.values()}
        return sorted(set(symbols) | held)

    def set_params(self, params: StrategyParams) -> bool:
        """Trade with ``params`` from the next decision on (a hot swap); True if they changed."""
        if params == self.params:
            return False
        self.params = params
        self.stats.params_changes += 1
        return True

    def _decide(self, bar_ns: int, forecasts: Forecasts, now_ns: int) -> list[Order]:
        portfolio, risk, params = self.portfolio, self.risk, self.params
        symbols = forecasts.symbols
        equity = portfolio.equity()
        totals = (portfolio.gross_notional(), equity)  # the portfolio does not change while deciding
        var_scale = 1.0
        if risk.var99 is not None and risk.var99 > 0 and equity > 0:
            var_scale = min(1.0, params.var_budget * float(equity) / float(risk.var99))
        sentiment = self.sentiment.at(symbols, now_ns)
        marks = [portfolio.marks.get(s) for s in symbols]
        held_qty = [portfolio.quantity(s) for s in symbols]
        equity_f = float(equity)
        held = np.array(
            [
                float(q * m) / equity_f if m is not None and q and equity_f > 0 else 0.0
                for q, m in zip(held_qty, marks, strict=True)
            ]
        )
        current = np.array([forecasts.bars[i] == bar_ns for i in range(len(symbols))], dtype=bool)
        mean = np.where(current, forecasts.mean, np.nan)
        targets = target_weights(mean, forecasts.sd, held, params, sentiment=sentiment, var_scale=var_scale)
        cap = float(risk.limits.max_position_notional)
        notionals = np.clip(targets.weights * equity_f, -cap, cap) if equity_f > 0 else np.zeros(len(symbols))
        models, fsv = forecasts.models, forecasts.feature_set_version()
        var99 = float(risk.var99) if risk.var99 is not None else None
        decisions = self.journal.decisions
        holds = self.stats.holds_by_reason
        orders: list[Order] = []
        min_notional = params.min_order_notional
        for i, symbol in enumerate(symbols):
            decision_id = f"{self.account}:{symbol}:{bar_ns}"
            mark = marks[i]
            held_i = held_qty[i]
            target_qty = held_i
            action, reason, why = "hold", "", ""
            if not current[i]:
                why, reason = "stale_forecast", f"forecast is for bar {forecasts.bars[i]}, not {bar_ns}"
            elif mark is None:
                why = reason = "no price yet"
            elif targets.in_band[i]:
                why, reason = "inside_band", f"inside the no-trade band ({params.band:g} of equity)"
            else:
                target = float(notionals[i])
                # Rounded towards zero: the target never exceeds the notional it was capped at.
                target_qty = (Decimal(repr(target)) / mark).quantize(QUANTUM, rounding=ROUND_DOWN)
                delta = target_qty - held_i
                if abs(float(delta) * float(mark)) < min_notional:
                    target_qty = held_i
                    why, reason = "below_min_order", f"at target (change below {min_notional:g})"
                else:
                    order = self._order(symbol, delta, bar_ns, now_ns, "t", decision_id)
                    for open_order in self.broker.open_orders(symbol):
                        # An order restored open is never cancelled by its own bar decided again.
                        if open_order.client_order_id != order.client_order_id:
                            self._cancel(open_order.client_order_id, now_ns)
                    if params.order_type == "limit":
                        order.order_type, order.limit_price = "limit", mark
                    last = self.last_trade.get(symbol)
                    denial = risk.check(order, mark, portfolio, (price_of(last[0]), last[1]) if last else None, now_ns,
                                        totals=totals)  # fmt: skip
                    if denial is not None:
                        self.event(denial)
                        action, reason = "denied", f"{denial.kind}: {denial.reason}"
                    else:
                        risk.note_sent(now_ns)
                        action = order.side
                        orders.append(order)
            if why:
                holds[why] = holds.get(why, 0) + 1
            decisions.append(
                Decision(
                    decision_id,
                    bar_ns,
                    symbol,
                    float(forecasts.mean[i]),
                    float(forecasts.sd[i]),
                    float(sentiment[i]),
                    var99,
                    target_qty,
                    action,
                    reason,
                    models,
                    fsv,
                )
            )
        self.stats.decisions += len(symbols)
        return orders

    def submit(self, orders: Sequence[Order]) -> None:
        """Send orders that are stored (the store said they are new)."""
        for order in orders:
            self.orders[order.client_order_id] = order
            self.broker.submit(order)
            self.journal.orders[order.client_order_id] = order
            self.stats.orders += 1

    def unsent(self, orders: Sequence[Order], reason: str) -> None:
        """Orders of the last decision that could not be stored, so were never sent: their
        decisions are journaled as ``unsent`` with ``reason`` instead of the buy or sell they were."""
        by_id = {o.decision_id: o for o in orders if o.decision_id is not None}
        if not by_id:
            return
        decisions = self.journal.decisions
        for i in range(len(decisions) - 1, -1, -1):
            d = decisions[i]
            order = by_id.pop(d.decision_id, None)
            if order is not None:
                decisions[i] = replace(d, action="unsent", reason=f"{order.side} {order.quantity} not sent: {reason}")
                if not by_id:
                    break

    def restore(self, orders: Sequence[Order], *, redecide_after_ns: int | None = None) -> list[Order]:
        """Take back open orders found in the database; return those never sent (to send now).

        A resumed backtest decides again every bar after its checkpoint (venue time
        ``redecide_after_ns``). An order stored but never sent that was created after it is not
        sent blindly: it waits for its bar's decision, is sent if that decision makes it again
        (:meth:`redecided`), and is cancelled once its bar has passed without it.
        """
        unsent = []
        for order in orders:
            if order.status == "new" and redecide_after_ns is not None and order.created_ns > redecide_after_ns:
                self.awaiting[order.client_order_id] = order
                continue
            self.orders[order.client_order_id] = order
            if order.status == "new":
                unsent.append(order)
            else:
                self.broker.restore(order)
        return unsent

    def redecided(self, order: Order) -> bool:
        """True if ``order``, already stored, was awaiting this decision: send it now.

        The decision made again must make the same order; one that differs (the model or the
        market data changed between the runs) leaves the stored order cancelled and unsent.
        """
        stored = self.awaiting.pop(order.client_order_id, None)
        if stored is None:
            return False
        same = (stored.symbol, stored.side, stored.quantity, stored.order_type, stored.limit_price) == (
            order.symbol,
            order.side,
            order.quantity,
            order.order_type,
            order.limit_price,
        )
        if not same:
            stored.status, stored.updated_ns = "cancelled", order.created_ns
            stored.reason = f"decided again after the restart as {order.side} {order.quantity}, not sent"
            self.journal.orders[stored.client_order_id] = stored
            self.stats.cancels += 1
        return same

    def _drop_awaiting(self, now_ns: int) -> None:
        for cid, order in list(self.awaiting.items()):
            if order.created_ns < now_ns:  # its bar was decided again without it
                del self.awaiting[cid]
                order.status, order.updated_ns = "cancelled", now_ns
                order.reason = "not made again when its bar was decided after the restart"
                self.journal.orders[cid] = order
                self.stats.cancels += 1

    def target_positions(self) -> dict[str, Decimal]:
        """Each symbol's position once its open orders have filled (what the risk model sizes)."""
        out = dict(self.portfolio.open_positions())
        for order in self.broker.open_orders():
            out[order.symbol] = out.get(order.symbol, Decimal(0)) + order.signed_remaining
        return {s: q for s, q in sorted(out.items()) if q}
