"""Models: bad input is refused before training, metrics are right, the three train and gate.

``train_all`` runs once per session on a small synthetic market with small settings, into a
model store of its own; the registry tests use that store too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_store.features.catalog import PRICE, SENTIMENT
from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market
from feature_store.training import training_set_from_bars
from serving.errors import TrainingDataError
from serving.models import common, price, risk, sentiment

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def market():
    return simulate_market(SyntheticMarketConfig(symbols=6, days=3, seed=11))


@pytest.fixture(scope="module")
def price_frame(market) -> pd.DataFrame:
    news = market.news.assign(score=market.news["label"].astype(float))[["ts_ns", "symbols", "score"]]
    return training_set_from_bars([PRICE, SENTIMENT], market.bars(), [15], news=news)


VERSIONS = {"price": PRICE.version, "sentiment": SENTIMENT.version}
SMALL_PRICE = price.PriceConfig(epochs=1, hidden=8, train_stride=4)


def test_price_refuses_nan_after_warm_up(price_frame: pd.DataFrame) -> None:
    bad = price_frame.copy()
    bad.loc[bad.index[len(bad) // 2], "resid_ret_1_z"] = np.nan
    with pytest.raises(TrainingDataError, match=r"NaN or infinite values in \{'resid_ret_1_z': 1\}"):
        price.train(price.PriceData(bad, VERSIONS), SMALL_PRICE)


def test_price_refuses_constant_columns_and_too_few_rows(price_frame: pd.DataFrame) -> None:
    with pytest.raises(TrainingDataError, match=r"constant column\(s\) \['imbalance_15'\]"):
        price.train(price.PriceData(price_frame.assign(imbalance_15=1.0), VERSIONS), SMALL_PRICE)
    tiny = price_frame[price_frame["ts_ns"] < price_frame["ts_ns"].min() + 800 * 60 * 10**9]
    with pytest.raises(TrainingDataError, match="too few rows"):
        price.train(price.PriceData(tiny, VERSIONS), SMALL_PRICE)


def test_price_refuses_another_feature_set_version(price_frame: pd.DataFrame) -> None:
    with pytest.raises(TrainingDataError, match=r"feature set 'price' is version 0000000000000000, but this code"):
        price.train(price.PriceData(price_frame, {**VERSIONS, "price": "0" * 16}), SMALL_PRICE)
    with pytest.raises(TrainingDataError, match="come from no feature set"):
        price.train(price.PriceData(price_frame, {"price": PRICE.version}), SMALL_PRICE)


def test_a_price_model_with_nan_outputs_fails_its_gate(price_frame: pd.DataFrame) -> None:
    result = price.train(price.PriceData(price_frame, VERSIONS), SMALL_PRICE)
    assert price.gates(result.metrics)["outputs_finite"]
    scored = result.holdout.copy()
    scored.loc[scored.index[0], "forecast"] = np.nan
    assert not price.gates(price.evaluate(scored, SMALL_PRICE))["outputs_finite"]
    # The uncertainty is a real spread: positive, and it covers a plausible share of outcomes.
    assert (result.holdout["forecast_std"] > 0).all()
    assert 0.4 < result.metrics["coverage_1sd"] < 0.95


def test_price_config_round_trips_and_lists_every_input() -> None:
    config = price.PriceConfig(signal_features=("ret_1_z",), context_features=("tod_cos",))
    assert config.features == ("ret_1_z", "tod_cos", "rvol_60")  # the scale column travels with the window
    assert price.PriceConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match=r"both signal and context"):
        price.PriceConfig(signal_features=("tod_cos",), context_features=("tod_cos",))


def test_the_var_quantile_uses_only_the_past() -> None:
    rng = np.random.default_rng(4)
    r = rng.standard_t(4, 3000) * 0.01
    sigma = np.full(3000, 0.01)
    q = risk.rolling_quantile(r, sigma, -9.0, (250, 1000))
    assert (q[:250] == -9.0).all() and q[250] != -9.0  # the training fallback until the short window is full
    shocked = r.copy()
    shocked[2000] = -1.0
    q2 = risk.rolling_quantile(shocked, sigma, -9.0, (250, 1000))
    assert np.array_equal(q[:2000], q2[:2000])  # a return cannot move the VaR quoted before it
    assert q2[2000] < q[2000] or q2[2001] < q[2001]


def test_walk_forward_folds_are_embargoed_and_ordered() -> None:
    times = np.arange(1000)
    splits = common.walk_forward_splits(times, 3, test_share=0.3, embargo=15)
    assert len(splits) == 3
    for s in splits:
        assert s.train_end + 15 <= s.test_start + 0  # embargo between train and test
        assert s.train_start == 0
    assert [s.test_start for s in splits] == sorted(s.test_start for s in splits)
    assert splits[-1].test_end == 1000


def test_ic_and_long_short_on_a_known_signal() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for t in range(200):
        realized = rng.normal(size=10)
        rows += [(t, f"S{i}", realized[i], realized[i]) for i in range(10)]
    frame = pd.DataFrame(rows, columns=["ts_ns", "symbol", "forecast", "realized"])
    metrics = common.signal_metrics(frame, "forecast", "realized", horizon=1, interval_s=60, fee_bps=0.0)
    assert metrics["ic"] == pytest.approx(1.0)
    assert metrics["rank_ic"] == pytest.approx(1.0)
    assert metrics["hit_rate"] == 1.0
    assert metrics["ls_total_return"] > 0 and metrics["ls_max_drawdown"] == 0.0
    flipped = frame.assign(forecast=-frame["forecast"])
    assert common.signal_metrics(flipped, "forecast", "realized", horizon=1, interval_s=60)["ic"] == pytest.approx(-1)


def test_kupiec_and_christoffersen() -> None:
    rng = np.random.default_rng(1)
    calibrated = rng.random(5000) < 0.01
    assert risk.kupiec(calibrated) > 0.05
    assert risk.kupiec(rng.random(5000) < 0.03) < 0.001
    clustered = np.zeros(5000, dtype=bool)
    clustered[1000:1050] = True  # 1% of days, all in one run
    assert risk.christoffersen(clustered) < 0.001
    assert risk.christoffersen(calibrated) > 0.01
    assert risk.pinball(np.array([0.0, -1.0]), np.array([-0.5, -0.5]), 0.01) == pytest.approx(
        (0.01 * 0.5 + 0.99 * 0.5) / 2
    )


def test_risk_refuses_bad_returns() -> None:
    frame = pd.DataFrame(
        {"symbol": "A", "ts_ns": np.arange(1000), "ret": np.random.default_rng(2).normal(0, 0.01, 1000)}
    )
    with pytest.raises(TrainingDataError, match="NaN or infinite"):
        risk.train(frame.assign(ret=frame["ret"].where(frame.index != 5)))
    with pytest.raises(TrainingDataError, match=r"constant column\(s\) \[.ret.\]"):
        risk.train(frame.assign(ret=0.001))
    with pytest.raises(TrainingDataError, match="too few rows"):
        risk.train(frame.head(50))


def test_portfolio_var_scales_and_stress_names() -> None:
    rng = np.random.default_rng(3)
    history = pd.DataFrame(rng.normal(0, 0.01, (500, 3)), columns=["A", "B", "C"])
    vol = {"A": 0.01, "B": 0.02, "C": 0.01}
    one = risk.portfolio_risk({"A": 1000.0, "B": -500.0}, vol, history)
    two = risk.portfolio_risk({"A": 2000.0, "B": -1000.0}, vol, history)
    assert two.var99 == pytest.approx(2 * one.var99)
    assert one.es975 > 0 and one.var99 > 0
    assert {"worst_period_1", "market_-3sd", "market_-5sd"} <= set(one.stress)
    with pytest.raises(ValueError, match=r"\['Z'\]"):
        risk.portfolio_risk({"Z": 1.0}, vol, history)


def test_labelled_csv_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("headline,label\nGood news,positive\nBad news,maybe\n")
    with pytest.raises(TrainingDataError, match="line 3: label 'maybe'"):
        sentiment.read_labelled_csv(path)
    path.write_text("title,label\nx,1\n")
    with pytest.raises(TrainingDataError, match="need a 'headline'"):
        sentiment.read_labelled_csv(path)
    with pytest.raises(TrainingDataError, match="too few rows"):
        sentiment.train(sentiment.SentimentData(("a", "b", "c"), (1, 0, -1)))


def test_the_unseen_headlines_use_none_of_the_generator_templates() -> None:
    from feature_store.sources.headlines import TEMPLATES

    data = sentiment.read_unseen()
    assert len(data.texts) >= 60 and sorted(set(data.labels)) == [-1, 0, 1]
    stems = {t.split("{")[0].strip().lower() for group in TEMPLATES.values() for t in group}
    verbs = {"surges", "rallies", "plunges", "slides", "tumbles", "sinks", "soar", "schedules"}
    for text in data.texts:
        assert not any(v in text.lower().split() for v in verbs), text
        assert not any(s and text.lower().startswith(s) for s in stems), text


@pytest.mark.slow
def test_all_three_pass_their_gates_on_the_default_data(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    home = tmp_path_factory.mktemp("bentoml")
    monkeypatch.setenv("BENTOML_HOME", str(home))
    from serving import registry
    from serving.training import SMALL, train_all

    market = simulate_market(SyntheticMarketConfig())  # the default data: 20 symbols x 30 days
    reports = train_all(market, SMALL)
    for report in reports.values():
        failed = [g for g, ok in report.gates.items() if not ok]
        assert not failed, f"{report.name} failed {failed}: {report.metrics}"
        assert report.promoted, report.refused
    s, p, r = reports["sentiment"], reports["price"], reports["risk"]
    assert s.metrics["holdout_macro_f1"] >= 0.9
    assert s.metrics["unseen_macro_f1"] >= s.metrics["lexicon_unseen_macro_f1"] + 0.15
    assert p.metrics["ic"] > p.metrics["ridge_ic"] and p.metrics["ic"] >= 0.7 * p.metrics["oracle_ic"] > 0
    assert p.metrics["ls_total_return"] > p.metrics["ridge_ls_total_return"]
    for index in ("SP500", "NASDAQ"):
        assert r.metrics[f"{index}_kupiec_p"] >= 0.05
        assert r.metrics[f"{index}_pinball"] < r.metrics[f"{index}_ewma_pinball"]
    # Every model is in the store with its provenance, as production.
    for report in reports.values():
        record = registry.get(report.tag)
        assert record.metadata["git_commit"]
        assert record.stage == "production"
        state, config, _ = registry.load_state(report.tag)
        assert state and config


@pytest.mark.parametrize("architecture", price.ARCHITECTURES)
def test_every_encoder_forecasts_finite_values_of_the_right_shape(architecture: str) -> None:
    config = price.PriceConfig(architecture=architecture, window=8)
    model = price.build_model(config)
    windows = np.random.default_rng(5).normal(size=(32, 8, len(config.features))).astype(np.float32)
    mu, sd = price.predict(model, windows)
    assert mu.shape == sd.shape == (32,)
    assert np.isfinite(mu).all() and (sd > 0).all()
    with pytest.raises(ValueError, match=r"shape \(N, W, F\)"):
        price.predict(model, windows[0])
