"""Feature drift: the population stability index (PSI) of live features against the training window.

:func:`reference_bins` takes decile edges and shares of each feature over the training set;
:func:`psi` scores a new sample against them. A PSI above 0.25 is the usual sign that the
population moved enough to retrain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

_FLOOR = 1e-4  # share given to empty bins so the log stays finite


def reference_bins(frame: pd.DataFrame, names: Sequence[str], bins: int = 10) -> dict[str, dict[str, list[float]]]:
    """Per feature: inner bin edges (quantiles) and the share of values in each bin."""
    out = {}
    for name in names:
        values = frame[name].to_numpy(np.float64)
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
        out[name] = {"edges": edges.tolist(), "shares": (counts / counts.sum()).tolist()}
    return out


def psi(reference: Mapping[str, Sequence[float]], values: np.ndarray) -> float:
    """PSI of ``values`` against one feature's reference bins (NaN when no value is finite)."""
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan")
    edges = np.asarray(reference["edges"], np.float64)
    expected = np.maximum(np.asarray(reference["shares"], np.float64), _FLOOR)
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    actual = np.maximum(counts / counts.sum(), _FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def feature_psi(reference: Mapping[str, Mapping[str, Sequence[float]]], frame: pd.DataFrame) -> dict[str, float]:
    """PSI of every referenced feature present in ``frame``."""
    return {n: psi(ref, frame[n].to_numpy(np.float64)) for n, ref in reference.items() if n in frame}


def write_reference(path: Path, reference: Mapping[str, Any], feature_set_version: str) -> None:
    """Store the reference bins with the feature-set version they were taken from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"feature_set_version": feature_set_version, "features": reference}))
    tmp.replace(path)


def read_reference(path: Path) -> tuple[str, dict[str, Any]] | None:
    """``(feature_set_version, bins)`` written by :func:`write_reference`, or None when absent."""
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return str(data["feature_set_version"]), dict(data["features"])
