"""The service's logic without HTTP: input guards, risk computations and the swap rules."""

from __future__ import annotations

import numpy as np
import pytest

from serving import registry, runtime
from serving.errors import BadInputError, FeatureSkewError, ModelUnavailableError, StaleInputError
from serving.models import price, risk


def _served(name: str, model, config, feature_sets=None, tag: str = "x:1") -> runtime.Served:
    return runtime.Served(name, tag, tag.split(":")[1], model, config, "cpu", feature_sets or {}, {})


@pytest.fixture(scope="module")
def price_served() -> runtime.Served:
    config = price.PriceConfig()
    return _served("price", price.build_model(config).eval(), config, {"price": "a", "sentiment": "b"}, "price:1")


def test_window_guards_name_the_problem(price_served) -> None:
    good = np.full((2, 16, 12), 0.1, np.float32)
    assert runtime.check_windows(price_served, good, None).shape == (2, 16, 12)
    with pytest.raises(BadInputError, match=r"shape \(N, 16, 12\)"):
        runtime.check_windows(price_served, np.zeros((2, 15, 12)), None)
    bad = good.copy()
    bad[1, 0, 0] = np.inf
    with pytest.raises(BadInputError, match=r"window indexes \[1\]"):
        runtime.check_windows(price_served, bad, None)
    with pytest.raises(FeatureSkewError, match="columns"):
        runtime.check_windows(price_served, good, list(reversed(price_served.config.features)))
    with pytest.raises(FeatureSkewError, match="'price': 'z'"):
        runtime.check_versions(price_served, {"price": "z"})
    runtime.check_versions(price_served, {"price": "a"})  # a subset that agrees is fine
    with pytest.raises(FeatureSkewError, match="say which feature-set versions"):
        runtime.forecast_windows(price_served, good, {})


def test_gru_inference_path_matches_the_fused_kernel(price_served) -> None:
    import torch

    model = price_served.model
    x = torch.randn(64, 16, 12)
    with torch.inference_mode():
        fast = model(x)
    with torch.no_grad(), torch.enable_grad():
        fused = model(x)
    torch.testing.assert_close(fast[0], fused[0].detach(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fast[1], fused[1].detach(), rtol=1e-5, atol=1e-7)


def test_symbol_risk_matches_the_model_over_the_whole_series() -> None:
    config = risk.RiskConfig()
    served = _served("risk", risk.build_model(config).eval(), config, tag="risk:1")
    rng = np.random.default_rng(1)
    history = {"A": rng.standard_normal(120) * 0.01, "B": rng.standard_normal(400) * 0.03}
    out = runtime.symbol_risk(served, history)
    for i, symbol in enumerate(out.symbols):
        path = risk.predict(served.model, history[symbol], config)
        assert out.volatility[i] == pytest.approx(path.volatility[-1], rel=1e-5)
        assert out.var99[i] == pytest.approx(path.var99[-1], rel=1e-5)
        assert out.es975[i] == pytest.approx(path.es975[-1], rel=1e-5)
    with pytest.raises(StaleInputError, match="at least"):
        runtime.symbol_risk(served, {"A": [0.01, 0.02]})
    with pytest.raises(BadInputError, match="NaN"):
        runtime.symbol_risk(served, {"A": [0.01] * 10 + [float("nan")]})
    with pytest.raises(BadInputError, match="positions of"):
        runtime.portfolio_risk(served, {"A": float("inf")}, history)


def test_slots_swap_whole_versions_and_keep_the_old_one_when_a_load_fails(monkeypatch) -> None:
    production = {"price": "price:1", "sentiment": "sentiment:1", "risk": "risk:1"}

    def fake_production(name: str) -> registry.ModelRecord:
        return registry.ModelRecord(
            production[name], name, production[name].split(":")[1], "production", "", {}, None, {}
        )  # type: ignore[arg-type]

    def loader(record: registry.ModelRecord, device: str) -> runtime.Served:
        if record.version == "broken":
            raise RuntimeError("weights do not fit")
        return _served(record.name, object(), None, tag=record.tag)

    monkeypatch.setattr(registry, "production", fake_production)
    swaps: list[tuple[str, str | None, str]] = []
    slots = runtime.ModelSlots("cpu", loader=loader, on_swap=lambda *a: swaps.append(a))
    with pytest.raises(ModelUnavailableError, match="promote one"):
        slots.get("price")
    assert sorted(slots.refresh()) == ["price", "risk", "sentiment"] and slots.ready
    assert slots.refresh() == []  # nothing new
    production["price"] = "price:2"
    assert slots.refresh() == ["price"] and slots.get("price").tag == "price:2"
    assert swaps[-1] == ("price", "price:1", "price:2")
    production["price"] = "price:broken"
    assert slots.refresh() == []
    assert slots.get("price").tag == "price:2" and "price:broken" in (slots.last_error or "")


def test_a_model_of_another_bar_length_and_calendar_reads_that_interval_s_features() -> None:
    from feature_store.features.catalog import resolve

    config = price.PriceConfig(
        interval_s=3600,
        calendar="XNYS",
        signal_features=("ret_1_z", "macd_hist"),
        context_features=("vol_ratio_15_60", "range_z_30"),
    )
    hourly = resolve("price_ohlcv", 3600, "XNYS")
    served = runtime.Served(
        "price", "price:hourly", "hourly", price.build_model(config), config, "cpu", {hourly.name: hourly.version},
        {"interval_s": 3600, "calendar": "XNYS"},
    )  # fmt: skip
    plan = runtime._make_plan(served)
    assert [(fs.name, fs.interval_s, fs.calendar, fs.version) for fs in plan.sets] == [
        ("price_ohlcv", 3600, "XNYS", hourly.version)
    ]
    one_minute = runtime.Served(
        "price", "price:m", "m", served.model, config, "cpu", {hourly.name: hourly.version}, {"interval_s": 60}
    )
    with pytest.raises(FeatureSkewError, match="this platform computes version"):
        runtime._make_plan(one_minute)
