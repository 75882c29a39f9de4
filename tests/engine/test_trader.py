"""The trader follows the strategy the served price model was validated with: at start, after
a hot swap, with the user's overrides on top, and refuses overrides that do not fit; it refuses
a served model of another bar length; a backtest jumps long gaps in its data and stops at once."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from engine.config import BarInterval
from engine.dataplane import DataPlane
from engine.errors import ConfigError, EngineError
from engine.session import SimulatedClock
from engine.trade import TradingOptions, start_trader
from engine.trading.breaker import CircuitBreaker
from engine.trading.core import Forecasts, TradingCore
from engine.trading.execution import PaperBroker
from engine.trading.portfolio import Portfolio
from engine.trading.risk import PreTradeRisk
from engine.trading.trader import Trader
from feature_store.features import PRICE
from feature_store.records import NS_PER_S, Trade
from serving.client import ServiceUnavailable


class FakeModels:
    """What the trader asks the model service for its strategy: ``/versions``."""

    def __init__(self) -> None:
        self.served: dict[str, Any] = {}
        self.calls = 0

    async def versions(self) -> dict[str, Any]:
        self.calls += 1
        return {"models": {"price": self.served}}


def _trader(models: FakeModels) -> Trader:
    core = TradingCore("t", Portfolio(Decimal(100_000)), PaperBroker(), PreTradeRisk())
    return Trader(core, None, models, interval=BarInterval(60), grace_ns=0)  # type: ignore[arg-type]


def _forecasts(tag: str) -> Forecasts:
    return Forecasts(["A-USD"], np.zeros(1), np.ones(1), [0], {"price": tag}, {}, 15)


def test_trader_puts_the_validated_strategy_in_force_and_follows_a_hot_swap() -> None:
    models = FakeModels()
    trader = _trader(models)

    async def scenario() -> None:
        await trader.adopt_strategy("price:v1", {"family": "cross_sectional", "band": 0.004, "holding": 30}, 1)
        assert trader.core.params.band == 0.004 and trader.core.params.origin == "price:v1"
        await trader._follow_strategy(_forecasts("price:v1"), 2)
        assert models.calls == 0  # same model: nothing to ask
        models.served = {"tag": "price:v2", "strategy": {"family": "per_symbol", "entry_z": 0.3, "exit_z": 0.1}}
        await trader._follow_strategy(_forecasts("price:v2"), 3)
        assert trader.core.params.family == "per_symbol" and trader.core.params.origin == "price:v2"
        models.served = {"tag": "price:v3", "strategy": None}  # a model without a fitted strategy
        await trader._follow_strategy(_forecasts("price:v3"), 4)
        assert trader.core.params.family == "cross_sectional" and "publishes no strategy" in trader.core.params.origin
        models.served = {"tag": "price:v4", "strategy": {"family": "martingale"}}  # invalid: reported, default
        await trader._follow_strategy(_forecasts("price:v4"), 5)
        assert "invalid" in trader.core.params.origin and "martingale" in trader.stats.last_error

    asyncio.run(scenario())
    assert trader.core.stats.params_changes == 4


def test_overrides_apply_on_top_of_every_served_strategy_and_misfits_are_refused() -> None:
    trader = _trader(FakeModels())
    trader.strategy_overrides = {"band": 0.0, "order_type": "limit"}

    async def scenario() -> None:
        await trader.adopt_strategy("price:v1", {"band": 0.01, "holding": 60}, 1)
        params = trader.core.params
        assert (params.band, params.holding, params.order_type) == (0.0, 60, "limit")
        assert "overridden: band=0.0, order_type=limit" in params.origin
        trader.strategy_overrides = {"exit_z": 2.0}
        with pytest.raises(ConfigError, match="exit_z"):
            await trader.adopt_strategy("price:v2", {"family": "per_symbol", "entry_z": 1.0}, 2)

    asyncio.run(scenario())


def test_a_fixed_strategy_is_never_swapped() -> None:
    trader = _trader(FakeModels())
    trader.strategy_fixed = True
    before = trader.core.params
    asyncio.run(trader.adopt_strategy("price:v9", {"family": "per_symbol"}, 1))
    assert trader.core.params is before


class FailingRisk:
    """A model service whose risk model is down."""

    def __init__(self) -> None:
        self.calls: list[dict[str, float]] = []

    async def portfolio_risk(self, notional: dict[str, float], **kw: Any) -> dict[str, Any]:
        self.calls.append(notional)
        raise ServiceUnavailable("risk model down")


def test_a_backtest_stops_on_a_failed_risk_call_and_an_unmarked_portfolio_is_not_sent() -> None:
    models = FailingRisk()
    backtest = _trader(models)  # type: ignore[arg-type]
    target = {"A-USD": Decimal(2)}
    asyncio.run(backtest._refresh_var(target, 0))  # restored, not marked by a bar yet: nothing to ask
    assert models.calls == []
    backtest.core.portfolio.mark("A-USD", Decimal(100))
    with pytest.raises(EngineError, match="risk model failed"):
        asyncio.run(backtest._refresh_var(target, 0))
    assert models.calls == [{"A-USD": 200.0}]

    core = TradingCore("t", Portfolio(Decimal(100_000)), PaperBroker(), PreTradeRisk())
    live = Trader(core, None, models, interval=BarInterval(60), grace_ns=0, breaker=CircuitBreaker(3, 5.0))  # type: ignore[arg-type]
    core.risk.var99 = Decimal(7)
    core.portfolio.mark("A-USD", Decimal(100))
    asyncio.run(live._refresh_var(target, 0))  # live: the last VaR stays in force
    assert core.risk.var99 == Decimal(7) and live.stats.risk_failures == 1


def test_a_served_model_of_another_bar_length_is_refused_before_trading() -> None:
    models = FakeModels()
    models.served = {"tag": "price:v1", "interval_s": 1, "horizon_bars": 15}
    with pytest.raises(
        ConfigError, match=r"trained on 1-second bars and this run makes 60-second bars.*--bar-seconds 1"
    ):
        asyncio.run(start_trader(_trader(models), models, TradingOptions()))  # type: ignore[arg-type]
    models.served["interval_s"] = 60
    asyncio.run(start_trader(_trader(models), models, TradingOptions()))  # type: ignore[arg-type]


def _plane(closed: list[int]) -> DataPlane:
    async def on_close(start_ns: int, bars: Any, steps: Any, began: float) -> None:
        closed.append(start_ns)

    return DataPlane(["A-USD", "B-USD"], [PRICE], online=None, recorder=None, interval=BarInterval(60),
                     grace_s=0.0, on_close=on_close, wall_clock=False)  # fmt: skip


def _trades(*minutes: float) -> list[Trade]:
    t0 = 1_767_571_200 * NS_PER_S
    return [
        Trade("coinbase", sym, t0 + int(m * 60 * NS_PER_S), 100.0 + i, 1.0, "buy", f"{i}-{sym}")
        for i, m in enumerate(minutes)
        for sym in ("A-USD", "B-USD")
    ]


def test_a_backtest_jumps_a_long_gap_in_the_stored_trades_and_warms_up_again() -> None:
    closed: list[int] = []
    plane = _plane(closed)
    clock = SimulatedClock(plane, max_gap_bars=120)
    # Five minutes of trades, then nothing for 4.8 years, then three more minutes.
    trades = _trades(0.5, 1.5, 2.5, 3.5, 4.5, 4.8 * 365 * 1440 + 0.5, 4.8 * 365 * 1440 + 1.5, 4.8 * 365 * 1440 + 3.5)

    async def scenario() -> None:
        for trade in trades:
            await clock.advance(trade.ts_ns)
            plane.on_trade(trade)

    asyncio.run(scenario())
    assert plane.stats.gaps_skipped == 1 and plane.stats.intervals_skipped > 2_500_000
    assert len(closed) < 130, len(closed)  # the empty bars before the jump are at most max_gap_bars
    after = [c for c in closed if c >= trades[10].ts_ns - 60 * NS_PER_S]
    assert after == [closed[-3], closed[-2], closed[-1]] and after[1] - after[0] == 60 * NS_PER_S
    # The features started again: their history holds only the bars after the gap.
    assert plane.features[0]._steps == 3

    short: list[int] = []
    plane = _plane(short)
    clock = SimulatedClock(plane, max_gap_bars=120)

    async def no_jump() -> None:
        for trade in _trades(0.5, 1.5, 100.5, 101.5):  # a 99-minute gap: stepped bar by bar, as live
            await clock.advance(trade.ts_ns)
            plane.on_trade(trade)

    asyncio.run(no_jump())
    assert plane.stats.gaps_skipped == 0 and short == [short[0] + i * 60 * NS_PER_S for i in range(len(short))]
    assert len(short) == 100  # minutes 1-100 (the first trade's minute is partial, never decided)


def test_a_stopped_backtest_stops_closing_at_once() -> None:
    closed: list[int] = []
    plane = _plane(closed)
    stop = {"now": False}
    clock = SimulatedClock(plane, stopped=lambda: stop["now"])

    async def scenario() -> None:
        trades = _trades(0.5, 1.5, 2.5, 5000.5)
        for trade in trades[:6]:
            await clock.advance(trade.ts_ns)
            plane.on_trade(trade)
        stop["now"] = True
        await clock.advance(trades[-1].ts_ns)  # thousands of bars due: none is closed

    asyncio.run(scenario())
    assert len(closed) == 1


def test_a_bar_closes_at_the_message_past_its_close_or_at_a_timer_and_counts_from_it() -> None:
    """No poll between the closing tick and the close; the latency counts from that tick's
    arrival (or, in a quiet market, from when the local clock reached the close time)."""

    async def main() -> tuple[list[tuple[int, float, float]], float, float, float]:
        closes: list[tuple[int, float, float]] = []

        async def on_close(start_ns: int, bars: Any, steps: Any, began: float) -> None:
            closes.append((start_ns, began, time.monotonic()))

        plane = DataPlane(["A-USD"], [PRICE], online=None, recorder=None, interval=BarInterval(1), grace_s=0.0,
                          on_close=on_close)  # fmt: skip
        runner = asyncio.create_task(plane.run())
        now = time.time_ns() // NS_PER_S * NS_PER_S
        plane.on_trade(Trade("coinbase", "A-USD", now + 1, 100.0, 1.0, "buy", "1"))  # opens the first full bar
        plane.on_trade(Trade("coinbase", "A-USD", now + NS_PER_S + 5, 101.0, 1.0, "buy", "2"))
        await asyncio.sleep(0.3)
        before = time.monotonic()
        plane.on_trade(Trade("coinbase", "A-USD", now + 2 * NS_PER_S + 7, 102.0, 1.0, "buy", "3"))  # closes it
        after = time.monotonic()
        await asyncio.sleep(0.01)
        # No message now: the next bar closes when the local clock reaches its end.
        timer_due = after + (now + 3 * NS_PER_S - (now + 2 * NS_PER_S + 7)) / NS_PER_S
        while len(closes) < 2:
            await asyncio.sleep(0.005)
        plane.stop()
        await runner
        return closes, before, after, timer_due

    closes, before, after, timer_due = asyncio.run(main())
    (first, began1, at1), (second, began2, at2) = closes[:2]
    assert second - first == NS_PER_S
    assert before <= began1 <= after  # the closing message's arrival
    assert at1 - began1 < 0.01  # closed at once, not at the next poll
    assert abs(began2 - timer_due) < 0.01  # the timer's close time, not when it was noticed
    assert 0 <= at2 - began2 < 0.05
