"""Data-quality checks on bars, news and features with Great Expectations 1.x.

Each ``validate_*`` function runs one expectation suite on a pandas frame and returns a
:class:`QualityReport`: whether every expectation held, which ones failed with their
unexpected counts and a few sample rows, and the Data Docs HTML built into the data folder
(``$RRR_HOME/gx``). Great Expectations is imported inside the functions (the import alone
costs a few seconds), so the Dagster code location loads fast.

What is checked:

* bars: no nulls; positive prices; ``high >= low`` and open/close inside ``[low, high]``;
  non-negative volume; no duplicated ``(symbol, start_ns)``; bar times strictly increasing
  within each symbol; the row count within the band expected for the partition.
* news: no nulls, non-empty headlines, at least one symbol per headline, publication times
  in order, row count within its band.
* features: no duplicated ``(symbol, ts_ns)``; at most ``max_null_share`` missing values per
  feature (the warm-up); every present value finite, and at least 99.9% of them inside the
  feature's reference range (from :func:`reference_ranges` over a trusted window, such as
  the days before), so that a rare genuine extreme passes and a foreign unit does not.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from orchestration import quality_page

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.expectations import Expectation

__all__ = [
    "QualityReport",
    "reference_ranges",
    "validate_bars",
    "validate_features",
    "validate_news",
]

_SAMPLE_ROWS = 5
_DATASOURCE = "rrr"
_contexts: dict[Path, AbstractDataContext] = {}
_lock = threading.Lock()


@dataclass
class QualityReport:
    """The outcome of one expectation suite on one frame.

    Attributes:
        suite: suite name (``bars``, ``news``, ``features_<set>``).
        success: every expectation held.
        rows: rows validated.
        evaluated: expectations evaluated.
        failures: one entry per failed expectation: ``expectation`` (its type), ``kwargs``
            (columns and bounds), ``unexpected_count``, ``observed_value`` and
            ``sample_rows`` (up to five offending rows as dicts).
        docs: file URL of the Data Docs index that holds this validation (it lists every
            validation without a network too: see :mod:`orchestration.quality_page`).
    """

    suite: str
    success: bool
    rows: int
    evaluated: int
    failures: list[dict[str, Any]] = field(default_factory=list)
    docs: str = ""

    def summary(self) -> str:
        """One line per failed expectation, or that all passed."""
        if self.success:
            return f"{self.suite}: {self.evaluated} expectations passed on {self.rows:,} rows"
        lines = [f"{self.suite}: {len(self.failures)} of {self.evaluated} expectations failed on {self.rows:,} rows"]
        for f in self.failures:
            what = f"{f['unexpected_count']} unexpected" if f["unexpected_count"] is not None else "observed"
            lines.append(f"- {f['expectation']} {f['kwargs']}: {what} (observed {f['observed_value']})")
        return "\n".join(lines)


def _context(root: Path) -> AbstractDataContext:
    """The file-backed Great Expectations project under ``root`` (created once per process)."""
    import great_expectations as gx

    root = root.resolve()
    with _lock:
        if root not in _contexts:
            root.mkdir(parents=True, exist_ok=True)
            context = gx.get_context(mode="file", project_root_dir=str(root))
            context.variables.progress_bars = {"globally": False, "metric_calculations": False}
            context.variables.save()
            _contexts[root] = context
        return _contexts[root]


def _run(
    frame: pd.DataFrame, suite_name: str, expectations: Sequence[Expectation], root: Path, original: pd.DataFrame
) -> QualityReport:
    import great_expectations as gx

    context = _context(root)
    with _lock:
        try:
            source = context.data_sources.get(_DATASOURCE)
        except KeyError:
            source = context.data_sources.add_pandas(_DATASOURCE)
        try:
            asset = source.get_asset(suite_name)
        except LookupError:
            asset = source.add_dataframe_asset(suite_name)
        try:
            batch = asset.get_batch_definition(suite_name)
        except KeyError:
            batch = asset.add_batch_definition_whole_dataframe(suite_name)
        suite = gx.ExpectationSuite(name=suite_name)
        for expectation in expectations:
            suite.add_expectation(expectation)
        suite = context.suites.add_or_update(suite)
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(data=batch, suite=suite, name=suite_name)
        )
        result = definition.run(batch_parameters={"dataframe": frame}, result_format={"result_format": "COMPLETE"})
        urls = context.build_data_docs()
        quality_page.build(root.resolve() / "gx")
    failures = []
    for item in result.results:
        if item.success:
            continue
        config = item.expectation_config
        kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "result_format")}
        detail = item.result or {}
        index = detail.get("unexpected_index_list") or []
        sample = original.loc[[i for i in index[:_SAMPLE_ROWS] if i in original.index]]
        failures.append(
            {
                "expectation": config.type,
                "kwargs": kwargs,
                "unexpected_count": detail.get("unexpected_count"),
                "observed_value": detail.get("observed_value"),
                "sample_rows": _records(sample),
            }
        )
    stats = result.statistics
    return QualityReport(
        suite=suite_name,
        success=bool(result.success),
        rows=len(frame),
        evaluated=int(stats["evaluated_expectations"]),
        failures=failures,
        docs=str(next(iter(urls.values()), "")),
    )


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in frame.reset_index(names="row").to_dict("records"):
        out.append({str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()})
    return out


def _row_count(expected_rows: tuple[int, int] | None) -> list[Expectation]:
    import great_expectations.expectations as gxe

    if expected_rows is None:
        return []
    low, high = expected_rows
    return [gxe.ExpectTableRowCountToBeBetween(min_value=low, max_value=high)]


def validate_bars(
    bars: pd.DataFrame, root: Path, *, expected_rows: tuple[int, int] | None = None, suite: str = "bars"
) -> QualityReport:
    """Validate time bars (``symbol, start_ns, open, high, low, close, volume``, ...)."""
    import great_expectations.expectations as gxe

    original = bars.reset_index(drop=True)
    frame = original.copy()
    # Time since the symbol's previous bar, in the frame's order: <= 0 is a duplicate or out of order.
    frame["ns_since_previous_bar"] = frame.groupby("symbol", sort=False)["start_ns"].diff()
    prices = ("open", "high", "low", "close")
    expectations: list[Expectation] = [
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("symbol", "start_ns", *prices, "volume")),
        *(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True) for c in prices),
        gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="high", column_B="low", or_equal=True, ignore_row_if="either_value_is_missing"
        ),
        *(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="high", column_B=c, or_equal=True, ignore_row_if="either_value_is_missing"
            )
            for c in ("open", "close")
        ),
        *(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=c, column_B="low", or_equal=True, ignore_row_if="either_value_is_missing"
            )
            for c in ("open", "close")
        ),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["symbol", "start_ns"]),
        gxe.ExpectColumnValuesToBeBetween(column="ns_since_previous_bar", min_value=0, strict_min=True),
        *_row_count(expected_rows),
    ]
    return _run(frame, suite, expectations, root, original)


def validate_news(
    news: pd.DataFrame, root: Path, *, expected_rows: tuple[int, int] | None = None, suite: str = "news"
) -> QualityReport:
    """Validate headlines (``ts_ns, symbols, headline``, ...), in publication order."""
    import great_expectations.expectations as gxe

    original = news.reset_index(drop=True)
    frame = original.copy()
    frame["symbol_count"] = frame["symbols"].map(lambda s: len(s) if isinstance(s, (list, tuple, np.ndarray)) else 0)
    expectations: list[Expectation] = [
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("ts_ns", "symbols", "headline")),
        gxe.ExpectColumnValueLengthsToBeBetween(column="headline", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="symbol_count", min_value=1),
        gxe.ExpectColumnValuesToBeIncreasing(column="ts_ns"),
        *_row_count(expected_rows),
    ]
    return _run(frame, suite, expectations, root, original)


def reference_ranges(
    features: pd.DataFrame, names: Sequence[str], *, quantile: float = 1e-4, widen: float = 1.0
) -> dict[str, tuple[float, float]]:
    """Per feature: the ``[quantile, 1 - quantile]`` range of a trusted window, widened.

    ``widen`` adds that many range widths on each side, so the check fires on values that
    are clearly foreign (another unit, a broken source), not on a calm day's new extreme.
    A feature with no finite value in the window (its lookback is longer than the history)
    has no range and is left out: the caller reports it as warming up.
    """
    out = {}
    for name in names:
        values = features[name].to_numpy(np.float64)
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        low, high = np.quantile(values, [quantile, 1.0 - quantile])
        pad = widen * max(high - low, 1e-12)
        out[name] = (float(low - pad), float(high + pad))
    return out


def validate_features(
    features: pd.DataFrame,
    names: Sequence[str],
    root: Path,
    *,
    reference: Mapping[str, tuple[float, float]] | None = None,
    max_null_share: float = 0.05,
    in_range_share: float = 0.999,
    suite: str = "features",
    time: str = "ts_ns",
    warming_up: Sequence[str] = (),
) -> QualityReport:
    """Validate a feature table (``symbol``, ``time`` and the ``names`` columns).

    ``in_range_share`` of each feature's present values must lie inside its reference range.
    Features named in ``warming_up`` (too little history for their lookback) may be null;
    their present values must still be finite.
    """
    import great_expectations.expectations as gxe

    original = features.reset_index(drop=True)
    frame = original.copy()
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"feature table lacks column(s) {missing}")
    expectations: list[Expectation] = [gxe.ExpectCompoundColumnsToBeUnique(column_list=["symbol", time])]
    largest = float(np.finfo(np.float64).max)
    for name in names:
        if name not in warming_up:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=name, mostly=1.0 - max_null_share))
        frame[name] = frame[name].astype(np.float64)
        # Every present value finite (the largest floats as bounds), and nearly all of them
        # inside the reference range: a rare genuine extreme passes, a foreign unit does not.
        finite = f"every present value of {name} is finite"
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(column=name, min_value=-largest, max_value=largest, description=finite)
        )
        if reference and name in reference:
            low, high = reference[name]
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(column=name, min_value=low, max_value=high, mostly=in_range_share)
            )
    return _run(frame, suite, expectations, root, original)
