"""Features and versioned feature sets.

A :class:`Feature` is a name, its math (an :class:`~feature_store.features.expressions.Expr`)
and a one-line description. A :class:`FeatureSet` groups the features one model uses, for
one bar interval. Its :attr:`~FeatureSet.version` is a hash of the names, the math and the
interval, so any change to a definition gives a new version; stores key everything by
version, and a model records the version it was trained on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from feature_store.errors import UnknownFeatureError
from feature_store.features.calendars import SessionCalendar, session_calendar
from feature_store.features.expressions import Expr

__all__ = ["Feature", "FeatureSet"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Feature:
    """One feature: a name, its math and what it means.

    Attributes:
        name: lowercase identifier, unique in its feature set.
        expr: the math.
        description: one line for people (catalogues, the Dagster UI).
    """

    name: str
    expr: Expr
    description: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"feature name must be lowercase letters, digits and _, got {self.name!r}")

    @property
    def lookback(self) -> int:
        """Earlier bars needed before the feature is valid (see ``Expr.lookback``)."""
        return self.expr.lookback


@dataclass(frozen=True)
class FeatureSet:
    """The features one model uses, in a fixed order, for bars of ``interval_s`` seconds.

    Attributes:
        name: lowercase identifier (``price``, ``risk``, ``sentiment``...).
        features: the features, in the column order of every vector and table.
        interval_s: bar length the math is written for.
        description: one line for people.
        calendar: the session calendar bars follow: ``24/7`` (every slot is a bar) or an
            exchange calendar name (``XNYS``...): see :mod:`feature_store.features.calendars`.
    """

    name: str
    features: tuple[Feature, ...]
    interval_s: int = 60
    description: str = ""
    calendar: str = "24/7"
    _by_name: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"feature set name must be lowercase letters, digits and _, got {self.name!r}")
        if not self.features:
            raise ValueError(f"feature set {self.name!r} has no features")
        if self.interval_s <= 0:
            raise ValueError(f"feature set {self.name!r}: interval_s must be > 0, got {self.interval_s}")
        by_name: dict[str, int] = {}
        for i, feature in enumerate(self.features):
            if feature.name in by_name:
                raise ValueError(f"feature set {self.name!r} declares {feature.name!r} twice")
            by_name[feature.name] = i
        object.__setattr__(self, "_by_name", by_name)

    @cached_property
    def version(self) -> str:
        """16 hex digits of SHA-256 over the definitions (names, math, interval, calendar)."""
        text = json.dumps(self.definitions(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def names(self) -> tuple[str, ...]:
        """Feature names in column order."""
        return tuple(f.name for f in self.features)

    @property
    def lookback(self) -> int:
        """The longest lookback of its features, in bars."""
        return max(f.lookback for f in self.features)

    def __len__(self) -> int:
        return len(self.features)

    def index(self, names: Sequence[str]) -> list[int]:
        """Column positions of ``names``.

        Raises:
            UnknownFeatureError: a name is not in the set (the error lists the known ones).
        """
        unknown = [n for n in names if n not in self._by_name]
        if unknown:
            raise UnknownFeatureError(
                f"feature set {self.name!r} (version {self.version}) has no feature(s) {unknown}; "
                f"it has {list(self.names)}"
            )
        return [self._by_name[n] for n in names]

    def definitions(self) -> dict[str, Any]:
        """The hashed definition: name, interval, calendar and each feature's name and canonical math.

        The calendar is named only when it is not ``24/7`` (so around-the-clock sets keep the
        versions they always had).
        """
        out: dict[str, Any] = {
            "name": self.name,
            "interval_s": self.interval_s,
            "features": [{"name": f.name, "math": f.expr.key} for f in self.features],
        }
        if self.calendar != "24/7":
            out["calendar"] = self.calendar
        return out

    def describe(self) -> list[dict[str, Any]]:
        """One row per feature: name, lookback, description and math (for catalogues)."""
        return [
            {"name": f.name, "lookback": f.lookback, "description": f.description, "math": f.expr.key}
            for f in self.features
        ]

    def with_interval(self, interval_s: int) -> FeatureSet:
        """The same math for bars of another length (a different version)."""
        return replace(self, interval_s=interval_s)

    def with_calendar(self, calendar: str) -> FeatureSet:
        """The same math on another market's sessions (a different version unless ``24/7``)."""
        return replace(self, calendar=calendar)

    def sessions(self) -> SessionCalendar:
        """The session calendar of this set's bars."""
        return session_calendar(self.calendar, self.interval_s)
