"""The registry against a real BentoML model store in a temporary folder.

BentoML fixes its store at first use in a process, so the tests of one session share one
store; each test asserts only on the versions it saved.
"""

from __future__ import annotations

import pytest
import torch

from serving import registry
from serving.errors import ModelNotFoundError, PromotionError


@pytest.fixture(autouse=True)
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    return tmp_path


def _save(ic: float, passed: bool = True, fingerprint: str = "same") -> registry.ModelRecord:
    state = {"w": torch.full((2, 2), ic)}
    meta = {
        "metrics": {"ic": ic, "ridge_ic": float("nan")},
        "gates": {"ic_above_ridge": passed, "outputs_finite": True},
        "validation_fingerprint": fingerprint,
        "git_commit": "abc",
        "feature_sets": {"price": "0123456789abcdef"},
    }
    return registry.save("price", state, {"window": 16}, meta)


def test_save_and_load_round_trip() -> None:
    record = _save(0.05)
    state, config, loaded = registry.load_state(record.tag)
    assert torch.equal(state["w"], torch.full((2, 2), 0.05))
    assert config == {"window": 16}
    assert loaded.stage == "candidate"
    assert loaded.metadata["metrics"]["ridge_ic"] == "nan"  # NaN kept visible, not dropped
    assert loaded.metadata["feature_sets"]["price"] == "0123456789abcdef"


def test_promotion_gates_comparison_and_rollback() -> None:
    for r in registry.list_models("price", "production"):  # start from a store without a champion
        registry._set_stage(r.tag, "archived", promoted_at="0")
    first = _save(0.04)
    registry.promote(first.tag)
    assert registry.production("price").tag == first.tag

    failing = _save(0.09, passed=False)
    with pytest.raises(PromotionError, match="failed its gates: ic_above_ridge"):
        registry.promote(failing.tag)
    worse = _save(0.03)
    with pytest.raises(PromotionError, match=r"worse than production .* by more than the tolerance 0\.005"):
        registry.promote(worse.tag, tolerance=0.005)
    within_noise = _save(0.038)  # worse by less than the stated tolerance: noise, not a regression
    registry.promote(within_noise.tag, tolerance=0.005)
    assert registry.production("price").tag == within_noise.tag
    registry.rollback("price")
    other_data = _save(0.05, fingerprint="other")
    with pytest.raises(PromotionError, match="validated on different data"):
        registry.promote(other_data.tag)
    assert registry.production("price").tag == first.tag  # every refusal left production alone

    better = _save(0.06)
    registry.promote(better.tag)
    assert registry.production("price").tag == better.tag
    assert registry.get(first.tag).stage == "archived"
    back = registry.rollback("price")
    assert back.tag == first.tag and back.stage == "production"
    assert registry.get(better.tag).stage == "archived"
    with pytest.raises(ModelNotFoundError, match="no earlier production version"):
        registry.rollback("price")
    registry.promote(other_data.tag, champion_score=0.04)  # production re-measured on its data
    assert registry.production("price").tag == other_data.tag


def test_cli_lists_and_reports_errors(capsys) -> None:
    record = _save(0.05)
    assert registry.main(["list"]) == 0
    assert record.tag in capsys.readouterr().out
    failing = _save(0.5, passed=False)
    assert registry.main(["promote", failing.tag]) == 1
    assert f"{failing.tag} failed its gates" in capsys.readouterr().err
    assert registry.main(["show", "price:nope"]) == 1


def test_sample_models_never_replace_trained_ones_and_save_nothing_when_refused() -> None:
    from serving import sample_models

    trained = _save(0.99)
    registry.promote(trained.tag, champion_score=-1.0)  # whatever an earlier test left in production
    before = len(registry.list_models())
    with pytest.raises(PromotionError, match=f"already serves trained models \\({trained.tag}"):
        sample_models.seed()
    assert len(registry.list_models()) == before  # no sample candidate left behind
    assert registry.production("price").tag == trained.tag
