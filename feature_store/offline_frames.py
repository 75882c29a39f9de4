"""Checks and shapes of the tables the offline stores take and give.

A features table has ``symbol``, ``ts_ns`` and one float64 column per feature of its set,
in the set's order; NaN marks warm-up or undefined values and is stored as such. A labels
table has ``name, symbol, ts_ns, horizon_s, value`` with finite values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_store.errors import DataValidationError
from feature_store.features.registry import FeatureSet

__all__ = ["LABEL_COLUMNS", "check_features", "check_labels", "empty_features", "empty_labels"]

LABEL_COLUMNS: tuple[str, ...] = ("name", "symbol", "ts_ns", "horizon_s", "value")


def check_features(feature_set: FeatureSet, features: pd.DataFrame) -> pd.DataFrame:
    """The table with exactly the set's columns, or :class:`DataValidationError` naming the problem."""
    source = f"features of {feature_set.name!r} (version {feature_set.version})"
    columns = ["symbol", "ts_ns", *feature_set.names]
    missing = [c for c in columns if c not in features]
    if missing:
        raise DataValidationError(source, None, f"missing column(s) {missing}")
    extra = [c for c in features.columns if c not in columns]
    if extra:
        raise DataValidationError(source, None, f"column(s) {extra} are not features of this set")
    frame = features[columns]
    values = frame[list(feature_set.names)].to_numpy(np.float64)
    if np.isinf(values).any():
        row = int(np.flatnonzero(np.isinf(values).any(axis=1))[0])
        name = feature_set.names[int(np.flatnonzero(np.isinf(values[row]))[0])]
        raise DataValidationError(source, row + 1, f"{name} is infinite (symbol {frame['symbol'].iloc[row]})")
    duplicated = frame.duplicated(["symbol", "ts_ns"]).to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        raise DataValidationError(
            source, row + 1, f"({frame['symbol'].iloc[row]}, {int(frame['ts_ns'].iloc[row])}) appears twice"
        )
    return frame


def check_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """The labels table with its columns in order, or :class:`DataValidationError`."""
    missing = [c for c in LABEL_COLUMNS if c not in labels]
    if missing:
        raise DataValidationError("labels", None, f"missing column(s) {missing}")
    frame = labels[list(LABEL_COLUMNS)]
    bad = ~np.isfinite(frame["value"].to_numpy(np.float64)) | (frame["horizon_s"].to_numpy(np.int64) <= 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataValidationError("labels", row + 1, "value must be finite and horizon_s > 0")
    duplicated = frame.duplicated(["name", "symbol", "ts_ns"]).to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        raise DataValidationError("labels", row + 1, "the same (name, symbol, ts_ns) appears twice")
    return frame


def empty_features(feature_set: FeatureSet) -> pd.DataFrame:
    """A features table with no rows and the right column types."""
    columns: dict[str, pd.Series] = {"symbol": pd.Series(dtype="str"), "ts_ns": pd.Series(dtype="int64")}
    columns.update({name: pd.Series(dtype="float64") for name in feature_set.names})
    return pd.DataFrame(columns)


def empty_labels() -> pd.DataFrame:
    """A labels table with no rows and the right column types."""
    types = {"name": "str", "symbol": "str", "ts_ns": "int64", "horizon_s": "int64", "value": "float64"}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in types.items()})
