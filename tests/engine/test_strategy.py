"""Portfolio construction as plain functions, no event loop: neutrality, caps, the no-trade band,
risk scaling, holding, per-symbol hysteresis, parameters from JSON, and a hot swap."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import numpy as np
import pytest

from engine.trading.core import Forecasts, TradingCore
from engine.trading.execution import PaperBroker, PaperCosts
from engine.trading.portfolio import Portfolio
from engine.trading.risk import PreTradeRisk
from engine.trading.strategy import StrategyParams, target_weights
from feature_store.records import Trade

S = 10**9


def _views(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 0.001, n), rng.uniform(0.002, 0.004, n)


def test_cross_sectional_book_is_dollar_neutral_at_its_gross_and_ranks_by_risk_adjusted_view() -> None:
    mean, sd = _views(20)
    params = StrategyParams(gross=0.4, cap=0.5)
    out = target_weights(mean, sd, np.zeros(20), params)
    assert out.weights.sum() == pytest.approx(0.0, abs=1e-12)
    assert np.abs(out.weights).sum() == pytest.approx(0.4)
    z = mean / sd
    assert np.argmax(out.weights) == np.argmax(z) and np.argmin(out.weights) == np.argmin(z)
    # Ranks, not values: a forecast ten times larger changes nothing but its own rank.
    bigger = mean.copy()
    bigger[np.argmax(z)] *= 10
    assert np.array_equal(target_weights(bigger, sd, np.zeros(20), params).weights, out.weights)


def test_cross_sectional_caps_each_symbol_and_ties_share_a_rank() -> None:
    mean = np.array([0.003, 0.002, 0.002, -0.001, -0.004, np.nan])
    sd = np.full(6, 0.002)
    out = target_weights(mean, sd, np.zeros(6), StrategyParams(gross=1.0, cap=0.2))
    assert np.abs(out.weights).max() == pytest.approx(0.2)
    assert out.weights[1] == out.weights[2]  # tied forecasts, tied weights
    assert out.weights[5] == 0.0  # no view, no position
    assert out.weights.sum() == pytest.approx(0.0, abs=1e-12)  # symmetric caps keep it neutral


def test_no_trade_band_holds_what_is_close_enough_and_trades_the_rest() -> None:
    mean, sd = _views(10)
    params = StrategyParams(gross=0.5, cap=0.5)
    raw = target_weights(mean, sd, np.zeros(10), params).raw
    held = raw + np.where(np.arange(10) % 2 == 0, 0.01, 0.05)
    out = target_weights(mean, sd, held, StrategyParams(gross=0.5, cap=0.5, band=0.02))
    assert np.array_equal(out.in_band, np.arange(10) % 2 == 0)
    assert np.array_equal(out.weights[out.in_band], held[out.in_band])
    assert np.allclose(out.weights[~out.in_band], raw[~out.in_band])


def test_holding_moves_a_fraction_of_the_way_each_bar() -> None:
    mean, sd = _views(8)
    params = StrategyParams(gross=0.4, cap=0.4, holding=4)
    held = np.zeros(8)
    raw = target_weights(mean, sd, held, params).raw
    for bar in range(1, 4):
        held = target_weights(mean, sd, held, params).weights
        assert np.allclose(held, raw * (1 - 0.75**bar))


def test_risk_model_scale_shrinks_every_target() -> None:
    mean, sd = _views(12)
    full = target_weights(mean, sd, np.zeros(12), StrategyParams()).weights
    half = target_weights(mean, sd, np.zeros(12), StrategyParams(), var_scale=0.5).weights
    assert np.allclose(half, full / 2) and np.abs(full).sum() > 0


def test_per_symbol_book_enters_above_entry_and_keeps_its_side_until_exit() -> None:
    params = StrategyParams(family="per_symbol", cap=0.1, entry_z=1.0, exit_z=0.3)
    sd = np.full(4, 0.01)
    flat = np.zeros(4)
    z = np.array([1.2, 0.5, -1.5, 0.0])
    out = target_weights(z * sd, sd, flat, params).weights
    assert out.tolist() == [0.1, 0.0, -0.1, 0.0]
    # Held: the view weakens but stays above exit on its side -> kept; below exit -> closed; flips -> reversed.
    held = np.array([0.1, 0.1, -0.1, 0.1])
    z = np.array([0.5, 0.2, -0.4, -1.1])
    out = target_weights(z * sd, sd, held, params).weights
    assert out.tolist() == [0.1, 0.0, -0.1, -0.1]


def test_parameters_travel_as_json_and_bad_ones_are_named() -> None:
    params = StrategyParams(family="per_symbol", entry_z=0.4, exit_z=0.1, holding=30, band=0.005, origin="price:x")
    assert StrategyParams.from_json(json.loads(json.dumps(params.to_json()))) == params
    for bad, name in (
        ({"family": "momentum"}, "family"),
        ({"holding": 2.5}, "holding"),
        ({"band": -1}, "band"),
        ({"entry_z": 0.1, "exit_z": 0.2}, "exit_z"),
        ({"gross": "lots"}, "gross"),
        ({"leverage": 3}, "leverage"),
        ({"cap": float("nan")}, "cap"),
    ):
        with pytest.raises(ValueError, match=name):
            StrategyParams.from_json(bad)


def test_fuzzed_parameter_json_is_accepted_or_refused_with_a_value_error() -> None:
    rng = random.Random(11)
    base = StrategyParams().to_json()
    values = [None, True, -1, 0, 0.5, 1e9, float("inf"), "x", [], {}, 3, "limit", "per_symbol"]
    accepted = refused = 0
    for _ in range(5_000):
        data = dict(base)
        for key in rng.sample(sorted(base), rng.randint(1, 4)):
            data[key] = rng.choice(values)
        if rng.random() < 0.1:
            data[f"extra{rng.randint(0, 9)}"] = 1
        try:
            params = StrategyParams.from_json(data)
        except ValueError as exc:
            refused += 1
            assert str(exc)  # says what was wrong
        else:
            accepted += 1
            assert StrategyParams.from_json(params.to_json()) == params
    assert accepted > 100 and refused > 100


def test_a_hot_swap_changes_the_parameters_the_next_decision_uses() -> None:
    symbols = ["A-USD", "B-USD", "C-USD", "D-USD"]
    core = TradingCore(
        "swap", Portfolio(Decimal(1_000_000)), PaperBroker(PaperCosts()), PreTradeRisk(), StrategyParams(gross=0.1)
    )
    for i, s in enumerate(symbols):
        core.on_trade(Trade("paper", s, 59 * S, 100.0 + i, 1.0, "buy", str(i)))
    closes = {s: 100.0 + i for i, s in enumerate(symbols)}

    def forecasts(bar: int) -> Forecasts:
        mean = np.array([0.002, 0.001, -0.001, -0.002])
        return Forecasts(symbols, mean, np.full(4, 0.01), [bar] * 4, {"price": "price:v1"}, {}, 15)

    first = core.decide(0, closes, forecasts(0), 60 * S + 1)
    assert {o.symbol for o in first} == set(symbols)
    assert core.set_params(StrategyParams(gross=0.1, band=0.5, origin="price:v2"))
    assert not core.set_params(StrategyParams(gross=0.1, band=0.5, origin="price:v2"))  # the same: no change
    second = core.decide(60 * S, closes, forecasts(60 * S), 120 * S + 1)
    assert second == [] and core.stats.holds_by_reason["inside_band"] == 4
    assert core.stats.params_changes == 1
