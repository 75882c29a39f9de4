"""The three models: candidates trained and gated, then promoted to production.

Each ``*_model_candidate`` trains on its training set, is saved in the model store as a
candidate with its metrics, and carries a blocking ``*_model_gates`` check: the model's own
gates (baselines, oracle share, VaR coverage) plus ``not_worse_than_production``, measured on
the same data (the production price model is re-scored on the candidate's holdout when
the two were validated on different data). ``*_model_production`` promotes the candidate and
only runs when the check passed; a failed gate leaves production unchanged.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

import json
from collections.abc import Iterator
from typing import Any

import dagster as dg

from orchestration.assets.common import settings
from orchestration.assets.training_sets import lake_path_scores, training_path
from orchestration.resources import ModelStoreResource, PostgresResource

GROUP = "models"
MODELS = ("sentiment", "price", "risk")


def candidate_file(name: str) -> Any:
    """``$RRR_HOME/lake/models/<name>_candidate.json``: the candidate's tag and the champion's score."""
    return settings().lake / "models" / f"{name}_candidate.json"


def validation_file(name: str) -> Any:
    """``$RRR_HOME/lake/models/<name>_validation.parquet``: what the validation report plots."""
    return settings().lake / "models" / f"{name}_validation.parquet"


def _train_settings() -> Any:
    from serving.training import FULL, SMALL

    return SMALL if settings().train == "small" else FULL


def _data_id(frame: Any, time: str = "ts_ns") -> dict[str, Any]:
    from serving.training import data_identity

    s = settings()
    details: dict[str, Any] = {
        "first_ns": int(frame[time].min()),
        "last_ns": int(frame[time].max()),
        "rows": len(frame),
    }
    if s.source == "synthetic":
        details.update(symbols=s.synthetic_symbols, days=s.synthetic_days, seed=s.synthetic_seed)
    return data_identity(s.source, **details)


def tolerance(name: str, metrics: dict[str, float], champion_score: float | None) -> tuple[float, str]:
    """How far below production a candidate may score and still count as not worse, and why.

    Noise alone must never block: price, 1.645 Newey-West standard errors of the candidate's
    holdout IC (a one-sided 5% test); sentiment, 0.01 macro-F1 on the unseen phrasings;
    risk, 1% of production's index pinball loss.
    """
    if name == "price":
        se = metrics.get("ic_se", float("nan"))
        tol = 1.645 * se if se == se else 0.0
        return tol, f"1.645 Newey-West standard errors of the holdout IC ({tol:.4g})"
    if name == "sentiment":
        return 0.01, "0.01 macro-F1"
    tol = 0.01 * abs(champion_score) if champion_score is not None else 0.0
    return tol, f"1% of production's pinball loss ({tol:.4g})"


def gate_check(
    name: str,
    report: Any,
    registry: Any,
    champion_score: float | None,
    note: str = "",
    *,
    figures: dict[str, str] | None = None,
) -> tuple[dg.AssetCheckResult, dict[str, Any]]:
    """The candidate's gates plus ``not_worse_than_production`` (within :func:`tolerance`), as a check result.

    ``figures`` gives each gate's figure and threshold for the gate table.
    """
    from orchestration.plots import markdown_table

    metric, higher = registry.PRIMARY_METRIC[name]
    score = float(report.metrics.get(metric, float("nan")))
    gates = dict(report.gates)
    figures = dict(figures or {})
    current = registry.list_models(name, "production")
    champion = current[0].tag if current else None
    if champion is not None and champion_score is None:
        champion_score = current[0].metadata.get("metrics", {}).get(metric)
    tol, tol_text = tolerance(name, report.metrics, champion_score)
    if champion is not None and champion_score is not None:
        worse = score < champion_score - tol if higher else score > champion_score + tol
        gates["not_worse_than_production"] = not worse
        figures["not_worse_than_production"] = (
            f"{metric} {score:.4g} vs production {champion_score:.4g}, tolerance {tol_text}"
        )
    rows = [{"gate": g, "result": "pass" if ok else "FAIL", "figure": figures.get(g, "")} for g, ok in gates.items()]
    metadata = {
        "candidate": report.tag,
        "gates": dg.MetadataValue.md(markdown_table(rows)),
        "failed_gates": dg.MetadataValue.json([g for g, ok in gates.items() if not ok]),
        f"candidate_{metric}": score,
        "production": champion or "none",
    }
    if champion_score is not None:
        metadata[f"production_{metric}"] = float(champion_score)
    if note:
        metadata["note"] = note
    for gate, ok in gates.items():
        if not ok and gate in figures:
            metadata[gate] = figures[gate]
    candidate = {
        "tag": report.tag,
        "champion": champion,
        "champion_score": champion_score,
        "tolerance": tol,
        "gates": gates,
    }
    result = dg.AssetCheckResult(
        asset_key=f"{name}_model_candidate",
        check_name=f"{name}_model_gates",
        passed=all(gates.values()) and bool(gates),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )
    return result, candidate


def _write_candidate(name: str, candidate: dict[str, Any]) -> None:
    path = candidate_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(candidate, default=float))
    tmp.replace(path)


def _candidate_metadata(report: Any) -> dict[str, Any]:
    keep = {k: float(v) for k, v in report.metrics.items() if isinstance(v, int | float)}
    return {
        "tag": report.tag,
        "train_seconds": round(report.train_seconds, 2),
        "metrics": dg.MetadataValue.json(keep),
    }


def _gates_spec(name: str, blocking: bool = True) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        f"{name}_model_gates",
        asset=f"{name}_model_candidate",
        blocking=blocking,
        description=f"The {name} model's promotion gates, including not worse than production.",
    )


def scores_file(kind: str) -> Any:
    """``$RRR_HOME/lake/models/sentiment_<kind>_scores.parquet``: every stored headline scored by the candidate."""
    return settings().lake / "models" / f"sentiment_{kind}_scores.parquet"


@dg.asset(
    group_name=GROUP,
    deps=["sentiment_training_set", "bars"],
    kinds={"pytorch"},
    # Not blocking: the news scores (and through them the price model) must not wait on this
    # model's gates. ``sentiment_model_production`` refuses a candidate that failed them.
    check_specs=[_gates_spec("sentiment", blocking=False)],
)
def sentiment_model_candidate(
    context: dg.AssetExecutionContext, postgres: PostgresResource, model_store: ModelStoreResource
) -> Iterator[Any]:
    """MiniLM headline classifier trained on labelled news, saved as a candidate in the model store
    (nothing to train when the source has no labelled headlines: it says so)."""
    import pandas as pd

    from orchestration import lake
    from orchestration.assets.training_sets import stored_bars
    from serving.training import train_sentiment

    registry = model_store.registry()
    news = lake.read_frame(training_path("sentiment"))
    if news.empty:
        why = "no labelled headlines in the partitions' days: no sentiment model to train"
        context.log.warning(why)
        _write_candidate("sentiment", {"tag": None, "why": why, "gates": {"has_labelled_headlines": False}})
        yield dg.MaterializeResult(metadata={"tag": "none", "note": why})
        yield dg.AssetCheckResult(
            asset_key="sentiment_model_candidate",
            check_name="sentiment_model_gates",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"failed_gates": dg.MetadataValue.json(["has_labelled_headlines"]), "note": why},
        )
        return
    bars = postgres.run(stored_bars)
    report, scored = train_sentiment(
        news, _train_settings().sentiment, bars, data_id=_data_id(news), calendar=settings().calendar
    )
    lake.write_frame(scores_file("candidate"), scored)
    lake.write_frame(validation_file("sentiment"), pd.DataFrame([report.metrics]))
    context.log.info(f"sentiment candidate {report.tag}: {report.metrics}")
    yield dg.MaterializeResult(metadata=_candidate_metadata(report))
    result, candidate = gate_check("sentiment", report, registry, None)
    _write_candidate("sentiment", candidate)
    yield result


@dg.asset(group_name=GROUP, deps=["sentiment_model_candidate", "news"], kinds={"parquet"})
def news_sentiment_scores(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Every stored headline scored in [-1, 1] by the sentiment model that will serve: the candidate
    when it passed its gates; otherwise none (the price model then trains without news features,
    as the service will have no news scores it could trust)."""
    import pandas as pd

    from orchestration import lake

    candidate = json.loads(candidate_file("sentiment").read_text())
    failed = [g for g, ok in candidate.get("gates", {}).items() if not ok]
    if candidate.get("tag") and not failed:
        scored = lake.read_frame(scores_file("candidate"))
        why = f"scored by the sentiment candidate {candidate['tag']}"
    else:
        scored = pd.DataFrame({"ts_ns": pd.Series(dtype="int64"), "symbols": [], "score": []})
        why = candidate.get("why") or f"the sentiment candidate failed {', '.join(failed)}: no news scores"
        context.log.warning(f"{why}; the price model trains without news features")
    lake.write_frame(lake_path_scores(), scored)
    return dg.MaterializeResult(metadata={"rows": len(scored), "note": why})


@dg.asset(
    group_name=GROUP,
    deps=["price_training_set", "trades"],
    kinds={"pytorch"},
    check_specs=[_gates_spec("price")],
)
def price_model_candidate(
    context: dg.AssetExecutionContext, postgres: PostgresResource, model_store: ModelStoreResource
) -> Iterator[Any]:
    """Forward-return forecaster over the plan's horizon (varying-coefficient model with a GRU encoder)
    and the strategy fitted to it on the validation fold, saved as a candidate."""
    from orchestration import lake
    from orchestration.assets.common import PipelinePlan
    from orchestration.assets.strategy import fit_price_strategy
    from serving.models.price import gate_figures
    from serving.training import price_config_for, train_price

    registry = model_store.registry()
    plan = PipelinePlan.read()
    frame = lake.read_frame(training_path("price"))
    versions = json.loads((settings().lake / "training" / "price_versions.json").read_text())
    config, left_out = price_config_for(
        frame,
        _train_settings().price,
        price_set=plan.price_set,
        interval_s=plan.interval_s,
        calendar=plan.calendar,
        horizon=plan.horizon_bars,
    )
    for name, why in left_out.items():
        context.log.info(f"price input {name} left out: {why}")
    notes = {"plan": list(plan.why), "inputs_left_out": left_out, "news": "sentiment" in versions}
    report, result = train_price(frame, config, data_id=_data_id(frame), versions=versions, notes=notes)
    lake.write_frame(validation_file("price"), result.holdout)
    context.log.info(f"price candidate {report.tag}: IC {report.metrics['ic']:.4f}")
    fit = fit_price_strategy(postgres, result.validation, config, report.tag)
    registry.annotate(
        report.tag,
        {"strategy": fit.params.to_json(), "strategy_validation": fit.metrics, "interval_s": config.interval_s},
    )
    if not fit.screened.empty:
        lake.write_frame(settings().lake / "models" / "price_strategy_screen.parquet", fit.screened)
        lake.write_frame(settings().lake / "models" / "price_strategy_confirmed.parquet", fit.confirmed)
    context.log.info(f"price strategy fitted on the validation fold: {fit.params.describe()}")
    metadata = _candidate_metadata(report)
    metadata["strategy"] = fit.params.describe()
    metadata["inputs"] = dg.MetadataValue.json({"signal": config.signal_features, "context": config.context_features})
    metadata["feature_sets"] = dg.MetadataValue.json(versions)
    metadata["interval_s"] = config.interval_s
    metadata["calendar"] = config.calendar
    metadata["forecasts"] = "cross-sectional" if config.cross_sectional else "per symbol"
    if left_out:
        metadata["inputs_left_out"] = dg.MetadataValue.json(left_out)
    if fit.metrics:
        metadata["validation_strategy_sharpe"] = float(fit.metrics.get("sharpe", float("nan")))
    yield dg.MaterializeResult(asset_key="price_model_candidate", metadata=metadata)
    champion_score, note = _price_champion_score(registry, report.tag, frame)
    check, candidate = gate_check("price", report, registry, champion_score, note, figures=gate_figures(report.metrics))
    _write_candidate("price", candidate)
    yield check


def _price_champion_score(registry: Any, tag: str, frame: Any) -> tuple[float | None, str]:
    """Production's IC on the candidate's holdout, when the two were validated on different data."""
    current = registry.list_models("price", "production")
    if not current:
        return None, "no production model yet"
    champion, candidate = current[0], registry.get(tag)
    if champion.metadata.get("validation_fingerprint") == candidate.metadata.get("validation_fingerprint"):
        return None, "production was validated on the same data"
    if champion.metadata.get("feature_sets") != candidate.metadata.get("feature_sets"):
        return float("-inf"), f"production {champion.tag} reads other feature-set versions: it cannot be re-scored"
    from serving.models import price

    state, config_json, _ = registry.load_state(champion.tag)
    config = price.PriceConfig.from_json(config_json)
    model = price.build_model(config)
    model.load_state_dict(state)
    window = tuple(candidate.metadata["holdout_window_ns"])
    data = price.PriceData(frame, candidate.metadata["feature_sets"])
    score = price.score_model(model, data, config, window)
    return score, f"production {champion.tag} re-scored on the candidate's holdout"


@dg.asset(
    group_name=GROUP,
    deps=["risk_training_set"],
    kinds={"pytorch"},
    check_specs=[_gates_spec("risk")],
)
def risk_model_candidate(context: dg.AssetExecutionContext, model_store: ModelStoreResource) -> Iterator[Any]:
    """Volatility, VaR(99%) and ES(97.5%) model, gated on S&P 500 and NASDAQ daily returns and on the
    market's returns (the weights that are served), saved as a candidate."""
    from orchestration import lake
    from serving.training import train_risk

    registry = model_store.registry()
    returns = lake.read_frame(training_path("risk"))
    report, var_path = train_risk(returns, _train_settings().risk, data_id=_data_id(returns))
    lake.write_frame(validation_file("risk"), var_path)
    context.log.info(f"risk candidate {report.tag}: index pinball {report.metrics['index_pinball']:.6f}")
    yield dg.MaterializeResult(asset_key="risk_model_candidate", metadata=_candidate_metadata(report))
    check, candidate = gate_check("risk", report, registry, None)
    _write_candidate("risk", candidate)
    yield check


def _production_asset(name: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{name}_model_production",
        group_name="production",
        deps=[f"{name}_model_candidate", f"{name}_validation_report"]
        + (["price_strategy_backtest"] if name == "price" else []),
        kinds={"bentoml"},
        description=f"The {name} model the BentoML service serves: the candidate, promoted once every gate passed.",
    )
    def promote(context: dg.AssetExecutionContext, model_store: ModelStoreResource) -> dg.MaterializeResult:
        """Promote the candidate: blocking checks upstream have passed to get here, and the registry
        refuses a candidate whose own gates failed (the sentiment gates do not block the news
        scores, so they are enforced here)."""
        registry = model_store.registry()
        candidate = json.loads(candidate_file(name).read_text())
        # The production score the gate compared with (None without production; -inf when production
        # reads other feature sets and cannot be re-scored, so the candidate's own gates decide).
        score = candidate.get("champion_score")
        if not candidate.get("tag"):
            raise dg.Failure(f"no {name} candidate to promote: {candidate.get('why', 'none was trained')}")
        from serving.errors import PromotionError

        try:
            record = registry.promote(candidate["tag"], champion_score=score, tolerance=candidate.get("tolerance", 0.0))
        except PromotionError as exc:
            raise dg.Failure(f"{name}: {exc}") from exc
        context.log.info(f"{record.tag} is now the production {name} model (was {candidate.get('champion')})")
        metric, _ = registry.PRIMARY_METRIC[name]
        return dg.MaterializeResult(
            metadata={
                "production": record.tag,
                "previous": candidate.get("champion") or "none",
                metric: float(record.metadata.get("metrics", {}).get(metric, float("nan"))),
            }
        )

    return promote


production_assets = [_production_asset(name) for name in MODELS]
