"""The trading core as plain synchronous code: broker, portfolio, risk checks, strategy and
the kill switch, with no event loop and no I/O."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from engine.trading.breaker import CircuitBreaker
from engine.trading.core import Forecasts, TradingCore
from engine.trading.execution import PaperBroker, PaperCosts
from engine.trading.orders import Fill, Order
from engine.trading.portfolio import Portfolio
from engine.trading.risk import PreTradeRisk, RiskLimits
from engine.trading.strategy import StrategyParams
from feature_store.records import Trade

S = 10**9
D = Decimal


def trade(ts_s: float, price: float, size: float = 1.0, symbol: str = "AAA-USD", tid: int = 1) -> Trade:
    return Trade("coinbase", symbol, int(ts_s * S), price, size, "buy", str(tid))


def order(qty: str, side: str = "buy", symbol: str = "AAA-USD", **kw) -> Order:
    return Order(f"a-{symbol}-{qty}-{side}", "a", "coinbase", symbol, side, D(qty), **kw)  # type: ignore[arg-type]


def test_paper_broker_partial_fills_fees_slippage_and_expiry() -> None:
    broker = PaperBroker(PaperCosts(taker_fee_bps=D(10), slippage_bps=D(5), participation=D("0.5")))
    o = order("3", eligible_ns=10 * S, expires_ns=20 * S)
    broker.submit(o)
    assert broker.on_trade(trade(9, 100.0, 10)) == []  # before the decision's time
    fills = broker.on_trade(trade(11, 100.0, 4, tid=2))  # half of 4 = 2
    assert len(fills) == 1 and fills[0].quantity == D(2) and o.status == "partially_filled"
    assert fills[0].price == D("100.05")  # 5 bps against the buyer
    assert fills[0].fee == D("0.2001")  # 10 bps of 2 * 100.05
    assert fills[0].fill_id == "coinbase:2" and fills[0].liquidity == "taker"
    fills = broker.on_trade(trade(12, 99.0, 10, tid=3))
    assert fills[0].quantity == D(1) and o.status == "filled" and broker.open_orders() == []
    late = order("1", eligible_ns=10 * S, expires_ns=20 * S, symbol="BBB-USD")
    broker.submit(late)
    assert broker.on_trade(trade(21, 50.0, 5, symbol="BBB-USD")) == []  # past its time
    assert [x.client_order_id for x in broker.expire(21 * S)] == [late.client_order_id]
    assert late.status == "cancelled" and late.reason == "expired"


def test_paper_broker_limit_orders_cancel_and_duplicate_sends() -> None:
    broker = PaperBroker(PaperCosts(maker_fee_bps=D(1), participation=D(1)))
    o = order("1", side="sell", order_type="limit", limit_price=D("101"), eligible_ns=0)
    broker.submit(o)
    broker.submit(o)
    assert broker.duplicate_sends == 1 and o.sends == 1
    assert broker.on_trade(trade(1, 100.5)) == []
    fill = broker.on_trade(trade(2, 101.5, tid=2))[0]
    assert fill.price == D("101") and fill.liquidity == "maker" and fill.fee == D("0.0101")
    other = order("2", eligible_ns=0)
    broker.submit(other)
    assert broker.cancel(other.client_order_id, 5) is other and other.status == "cancelled"
    assert broker.cancel(other.client_order_id, 6) is None


def test_portfolio_average_price_realized_pnl_flip_and_cash() -> None:
    p = Portfolio(D(1000))

    def fill(side: str, qty: str, price: str, fee: str = "0") -> Fill:
        return Fill("x", f"f{p.fills}", p.fills, "AAA-USD", side, D(qty), D(price), D(fee), "taker")  # type: ignore[arg-type]

    p.apply(fill("buy", "2", "10", "0.1"))
    p.apply(fill("buy", "2", "12"))
    pos = p.positions["AAA-USD"]
    assert pos.average_price == D(11) and pos.quantity == D(4)
    p.apply(fill("sell", "6", "13"))  # closes 4 at +2 each, opens -2 at 13
    assert pos.quantity == D(-2) and pos.average_price == D(13)
    assert pos.realized_pnl == D("7.9")  # 8 - 0.1 fee
    p.mark("AAA-USD", D(12))
    assert p.cash == D(1000) - D("20.1") - D(24) + D(78)
    assert p.equity() == p.cash - D(24) and p.pnl() == p.equity() - D(1000)
    assert p.equity() - D(1000) == D("9.9")  # 7.9 realized + 2 unrealized on the short


def test_risk_checks_each_reason() -> None:
    limits = RiskLimits(
        max_position_notional=D(1000),
        max_gross_notional=D(1500),
        max_orders_per_s=2,
        price_band=D("0.01"),
        max_var_fraction=D("0.05"),
        max_data_age_s=5,
    )
    risk = PreTradeRisk(limits)
    p = Portfolio(D(10_000))
    last = (D(100), 10 * S)
    now = 11 * S

    def check(o: Order, ref: str = "100", last_trade=last):
        event = risk.check(o, D(ref), p, last_trade, now)
        return event.kind if event else None

    assert check(order("5")) is None
    assert check(order("5"), last_trade=None) == "stale_data"
    assert check(order("5"), last_trade=(D(100), 1 * S)) == "stale_data"
    assert check(order("5"), ref="102") == "price_band"
    assert check(order("11")) == "max_position"
    p.apply(Fill("x", "1", 1, "BBB-USD", "buy", D(9), D(100), D(0), "taker"))
    p.mark("BBB-USD", D(100))
    assert check(order("7")) == "max_gross"  # 900 + 700 > 1500
    risk.note_sent(now - S // 2)
    risk.note_sent(now - S // 4)
    assert check(order("1")) == "order_rate"
    risk._sent.clear()
    risk.var99 = D(600)  # 6% of equity
    assert check(order("1")) == "var_limit"
    risk.var99 = None
    risk.model_problem = "model service unavailable"
    assert check(order("1")) == "stale_model"
    assert check(order("1", side="sell", symbol="BBB-USD")) is None  # reducing always passes
    assert check(order("10", side="sell", symbol="BBB-USD")) == "stale_model"  # flips: adds risk
    risk.model_problem = None
    risk.write_backlog = True
    assert check(order("1")) == "write_backlog"
    assert risk.trip("test", now) and not risk.trip("again", now)
    assert check(order("1")) == "kill_switch"


def _forecasts(symbols: list[str], mean: list[float], bar: int) -> Forecasts:
    n = len(symbols)
    return Forecasts(symbols, np.array(mean), np.full(n, 0.001), [bar] * n, {"price": "price:v1"}, {"price": "f1"}, 15)


def test_core_decides_orders_fills_and_the_kill_switch_flattens() -> None:
    limits = RiskLimits(max_position_notional=D(5000), max_drawdown=D("0.001"))
    core = TradingCore(
        "acct",
        Portfolio(D(100_000)),
        PaperBroker(PaperCosts(participation=D(1))),
        PreTradeRisk(limits),
        StrategyParams(family="per_symbol", cap=0.05, entry_z=0.1),
    )
    bar = 60 * S
    now = 121 * S
    core.on_trade(trade(119, 100.0, symbol="AAA-USD"))
    core.on_trade(trade(119, 50.0, symbol="BBB-USD", tid=2))
    orders = core.decide(
        bar, {"AAA-USD": 100.0, "BBB-USD": 50.0}, _forecasts(["AAA-USD", "BBB-USD"], [0.002, -0.0005], bar), now
    )
    assert [(o.symbol, o.side) for o in orders] == [("AAA-USD", "buy"), ("BBB-USD", "sell")]
    assert orders[0].quantity == D(50)  # a per-symbol position is 5% of equity: 5000 at 100
    assert orders[0].client_order_id == f"acct-AAA-USD-{bar}-t" and orders[0].eligible_ns == now
    assert [d.action for d in core.journal.decisions] == ["buy", "sell"]
    assert core.journal.decisions[0].model_versions == {"price": "price:v1"}
    core.submit(orders)
    core.on_trade(trade(122, 100.0, 100, symbol="AAA-USD", tid=3))
    assert core.portfolio.quantity("AAA-USD") == D(50) and core.stats.fills == 1
    # the price falls: the drawdown limit trips, open orders are cancelled, positions flattened
    flatten = core.decide(bar + 60 * S, {"AAA-USD": 90.0}, None, now + 60 * S)
    assert core.risk.killed is not None
    assert [(o.symbol, o.side, o.quantity) for o in flatten] == [("AAA-USD", "sell", D(50))]
    assert flatten[0].client_order_id.endswith("-x")
    assert any(e.kind == "kill_switch_tripped" for e in core.journal.events)
    assert not core.broker.open_orders("BBB-USD")  # the BBB order was cancelled
    core.submit(flatten)
    core.on_trade(trade(182, 90.0, 100, symbol="AAA-USD", tid=4))
    assert core.portfolio.quantity("AAA-USD") == 0
    again = core.decide(
        bar + 120 * S, {"AAA-USD": 95.0}, _forecasts(["AAA-USD"], [0.002], bar + 120 * S), now + 120 * S
    )
    assert again == [] and core.journal.decisions[-1].action == "denied"
    assert core.journal.decisions[-1].reason.startswith("kill_switch")


def _core() -> TradingCore:
    return TradingCore(
        "acct",
        Portfolio(D(100_000)),
        PaperBroker(PaperCosts(participation=D(1))),
        PreTradeRisk(RiskLimits(max_position_notional=D(5000))),
        StrategyParams(family="per_symbol", cap=0.05, entry_z=0.1),
    )


def test_orders_stored_after_the_checkpoint_wait_for_their_bar_decided_again() -> None:
    bar, now = 60 * S, 121 * S
    closes = {"AAA-USD": 100.0, "BBB-USD": 50.0}
    first = _core()
    first.on_trade(trade(119, 100.0, symbol="AAA-USD"))
    first.on_trade(trade(119, 50.0, symbol="BBB-USD", tid=2))
    stored = first.decide(bar, closes, _forecasts(["AAA-USD", "BBB-USD"], [0.002, -0.0005], bar), now)
    assert len(stored) == 2  # stored, then the process died before sending them

    resumed = _core()
    resumed.on_trade(trade(119, 100.0, symbol="AAA-USD"))
    resumed.on_trade(trade(119, 50.0, symbol="BBB-USD", tid=2))
    assert resumed.restore(stored, redecide_after_ns=now - 60 * S) == []  # not sent blindly
    assert resumed.orders == {} and set(resumed.awaiting) == {o.client_order_id for o in stored}
    # decided again: AAA's order is made again (sent), BBB's forecast changed (no order)
    again = resumed.decide(bar, closes, _forecasts(["AAA-USD", "BBB-USD"], [0.002, 0.0], bar), now)
    assert [o.client_order_id for o in again] == [stored[0].client_order_id]
    assert resumed.redecided(again[0]) and not resumed.redecided(again[0])
    resumed.submit(again)
    resumed.decide(bar + 60 * S, closes, None, now + 60 * S)
    dropped = resumed.journal.orders[stored[1].client_order_id]
    assert dropped.status == "cancelled" and "decided after the restart" in dropped.reason
    assert resumed.awaiting == {} and again[0].sends == 1

    # Without a checkpoint (a live restart) an order never sent is sent at once.
    live = _core()
    unsent = first.decide(bar + 60 * S, closes, _forecasts(["AAA-USD"], [0.002], bar + 60 * S), now)
    assert live.restore(unsent) == unsent


def test_an_order_restored_open_is_not_cancelled_by_its_own_bar_decided_again() -> None:
    bar, now = 60 * S, 121 * S
    core = _core()
    core.on_trade(trade(119, 100.0, symbol="AAA-USD"))
    made = core.decide(bar, {"AAA-USD": 100.0}, _forecasts(["AAA-USD"], [0.002], bar), now)
    sent = made[0]
    sent.status = "sent"
    restored = _core()
    restored.on_trade(trade(119, 100.0, symbol="AAA-USD"))
    assert restored.restore([sent]) == []
    again = restored.decide(bar, {"AAA-USD": 100.0}, _forecasts(["AAA-USD"], [0.002], bar), now)
    assert [o.client_order_id for o in again] == [sent.client_order_id]
    assert sent.status == "sent" and restored.broker.open_orders("AAA-USD") == [sent]


def test_circuit_breaker_opens_half_opens_and_closes() -> None:
    clock = [0.0]
    breaker = CircuitBreaker(failures=2, cooldown_s=5, clock=lambda: clock[0])
    assert breaker.allow() and breaker.failure("x") is None
    assert breaker.failure("x") == "open" and not breaker.allow()
    clock[0] = 6
    assert breaker.allow() and breaker.state == "half_open"
    assert breaker.failure("y") == "open" and not breaker.allow()
    clock[0] = 12
    assert breaker.allow() and breaker.success() == "closed" and breaker.opens == 2
