"""Feature math as small expression trees, declared once and evaluated two ways.

A feature is an :class:`Expr` built from a handful of primitives::

    close = col("close")
    ret_5 = log(close) - lag(log(close), 5)
    rvol_60 = sqrt(rolling_sum(ret_1 * ret_1, 60) / 60)

:mod:`feature_store.features.offline` evaluates a tree vectorized over a whole (time x
symbol) grid of bars; :mod:`feature_store.features.online` evaluates the same tree one bar
at a time with O(1) state per node and symbol. Each primitive is written so that both give
the same floating-point operations in the same order (running sums instead of window
re-sums, the same first-order recurrence for decays), which is what makes the parity test
pass at 1e-9 and in practice bit for bit.

Missing values are NaN, never zero. The rules, the same in both evaluators:

* a bar before a symbol's first bar is NaN in every input;
* ``x / y`` is NaN where ``y == 0``; ``log`` of a value <= 0 and ``sqrt`` of a value < 0 are NaN;
* ``rolling_sum`` is NaN when any value in its window is NaN (so warm-up is masked);
* ``ewm`` and ``decay_sum`` skip NaN inputs (the state decays, nothing is added) and are NaN
  until ``min_periods`` valid inputs were seen;
* ``cross_mean`` averages the symbols whose value is finite at that bar.

:attr:`Expr.lookback` is the number of earlier bars a value needs: a feature is first valid
at a symbol's ``lookback``-th bar (0-based).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

__all__ = [
    "ELEMENTWISE",
    "INPUTS",
    "Expr",
    "col",
    "cos",
    "cross_mean",
    "decay_factor",
    "decay_sum",
    "ewm",
    "lag",
    "log",
    "log1p",
    "maximum",
    "minimum",
    "rolling_sum",
    "sin",
    "sqrt",
]

#: Per-bar inputs every evaluator provides, on the regular time grid after gap filling.
#: ``news_score``/``news_count`` are the sum of the scores and the number of headlines
#: published during the bar; ``day_angle`` is 2*pi times the bar start's fraction of the UTC day.
INPUTS: tuple[str, ...] = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "buy_volume",
    "vwap",
    "trades",
    "news_score",
    "news_count",
    "day_angle",
)

#: Operators that act value by value (no state across bars or symbols).
ELEMENTWISE: frozenset[str] = frozenset(
    {"add", "sub", "mul", "div", "neg", "log", "log1p", "sqrt", "sin", "cos", "maximum", "minimum"}
)


@dataclass(frozen=True, eq=False)
class Expr:
    """A node of feature math: an operator, its operand nodes and its constant parameters.

    Build nodes with the functions of this module and Python arithmetic (``+ - * /`` and
    unary ``-``, with numbers as constants); do not construct them directly.
    """

    op: str
    args: tuple[Expr, ...] = ()
    params: tuple[float | int | str, ...] = ()

    @cached_property
    def key(self) -> str:
        """Canonical text of the tree; equal math gives an equal key (hashed into versions)."""
        if self.op == "col":
            return str(self.params[0])
        if self.op == "const":
            return repr(float(self.params[0]))
        inner = [a.key for a in self.args] + [repr(p) for p in self.params]
        return f"{self.op}({','.join(inner)})"

    @cached_property
    def lookback(self) -> int:
        """Earlier bars of the same symbol a value depends on."""
        base = max((a.lookback for a in self.args), default=0)
        if self.op == "lag":
            return base + int(self.params[0])
        if self.op == "rolling_sum":
            return base + int(self.params[0]) - 1
        if self.op in ("ewm", "decay_sum"):
            return base + int(self.params[1]) - 1
        return base

    def nodes(self) -> list[Expr]:
        """Every distinct node of the tree (by key), operands before the nodes using them."""
        seen: dict[str, Expr] = {}

        def visit(node: Expr) -> None:
            if node.key in seen:
                return
            for arg in node.args:
                visit(arg)
            seen[node.key] = node

        visit(self)
        return list(seen.values())

    def __add__(self, other: Expr | float) -> Expr:
        return Expr("add", (self, _expr(other)))

    def __radd__(self, other: float) -> Expr:
        return Expr("add", (_expr(other), self))

    def __sub__(self, other: Expr | float) -> Expr:
        return Expr("sub", (self, _expr(other)))

    def __rsub__(self, other: float) -> Expr:
        return Expr("sub", (_expr(other), self))

    def __mul__(self, other: Expr | float) -> Expr:
        return Expr("mul", (self, _expr(other)))

    def __rmul__(self, other: float) -> Expr:
        return Expr("mul", (_expr(other), self))

    def __truediv__(self, other: Expr | float) -> Expr:
        return Expr("div", (self, _expr(other)))

    def __rtruediv__(self, other: float) -> Expr:
        return Expr("div", (_expr(other), self))

    def __neg__(self) -> Expr:
        return Expr("neg", (self,))

    def __repr__(self) -> str:
        return f"Expr({self.key})"


def _expr(value: Expr | float) -> Expr:
    if isinstance(value, Expr):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"a feature operand must be an Expr or a finite number, got {value!r}")
    return Expr("const", (), (float(value),))


def col(name: str) -> Expr:
    """One of the per-bar :data:`INPUTS`."""
    if name not in INPUTS:
        raise ValueError(f"unknown input {name!r}; inputs are {', '.join(INPUTS)}")
    return Expr("col", (), (name,))


def log(x: Expr) -> Expr:
    """Natural log; NaN for values <= 0."""
    return Expr("log", (x,))


def log1p(x: Expr) -> Expr:
    """``log(1 + x)``; NaN for values <= -1."""
    return Expr("log1p", (x,))


def sqrt(x: Expr) -> Expr:
    """Square root; NaN for negative values."""
    return Expr("sqrt", (x,))


def sin(x: Expr) -> Expr:
    """Sine."""
    return Expr("sin", (x,))


def cos(x: Expr) -> Expr:
    """Cosine."""
    return Expr("cos", (x,))


def maximum(x: Expr | float, y: Expr | float) -> Expr:
    """Element-wise maximum (NaN if either is NaN)."""
    return Expr("maximum", (_expr(x), _expr(y)))


def minimum(x: Expr | float, y: Expr | float) -> Expr:
    """Element-wise minimum (NaN if either is NaN)."""
    return Expr("minimum", (_expr(x), _expr(y)))


def lag(x: Expr, bars: int) -> Expr:
    """The value ``bars`` bars earlier (``bars`` >= 1: a feature can never look ahead)."""
    if not isinstance(bars, int) or bars < 1:
        raise ValueError(f"lag needs a whole number of bars >= 1, got {bars!r}")
    return Expr("lag", (x,), (bars,))


def rolling_sum(x: Expr, window: int) -> Expr:
    """Sum over the last ``window`` bars, this one included; NaN if any of them is NaN."""
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"rolling_sum needs a window >= 1 bar, got {window!r}")
    return Expr("rolling_sum", (x,), (window,))


def ewm(x: Expr, alpha: float, min_periods: int | None = None) -> Expr:
    """Exponentially weighted mean with weights ``(1 - alpha)**k`` (pandas ``adjust=True``).

    Args:
        alpha: smoothing factor in (0, 1].
        min_periods: valid inputs needed before a value is given (default: the span
            ``2 / alpha - 1``, rounded).
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"ewm alpha must be in (0, 1], got {alpha!r}")
    periods = max(1, round(2.0 / alpha - 1.0)) if min_periods is None else min_periods
    if periods < 1:
        raise ValueError(f"ewm min_periods must be >= 1, got {periods}")
    return Expr("ewm", (x,), (float(alpha), int(periods)))


def decay_sum(x: Expr, half_life: float, min_periods: int | None = None) -> Expr:
    """Exponentially decayed sum ``y = d * y_prev + x`` with ``d = 0.5 ** (1 / half_life)``.

    Args:
        half_life: bars after which an input's weight has halved.
        min_periods: valid inputs needed before a value is given (default: one half-life).
    """
    if not half_life > 0.0:
        raise ValueError(f"decay_sum half_life must be > 0 bars, got {half_life!r}")
    periods = max(1, math.ceil(half_life)) if min_periods is None else min_periods
    if periods < 1:
        raise ValueError(f"decay_sum min_periods must be >= 1, got {periods}")
    return Expr("decay_sum", (x,), (float(half_life), int(periods)))


def cross_mean(x: Expr) -> Expr:
    """Mean over the symbols of the universe whose value is finite at the same bar."""
    return Expr("cross_mean", (x,))


def decay_factor(half_life: float) -> float:
    """Per-bar decay of :func:`decay_sum` for ``half_life``."""
    return float(0.5 ** (1.0 / half_life))
