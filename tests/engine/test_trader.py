"""The trader follows the strategy the served price model was validated with: at start, after
a hot swap, with the user's overrides on top, and refuses overrides that do not fit."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from engine.config import BarInterval
from engine.errors import ConfigError, EngineError
from engine.trading.breaker import CircuitBreaker
from engine.trading.core import Forecasts, TradingCore
from engine.trading.execution import PaperBroker
from engine.trading.portfolio import Portfolio
from engine.trading.risk import PreTradeRisk
from engine.trading.trader import Trader
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
