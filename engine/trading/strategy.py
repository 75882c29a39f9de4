"""Portfolio construction: forecasts to target weights, by one of two families.

Weights are signed fractions of equity. At each bar, for the symbols with a forecast of mean
``m`` and standard deviation ``s`` (log return over the model's horizon):

1. **Raw target** ``w*`` of the family:

   * ``cross_sectional`` (three or more symbols): the risk-adjusted views ``z = m / s`` are
     ranked across symbols, the ranks demeaned and scaled to a gross exposure of ``gross``,
     each weight capped at ``cap``. Demeaned ranks are symmetric, so the book is
     dollar-neutral. Ranks, not values, also make the book insensitive to the last digits of
     a forecast: the service's float32 forecasts trade like the validation's.
   * ``per_symbol`` (small universes, or when validation prefers it): each symbol on its own,
     ``z = m / s``. A flat symbol goes long (short) when ``z >= entry_z`` (``<= -entry_z``);
     a held one stays on its side while ``z`` on that side is above ``exit_z`` (hysteresis:
     ``exit_z < entry_z`` keeps a position through small wobbles of the forecast). The weight
     of a position is ``cap``.

   News sentiment shifts ``z`` by ``sentiment_weight * sentiment`` (the mean by that many
   standard deviations) before either family reads it.

2. **Risk scaling**: when the risk model's portfolio VaR(99%) is above ``var_budget`` of
   equity, every raw target is scaled by ``budget / VaR``.

3. **Holding**: each bar moves ``1 / holding`` of the way from the held weight to ``w*``.
   This partial adjustment is the memoryless equivalent of ``holding`` staggered sleeves:
   a forecast keeps moving the book for about ``holding`` bars, and the state it needs is
   the position itself, which the database restores after a restart.

4. **No-trade band**: where the held weight is within ``band`` of ``w*``, nothing trades.

The core sends the change as a market order (taker fee and slippage) or, with
``order_type`` ``limit``, a limit order at the bar's close (maker fee, fills only when the
market trades at or through it); what is unfilled after the order's time is cancelled.

Everything is computed with numpy on all symbols at once. The parameters are fitted on the
price model's validation fold (:mod:`engine.trading.fitting`), stored with the model and
published by the model service, so that what is validated is what is traded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from feature_store.records import NS_PER_S

__all__ = ["FAMILIES", "ORDER_TYPES", "SentimentBook", "StrategyParams", "Targets", "target_weights"]

Array = npt.NDArray[np.float64]
FAMILIES = ("cross_sectional", "per_symbol")
ORDER_TYPES = ("market", "limit")
_TEXT = ("family", "order_type", "origin")


@dataclass(frozen=True, slots=True)
class StrategyParams:
    """Parameters of the portfolio construction (see the module docstring).

    Attributes:
        family: ``cross_sectional`` or ``per_symbol``.
        gross: gross exposure of the cross-sectional book, a fraction of equity.
        cap: largest weight of one symbol (and the weight of a per-symbol position).
        band: no-trade band around the raw target, in weight.
        holding: bars over which the book moves to a new target (1: at once).
        entry_z, exit_z: per-symbol thresholds on ``mean / sd`` to open and to keep a position.
        sentiment_weight: news sentiment added to ``z``.
        min_order_notional: orders smaller than this (quote currency) are not sent.
        var_budget: portfolio VaR(99%) as a fraction of equity above which targets shrink.
        order_type: ``market`` (taker fee and slippage, fills at once) or ``limit`` (at the bar's
            close: maker fee, fills only when the market trades at or through it).
        origin: where the parameters came from (the model version that was validated with
            them, ``default``, or ``cli``).
    """

    family: str = "cross_sectional"
    gross: float = 0.2
    cap: float = 0.02
    band: float = 0.0
    holding: int = 1
    entry_z: float = 0.0
    exit_z: float = 0.0
    sentiment_weight: float = 0.0
    min_order_notional: float = 25.0
    var_budget: float = 0.03
    order_type: str = "market"
    origin: str = "default"

    def __post_init__(self) -> None:
        if self.order_type not in ORDER_TYPES:
            raise ValueError(f"strategy order_type must be one of {', '.join(ORDER_TYPES)}, got {self.order_type!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"strategy family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        numbers = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _TEXT}
        bad = [k for k, v in numbers.items() if not np.isfinite(float(v))]
        if bad:
            raise ValueError(f"strategy parameters must be finite numbers: {', '.join(bad)}")
        if not 0 < self.cap <= 1 or not 0 < self.gross <= 10 or self.var_budget <= 0:
            raise ValueError(
                f"strategy needs 0 < cap <= 1, 0 < gross <= 10 and var_budget > 0, "
                f"got cap {self.cap}, gross {self.gross}, var_budget {self.var_budget}"
            )
        if self.band < 0 or self.min_order_notional < 0:
            raise ValueError(
                f"strategy band and min_order_notional must be >= 0, got {self.band}, {self.min_order_notional}"
            )
        if int(self.holding) != self.holding or self.holding < 1:
            raise ValueError(f"strategy holding must be a whole number of bars >= 1, got {self.holding}")
        if self.entry_z < 0 or self.exit_z > self.entry_z:
            raise ValueError(f"strategy needs 0 <= entry_z and exit_z <= entry_z, got {self.entry_z}, {self.exit_z}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, origin: str | None = None) -> StrategyParams:
        """Parameters from JSON (a model's metadata, ``/versions``); unknown keys are an error.

        Raises:
            ValueError: a key is unknown or a value is out of range (the message names it).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"strategy parameters must be a JSON object, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown strategy parameter(s) {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in _TEXT:
                values[key] = str(value)
            elif key == "holding":
                if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
                    raise ValueError(f"strategy parameter holding must be a whole number of bars, got {value!r}")
                values[key] = int(value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                values[key] = float(value)
            else:
                raise ValueError(f"strategy parameter {key} must be a number, got {value!r}")
        if origin is not None:
            values["origin"] = origin
        return cls(**values)

    def describe(self) -> str:
        """One line for logs and ``engine status``."""
        if self.family == "cross_sectional":
            rule = f"gross {self.gross:g}, cap {self.cap:g}"
        else:
            rule = f"entry z {self.entry_z:g}, exit z {self.exit_z:g}, weight {self.cap:g}"
        return (
            f"{self.family} ({rule}, band {self.band:g}, holding {self.holding} bars, {self.order_type} orders; "
            f"from {self.origin})"
        )


@dataclass(frozen=True, slots=True)
class Targets:
    """What :func:`target_weights` decided for each symbol.

    Attributes:
        weights: the weight to hold after this bar.
        raw: the family's target before holding and band.
        in_band: True where the held weight is inside the no-trade band (nothing trades).
    """

    weights: Array
    raw: Array
    in_band: npt.NDArray[np.bool_]


def target_weights(
    mean: Array,
    sd: Array,
    held: Array,
    params: StrategyParams,
    *,
    sentiment: Array | None = None,
    var_scale: float = 1.0,
) -> Targets:
    """The weights to hold after this bar (see the module docstring).

    Args:
        mean, sd: each symbol's forecast and its standard deviation (non-finite: no view).
        held: each symbol's weight now (position times mark over equity).
        params: the strategy.
        sentiment: each symbol's news sentiment (None: none).
        var_scale: the risk model's scale, in (0, 1].
    """
    n = len(mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = mean / sd
    valid = np.isfinite(z) & (sd > 0)
    if sentiment is not None and params.sentiment_weight:
        z = z + params.sentiment_weight * sentiment
    z = np.where(valid, z, 0.0)
    raw = np.zeros(n)
    if params.family == "cross_sectional":
        count = int(valid.sum())
        if count >= 2:
            # Ranks of the risk-adjusted view among the valid symbols (ties get their mean rank).
            values = z[valid]
            order = np.argsort(values, kind="stable")
            ordered = values[order]
            group = np.cumsum(np.r_[True, ordered[1:] != ordered[:-1]]) - 1
            mean_rank = np.bincount(group, np.arange(count, dtype=np.float64)) / np.bincount(group)
            ranks = np.empty(count)
            ranks[order] = mean_rank[group]
            centered = ranks - ranks.mean()
            total = np.abs(centered).sum()
            if total > 0:
                raw[valid] = np.clip(centered / total * params.gross, -params.cap, params.cap)
    else:
        side = np.sign(held)
        keep = (side != 0) & (z * side > params.exit_z)
        enter = np.abs(z) >= params.entry_z
        side = np.where(enter & (z != 0), np.sign(z), np.where(keep, side, 0.0))
        raw = np.where(valid, side * params.cap, 0.0)
    raw = raw * var_scale
    gap = raw - held
    in_band = np.abs(gap) <= params.band
    weights = np.where(in_band, held, held + gap / params.holding)
    return Targets(weights, raw, in_band)


class SentimentBook:
    """Each symbol's news sentiment: headline scores decayed with a half-life.

    Args:
        half_life_s: how fast a headline's effect fades.
    """

    def __init__(self, half_life_s: float = 900.0) -> None:
        self.half_life_ns = half_life_s * NS_PER_S
        self._items: dict[str, list[tuple[int, float]]] = {}
        self.headlines = 0

    def add(self, ts_ns: int, symbols: Sequence[str], score: float) -> None:
        self.headlines += 1
        for symbol in symbols:
            items = self._items.setdefault(symbol, [])
            items.append((ts_ns, score))
            if len(items) > 64:
                del items[:-64]

    def at(self, symbols: Sequence[str], now_ns: int) -> Array:
        """Each symbol's decayed score at ``now_ns`` (only headlines published before it count)."""
        out = np.zeros(len(symbols))
        if not self._items:
            return out
        for i, symbol in enumerate(symbols):
            items = self._items.get(symbol)
            if items:
                out[i] = sum(score * 0.5 ** ((now_ns - ts) / self.half_life_ns) for ts, score in items if ts <= now_ns)
        return out
