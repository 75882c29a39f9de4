"""Feature math declarations: canonical keys, lookbacks, versions and refusals."""

from __future__ import annotations

import pytest

from feature_store.errors import UnknownFeatureError
from feature_store.features import FEATURE_SETS, PRICE, Feature, FeatureSet, feature_set
from feature_store.features.expressions import col, ewm, lag, log, rolling_sum


def test_the_same_math_written_twice_has_the_same_key() -> None:
    a = log(col("close")) - lag(log(col("close")), 5)
    b = log(col("close")) - lag(log(col("close")), 5)
    assert a.key == b.key == "sub(log(close),lag(log(close),5))"


def test_lookback_adds_up_along_the_tree() -> None:
    ret_1 = log(col("close")) - lag(log(col("close")), 1)
    assert rolling_sum(ret_1, 30).lookback == 30
    assert ewm(rolling_sum(ret_1, 30), 0.2).lookback == 30 + 8


def test_a_feature_cannot_look_ahead() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        lag(col("close"), -1)
    with pytest.raises(ValueError, match=">= 1"):
        lag(col("close"), 0)


def test_unknown_inputs_and_non_finite_constants_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown input 'price'"):
        col("price")
    with pytest.raises(TypeError, match="finite number"):
        col("close") * float("nan")


def test_version_is_stable_and_changes_with_the_math_or_interval() -> None:
    one = FeatureSet("demo", (Feature("ret_1", log(col("close")) - lag(log(col("close")), 1), "r"),))
    same = FeatureSet("demo", (Feature("ret_1", log(col("close")) - lag(log(col("close")), 1), "other words"),))
    other = FeatureSet("demo", (Feature("ret_1", log(col("close")) - lag(log(col("close")), 2), "r"),))
    assert one.version == same.version
    assert one.version != other.version
    assert one.version != one.with_interval(1).version
    assert len(one.version) == 16


def test_registered_sets_have_their_models_features() -> None:
    assert set(FEATURE_SETS) == {"price", "price_ohlcv", "risk", "sentiment"}
    assert PRICE.lookback == 719  # trade_rate_30_720: 720 bars of trade counts
    # OHLCV-only: nothing reads trade counts, taker volume, VWAP or news, and the lookback stays short.
    ohlcv = FEATURE_SETS["price_ohlcv"]
    inputs = {n.params[0] for f in ohlcv.features for n in f.expr.nodes() if n.op == "col"}
    assert inputs <= {"open", "high", "low", "close", "volume", "day_angle"}, inputs
    assert ohlcv.lookback <= 80
    assert "imbalance_ewm_10" in PRICE.names
    assert feature_set("risk").names[0] == "ret_1"


def test_unknown_sets_and_feature_names_are_clear_errors() -> None:
    with pytest.raises(UnknownFeatureError, match="unknown feature set 'prices'"):
        feature_set("prices")
    with pytest.raises(UnknownFeatureError, match=r"no feature\(s\) \['ret_2'\]"):
        PRICE.index(["ret_1", "ret_2"])


def test_a_set_refuses_a_feature_declared_twice() -> None:
    f = Feature("x", col("close"), "x")
    with pytest.raises(ValueError, match="declares 'x' twice"):
        FeatureSet("dup", (f, f))
