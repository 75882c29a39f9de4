"""Feature definitions and their two evaluators.

* :mod:`~feature_store.features.expressions`: the primitives feature math is written in.
* :mod:`~feature_store.features.registry`: ``Feature`` and versioned ``FeatureSet``.
* :mod:`~feature_store.features.catalog`: the platform's features and the ``price``,
  ``risk`` and ``sentiment`` sets.
* :mod:`~feature_store.features.offline`: vectorized over a table of bars.
* :mod:`~feature_store.features.online`: one bar at a time, O(1) per symbol.
"""

from __future__ import annotations

from feature_store.features.catalog import FEATURE_SETS, PRICE, RISK, SENTIMENT, feature_set
from feature_store.features.offline import compute_features
from feature_store.features.online import FeatureStep, OnlineFeatures
from feature_store.features.registry import Feature, FeatureSet

__all__ = [
    "FEATURE_SETS",
    "PRICE",
    "RISK",
    "SENTIMENT",
    "Feature",
    "FeatureSet",
    "FeatureStep",
    "OnlineFeatures",
    "compute_features",
    "feature_set",
]
