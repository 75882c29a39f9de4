"""The strategy: forecasts, sentiment and risk to risk-scaled target positions.

For each symbol with a forecast of mean ``m`` and standard deviation ``s`` (log return over
the model's horizon) the signal is ``z = m / s + sentiment_weight * sentiment``. Below
``entry_z`` the target is flat; above it the target notional risks ``risk_per_symbol`` of
equity per unit of ``z`` (``notional = equity * risk_per_symbol * clip(z) / s``), capped by
the per-symbol notional limit. When the portfolio's VaR(99%) from the risk model is above
``var_budget`` of equity, every target is scaled down by ``budget / VaR``.

Everything is computed with numpy on all symbols at once; the engine turns targets into
decimal quantities only where an order is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feature_store.records import NS_PER_S

__all__ = ["SentimentBook", "StrategyParams", "target_notionals"]

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class StrategyParams:
    """Parameters of the strategy (see the module docstring)."""

    risk_per_symbol: float = 0.0005
    entry_z: float = 0.25
    max_z: float = 3.0
    sentiment_weight: float = 0.5
    min_order_notional: float = 25.0
    var_budget: float = 0.03

    def __post_init__(self) -> None:
        if self.risk_per_symbol <= 0 or self.max_z <= 0 or self.entry_z < 0 or self.var_budget <= 0:
            raise ValueError("risk_per_symbol, max_z and var_budget must be > 0 and entry_z >= 0")


def target_notionals(
    mean: Array,
    sd: Array,
    sentiment: Array,
    equity: float,
    params: StrategyParams,
    *,
    max_notional: float,
    var_scale: float = 1.0,
) -> Array:
    """Signed target notional of each symbol (see the module docstring)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = mean / sd + params.sentiment_weight * sentiment
        z = np.where(np.isfinite(z) & (sd > 0), z, 0.0)
        z = np.where(np.abs(z) < params.entry_z, 0.0, np.clip(z, -params.max_z, params.max_z))
        notional = np.where(z != 0.0, equity * params.risk_per_symbol * z / sd, 0.0)
    return np.clip(notional * var_scale, -max_notional, max_notional)


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
