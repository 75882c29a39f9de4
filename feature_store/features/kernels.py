"""The arithmetic both evaluators share, so that offline and online values agree.

Element-wise operators are applied by :func:`elementwise` to whole grids (offline) and to
one bar's vector (online) alike. The stateful operators' constants come from here too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from feature_store.features.expressions import Expr, decay_factor

__all__ = ["Array", "elementwise", "recurrence_factor"]

Array = npt.NDArray[np.float64]


def elementwise(op: str, args: Sequence[Array | float]) -> Array:
    """Apply the element-wise operator ``op`` with the NaN rules of the expressions module."""
    if op == "add":
        return np.add(args[0], args[1])
    if op == "sub":
        return np.subtract(args[0], args[1])
    if op == "mul":
        return np.multiply(args[0], args[1])
    if op == "neg":
        return np.negative(args[0])
    if op == "maximum":
        return np.maximum(args[0], args[1])
    if op == "minimum":
        return np.minimum(args[0], args[1])
    if op == "sin":
        return np.sin(args[0])
    if op == "cos":
        return np.cos(args[0])
    x = np.asarray(args[0], dtype=np.float64)
    if op == "div":
        y = np.asarray(args[1], dtype=np.float64)
        shape = np.broadcast_shapes(x.shape, y.shape)
        out = np.full(shape, np.nan)
        np.divide(x, y, out=out, where=y != 0.0)
        out[np.isinf(out)] = np.nan
        return out
    out = np.full(x.shape, np.nan)
    if op == "log":
        np.log(x, out=out, where=x > 0.0)
    elif op == "log1p":
        np.log1p(x, out=out, where=x > -1.0)
    elif op == "sqrt":
        np.sqrt(x, out=out, where=x >= 0.0)
    else:
        raise ValueError(f"unknown element-wise operator {op!r}")
    return out


def recurrence_factor(node: Expr) -> float:
    """The per-bar decay ``d`` of an ``ewm`` (``1 - alpha``) or ``decay_sum`` node."""
    if node.op == "ewm":
        return 1.0 - float(node.params[0])
    if node.op == "decay_sum":
        return decay_factor(float(node.params[0]))
    raise ValueError(f"{node.op} has no decay factor")
