"""Validation reports: markdown tables and SVG charts of each candidate, in Dagster and on disk.

Each report is written to ``$RRR_HOME/reports/<model>/<version>.md`` (charts beside it as
``.svg`` files) and shown in the asset's metadata.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.assets.common import settings
from orchestration.assets.models import candidate_file, validation_file
from orchestration.resources import ModelStoreResource

GROUP = "validation"


def _candidate(name: str, registry: Any) -> Any:
    tag = json.loads(candidate_file(name).read_text())["tag"]
    return registry.get(tag)


def _write(name: str, record: Any, markdown: str, charts: dict[str, str]) -> Path:
    folder = settings().reports / name
    folder.mkdir(parents=True, exist_ok=True)
    links = []
    for chart, svg in charts.items():
        path = folder / f"{record.version}_{chart}.svg"
        path.write_text(svg)
        links.append(f"![{chart}]({path.name})")
    report = folder / f"{record.version}.md"
    report.write_text(markdown + "\n\n" + "\n\n".join(links) + "\n")
    return report


def _result(name: str, record: Any, markdown: str, charts: dict[str, str], **numbers: float) -> dg.MaterializeResult:
    """Write the report and return its metadata: the markdown, the charts inline, headline numbers."""
    from orchestration import plots

    metadata: dict[str, Any] = {
        "candidate": record.tag,
        "report": dg.MetadataValue.path(str(_write(name, record, markdown, charts))),
        "summary": dg.MetadataValue.md(markdown),
    }
    if charts:
        metadata["charts"] = dg.MetadataValue.md("\n\n".join(plots.markdown_image(svg, k) for k, svg in charts.items()))
    return dg.MaterializeResult(metadata={**metadata, **numbers})


def _epoch_s(index: Any) -> Any:
    """An index of bar times (epoch ns) as epoch seconds; any other index as positions."""
    import numpy as np

    values = np.asarray(index)
    if values.dtype.kind in "iuf" and len(values) and float(np.nanmin(values)) > 1e15:
        return values.astype(np.float64) / 1e9
    return np.arange(len(values), dtype=np.float64)


def _gates_table(record: Any, figures: dict[str, str] | None = None) -> str:
    from orchestration.plots import markdown_table

    figures = figures or {}
    rows = [
        {"gate": g, "result": "pass" if ok else "FAIL", "figure": figures.get(g, "")} for g, ok in record.gates.items()
    ]
    return markdown_table(rows)


@dg.asset(group_name=GROUP, deps=["price_model_candidate"], kinds={"markdown"})
def price_validation_report(context: dg.AssetExecutionContext, model_store: ModelStoreResource) -> dg.MaterializeResult:
    """Price candidate vs ridge vs oracle on the holdout: IC and the idealized long-short (signal metrics)."""
    import numpy as np

    from orchestration import lake, plots
    from serving.models.common import ic_series, long_short_backtest
    from serving.models.price import PriceConfig, gate_figures

    record = _candidate("price", model_store.registry())
    config = PriceConfig.from_json(json.loads((record.path / "config.json").read_text()))
    holdout = lake.read_frame(validation_file("price"))
    m = record.metadata["metrics"]
    columns = [c for c in ("forecast", "ridge", "oracle") if c in holdout]
    rows = []
    for c in columns:
        p = "" if c == "forecast" else f"{c}_"
        rows.append(
            {
                "forecast": "model" if c == "forecast" else c,
                "IC": m.get(f"{p}ic"),
                "IC Newey-West t": m.get(f"{p}ic_nw_t"),
                "rank IC": m.get(f"{p}rank_ic"),
                "hit rate": m.get(f"{p}hit_rate"),
                "OOS R2": m.get(f"{p}oos_r2"),
                "signal long-short Sharpe (annualized)": m.get(f"{p}ls_sharpe"),
                "signal long-short total": m.get(f"{p}ls_total_return"),
            }
        )
    ic_lines, equity_lines = {}, {}
    for c in columns:
        ics = ic_series(holdout, c, config.label, cross_sectional=config.cross_sectional)
        ic_lines["model" if c == "forecast" else c] = (_epoch_s(ics.index), np.cumsum(ics.to_numpy()))
        ls = long_short_backtest(
            holdout,
            c,
            config.label,
            horizon=config.horizon,
            interval_s=config.interval_s,
            demean=config.cross_sectional,
        )
        equity_lines["model" if c == "forecast" else c] = (_epoch_s(ls.returns.index), np.cumsum(ls.returns.to_numpy()))
    dated = all(np.nanmin(x, initial=np.inf) > 1e8 for x, _ in [*ic_lines.values(), *equity_lines.values()])
    charts = {
        "cumulative_ic": plots.line_chart(
            ic_lines,
            title="Cumulative IC on the holdout",
            x_label="UTC" if dated else "bar",
            y_label="sum of per-bar IC",
            x_dates=dated,
        ),
        "long_short_equity": plots.line_chart(
            equity_lines,
            title="Idealized long-short (a signal metric: bar closes, 2 bps fees; the strategy backtest is the money)",
            x_label="UTC" if dated else "bar",
            y_label="cumulative return",
            x_dates=dated,
        ),
    }
    folds = [
        {"fold": i, **{k: f.get(k) for k in ("ic", "ridge_ic", "rank_ic")}}
        for i, f in enumerate(record.metadata.get("folds", []))
    ]
    markdown = "\n\n".join(
        [
            f"# Price model {record.tag}",
            f"Holdout of {int(m.get('rows', 0)):,} rows; {record.metadata.get('horizon', '')} ahead; forecasts "
            f"{record.metadata.get('forecasts', 'cross-sectional')}; "
            + (
                f"oracle share {m['oracle_share']:.2f}."
                if "oracle_share" in m
                else "the source has no oracle (the gates are statistical and the strategy's money)."
            ),
            plots.markdown_table(rows),
            "The signal long-short Sharpe is the mean over the standard deviation of its returns per "
            "holding period, times the square root of the holding periods in a year (365 days of bars "
            "on a 24/7 market, the calendar's sessions otherwise).",
            "## Walk-forward folds",
            plots.markdown_table(folds),
            "## Gates",
            _gates_table(record, gate_figures(m)),
        ]
    )
    return _result(
        "price",
        record,
        markdown,
        charts,
        ic=float(m["ic"]),
        oracle_share=float(m.get("oracle_share", float("nan"))),
        ls_sharpe=float(m.get("ls_sharpe", float("nan"))),
    )


@dg.asset(group_name=GROUP, deps=["sentiment_model_candidate"], kinds={"markdown"}, output_required=False)
def sentiment_validation_report(
    context: dg.AssetExecutionContext, model_store: ModelStoreResource
) -> Iterator[dg.MaterializeResult]:
    """Sentiment candidate vs the lexicon baseline: macro-F1 on the holdout and on unseen phrasings.

    Without a candidate (a source with no labelled headlines) there is nothing to report, and
    nothing downstream (promotion) runs.
    """
    from orchestration import plots

    candidate = json.loads(candidate_file("sentiment").read_text())
    if not candidate.get("tag"):
        context.log.warning(f"no sentiment candidate: {candidate.get('why')}")
        return
    record = model_store.registry().get(candidate["tag"])
    m = record.metadata["metrics"]
    rows = [
        {"data": "holdout", "model macro-F1": m.get("holdout_macro_f1"), "lexicon": m.get("lexicon_holdout_macro_f1")},
        {
            "data": "unseen phrasings",
            "model macro-F1": m.get("unseen_macro_f1"),
            "lexicon": m.get("lexicon_unseen_macro_f1"),
        },
    ]
    markdown = "\n\n".join(
        [
            f"# Sentiment model {record.tag}",
            plots.markdown_table(rows),
            "Rank IC of the news sentiment feature to forward returns: "
            f"{m.get('sentiment_feature_rank_ic', float('nan')):.4f}",
            "## Gates",
            _gates_table(record),
        ]
    )
    yield _result("sentiment", record, markdown, {}, unseen_macro_f1=float(m["unseen_macro_f1"]))


@dg.asset(group_name=GROUP, deps=["risk_model_candidate"], kinds={"markdown"})
def risk_validation_report(context: dg.AssetExecutionContext, model_store: ModelStoreResource) -> dg.MaterializeResult:
    """Risk candidate's VaR exceedances, Kupiec and Christoffersen tests and pinball loss vs EWMA and GARCH."""
    from orchestration import lake, plots

    record = _candidate("risk", model_store.registry())
    m = record.metadata["metrics"]
    path_frame = lake.read_frame(validation_file("risk"))
    coverage, losses = [], []
    names = [(str(i), str(i)) for i in sorted(path_frame["symbol"].unique())] + [("market", "market (served weights)")]
    for key, label in names:
        coverage.append(
            {
                "series": label,
                "exceedance rate": m.get(f"{key}_exceedance_rate"),
                "Kupiec p (rate)": m.get(f"{key}_kupiec_p"),
                "Christoffersen p (independence)": m.get(f"{key}_christoffersen_p"),
            }
        )
        losses.append(
            {
                "series": label,
                "model": m.get(f"{key}_pinball"),
                "EWMA": m.get(f"{key}_ewma_pinball"),
                "GARCH FHS": m.get(f"{key}_garch_pinball"),
                "GARCH t": m.get(f"{key}_garch_t_pinball"),
            }
        )
    charts = {}
    for index, group in path_frame.groupby("symbol"):
        when = group["ts_ns"].to_numpy() / 1e9
        hit = group["ret"].to_numpy() < -group["var99"].to_numpy()
        charts[f"{index}_var"] = plots.line_chart(
            {"daily return": (when, group["ret"]), "-VaR 99%": (when, -group["var99"])},
            markers={f"exceedances ({int(hit.sum())})": (when[hit], group["ret"].to_numpy()[hit])},
            title=f"{index}: one-day VaR(99%) and exceedances, test years",
            x_label="UTC",
            y_label="log return",
            x_dates=True,
        )
    markdown = "\n\n".join(
        [
            f"# Risk model {record.tag}",
            "## VaR(99%) coverage: Kupiec tests the exceedance rate, Christoffersen their independence",
            plots.markdown_table(coverage),
            "## Pinball loss of the 1% quantile (lower is better)",
            plots.markdown_table(losses),
            "## Gates",
            _gates_table(record),
        ]
    )
    return _result("risk", record, markdown, charts, index_pinball=float(m["index_pinball"]))
