"""Online feature computation: one bar at a time, O(1) work and memory per symbol.

:class:`OnlineFeatures` keeps, for each node of the set's expression trees, a small state
per symbol: a ring of ``k`` values for ``lag``, a running sum and a ring of ``window``
earlier running sums for ``rolling_sum``, two accumulators for ``ewm`` and ``decay_sum``.
At each bar close the engine calls :meth:`OnlineFeatures.update` once with the bars of
every symbol that closed; symbols with no bar that interval are gap-filled exactly like the
offline grid, so that the two evaluators agree (the parity test checks it to 1e-9).

Bad input is counted in :attr:`OnlineFeatures.dropped` by reason and dropped, never raised:
a bar of a symbol outside the universe (``unknown_symbol``), a second bar of a symbol in the
same interval (``duplicate_bar``), a bar whose start is not the interval being closed
(``misaligned_bar``), a bar with non-finite, non-positive or inconsistent values
(``invalid_bar``), an update for an interval already closed (``late_update``), and a
headline published in an interval already closed (``late_news``: it is counted in the
current interval instead). A dropped bar leaves its symbol gap-filled for the interval.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feature_store.errors import UnknownFeatureError
from feature_store.features.expressions import ELEMENTWISE, INPUTS, Expr
from feature_store.features.kernels import Array, elementwise, recurrence_factor
from feature_store.features.registry import FeatureSet
from feature_store.records import NS_PER_S, Bar

__all__ = ["FeatureStep", "OnlineFeatures", "replay_features"]


@dataclass(frozen=True)
class FeatureStep:
    """The feature vectors of one bar interval.

    Attributes:
        ts_ns: the bar start of the interval (values are known at its close).
        symbols: the symbols that have started (had a first bar), sorted.
        values: float64 array (symbols x features); NaN while warming up or undefined.
        observed: per symbol, True if a real bar arrived this interval (False: gap-filled).
    """

    ts_ns: int
    symbols: tuple[str, ...]
    values: Array
    observed: npt.NDArray[np.bool_]


_Step = Callable[[list["Array | float"]], "Array | float"]


class OnlineFeatures:
    """Incremental features of one feature set for a fixed universe of symbols.

    Args:
        feature_set: what to compute.
        symbols: the universe (the order of cross-sectional sums is the sorted order, as
            offline).

    Example::

        online = OnlineFeatures(PRICE, ["BTC-USD", "ETH-USD"])
        step = online.update(bar_start_ns, closed_bars)
        store.write_latest(PRICE, step.ts_ns, step.symbols, step.values)
    """

    def __init__(self, feature_set: FeatureSet, symbols: Iterable[str]) -> None:
        self.feature_set = feature_set
        self.symbols: tuple[str, ...] = tuple(sorted(set(symbols)))
        if not self.symbols:
            raise UnknownFeatureError("OnlineFeatures needs at least one symbol")
        self._column = {s: i for i, s in enumerate(self.symbols)}
        self._interval_ns = feature_set.interval_s * NS_PER_S
        self._sessions = feature_set.sessions()
        n = len(self.symbols)
        self._present = np.zeros(n, dtype=bool)
        self._last_close = np.full(n, np.nan)
        self._pending: dict[int, tuple[Array, Array]] = {}
        self._next_ns: int | None = None
        self._steps = 0
        self.dropped: Counter[str] = Counter()
        order: dict[str, Expr] = {}
        for feature in feature_set.features:
            for node in feature.expr.nodes():
                order.setdefault(node.key, node)
        self._keys = list(order)
        self._slots = {key: i for i, key in enumerate(self._keys)}
        self._plan = [(self._compile(node), [self._slots[a.key] for a in node.args]) for node in order.values()]
        self._outputs = [self._slots[f.expr.key] for f in feature_set.features]

    def restarted(self) -> OnlineFeatures:
        """The same features with no history, as at a fresh start (after a gap in the data too
        long to step through), keeping the headlines already counted for later intervals."""
        fresh = OnlineFeatures(self.feature_set, self.symbols)
        fresh._pending = dict(self._pending)
        return fresh

    @property
    def next_ts_ns(self) -> int | None:
        """The bar start the next update is expected for (None before the first)."""
        return self._next_ns

    def add_news(self, ts_ns: int, symbols: Sequence[str], score: float) -> None:
        """Count a headline published at ``ts_ns`` about ``symbols`` with sentiment ``score``.

        Mentions of symbols outside the universe are ignored; a non-finite score is dropped
        (``invalid_news``).
        """
        if not math.isfinite(score):
            self.dropped["invalid_news"] += 1
            return
        bucket = ts_ns // self._interval_ns * self._interval_ns
        if not self._sessions.always_open and not self._sessions.is_open(np.array([bucket]))[0]:
            bucket = self._sessions.next_slot(ts_ns)  # published while closed: counts in the next session's bar
        if self._next_ns is not None and bucket < self._next_ns:
            self.dropped["late_news"] += 1
            bucket = self._next_ns
        pending = self._pending.get(bucket)
        if pending is None:
            pending = self._pending[bucket] = (np.zeros(len(self.symbols)), np.zeros(len(self.symbols)))
        for symbol in symbols:
            col = self._column.get(symbol)
            if col is not None:
                pending[0][col] += score
                pending[1][col] += 1.0

    def update(self, start_ns: int, bars: Iterable[Bar]) -> FeatureStep | None:
        """Close the interval starting at ``start_ns`` with the bars that closed in it.

        Intervals skipped since the last update (no bar at all) are gap-filled first, so
        features stay on the grid of open slots (a closed market's nights and weekends are not
        slots). Returns the interval's features, or None when ``start_ns`` was already closed
        (counted as ``late_update``).
        """
        if start_ns % self._interval_ns != 0:
            raise ValueError(f"start_ns {start_ns} is not a multiple of {self.feature_set.interval_s} s")
        if not self._sessions.always_open and not self._sessions.is_open(np.array([start_ns]))[0]:
            raise ValueError(f"start_ns {start_ns} is outside the {self._sessions.name} sessions")
        if self._next_ns is not None and start_ns < self._next_ns:
            self.dropped["late_update"] += 1
            return None
        if self._next_ns is not None:
            while self._next_ns < start_ns:
                self._step(self._next_ns, ())
        return self._step(start_ns, bars)

    def _step(self, start_ns: int, bars: Iterable[Bar]) -> FeatureStep:
        n = len(self.symbols)
        observed = np.zeros(n, dtype=bool)
        raw = np.full((8, n), np.nan)  # open high low close vwap volume buy_volume trades
        for bar in bars:
            col = self._column.get(bar.symbol)
            if col is None:
                self.dropped["unknown_symbol"] += 1
            elif bar.start_ns != start_ns:
                self.dropped["misaligned_bar"] += 1
            elif observed[col]:
                self.dropped["duplicate_bar"] += 1
            elif not _valid(bar):
                self.dropped["invalid_bar"] += 1
            else:
                observed[col] = True
                raw[:, col] = (bar.open, bar.high, bar.low, bar.close, bar.vwap, bar.volume, bar.buy_volume, bar.trades)
        self._present |= observed
        filled = self._present & ~observed
        present = self._present
        inputs: dict[str, Array] = {}
        for i, name in enumerate(("open", "high", "low", "close", "vwap")):
            inputs[name] = np.where(filled, self._last_close, raw[i])
        for i, name in enumerate(("volume", "buy_volume", "trades"), start=5):
            inputs[name] = np.where(filled, 0.0, raw[i])
        self._last_close = np.where(observed, raw[3], self._last_close)
        score, count = self._pending.pop(start_ns, (np.zeros(n), np.zeros(n)))
        inputs["news_score"] = np.where(present, score, np.nan)
        inputs["news_count"] = np.where(present, count, np.nan)
        inputs["day_angle"] = np.where(present, self._sessions.day_angle(start_ns), np.nan)
        self._inputs = inputs
        values: list[Array | float] = [0.0] * len(self._plan)
        for i, (step, args) in enumerate(self._plan):
            values[i] = step([values[a] for a in args])
        self._steps += 1
        self._next_ns = (
            start_ns + self._interval_ns if self._sessions.always_open else self._sessions.next_slot(start_ns)
        )
        out = np.empty((n, len(self._outputs)))
        for j, slot in enumerate(self._outputs):
            out[:, j] = values[slot]
        return FeatureStep(
            start_ns, tuple(s for s, p in zip(self.symbols, present, strict=True) if p), out[present], observed[present]
        )

    # --- one compiled update per node -----------------------------------------------------

    def _compile(self, node: Expr) -> _Step:
        n = len(self.symbols)
        if node.op == "col":
            name = str(node.params[0])
            assert name in INPUTS
            return lambda _: self._inputs[name]
        if node.op == "const":
            value = float(node.params[0])
            return lambda _: value
        if node.op in ELEMENTWISE:
            op = node.op
            return lambda args: elementwise(op, args)
        if node.op == "lag":
            return _Lag(int(node.params[0]), n)
        if node.op == "rolling_sum":
            return _RollingSum(int(node.params[0]), n, self)
        if node.op in ("ewm", "decay_sum"):
            return _Recurrence(recurrence_factor(node), int(node.params[1]), node.op == "ewm", n)
        if node.op == "cross_mean":
            return lambda args: self._cross_mean(np.asarray(args[0], dtype=np.float64))
        raise ValueError(f"unknown operator {node.op!r}")

    def _cross_mean(self, x: Array) -> Array:
        valid = np.isfinite(x)
        count = int(valid.sum())
        mean = float(np.where(valid, x, 0.0).sum()) / count if count else math.nan
        out: Array = np.where(self._present, mean, np.nan)
        return out


def _valid(bar: Bar) -> bool:
    prices = (bar.open, bar.high, bar.low, bar.close, bar.vwap)
    if not all(math.isfinite(p) and p > 0.0 for p in prices):
        return False
    if not bar.low <= bar.open <= bar.high or not bar.low <= bar.close <= bar.high:
        return False
    return math.isfinite(bar.volume) and 0.0 <= bar.buy_volume <= bar.volume * (1 + 1e-12)


class _Lag:
    def __init__(self, k: int, n: int) -> None:
        self.ring = np.full((k, n), np.nan)
        self.pos = 0

    def __call__(self, args: list[Array | float]) -> Array:
        out: Array = self.ring[self.pos].copy()
        self.ring[self.pos] = args[0]
        self.pos = (self.pos + 1) % len(self.ring)
        return out


class _RollingSum:
    def __init__(self, window: int, n: int, owner: OnlineFeatures) -> None:
        self.window = window
        self.running = np.zeros(n)
        self.missing = np.zeros(n, dtype=np.int64)
        self.ring = np.zeros((window, n))
        self.ring_missing = np.zeros((window, n), dtype=np.int64)
        self.pos = 0
        self.owner = owner

    def __call__(self, args: list[Array | float]) -> Array:
        x = np.asarray(args[0], dtype=np.float64)
        nan = np.isnan(x)
        self.running = self.running + np.where(nan, 0.0, x)
        self.missing = self.missing + nan
        out: Array = self.running - self.ring[self.pos]
        out[self.missing - self.ring_missing[self.pos] > 0] = np.nan
        if self.owner._steps < self.window - 1:
            out[:] = np.nan
        self.ring[self.pos] = self.running
        self.ring_missing[self.pos] = self.missing
        self.pos = (self.pos + 1) % self.window
        return out


class _Recurrence:
    def __init__(self, decay: float, min_periods: int, normalized: bool, n: int) -> None:
        self.decay = decay
        self.min_periods = min_periods
        self.normalized = normalized
        self.weighted = np.zeros(n)
        self.weights = np.zeros(n)
        self.seen = np.zeros(n, dtype=np.int64)

    def __call__(self, args: list[Array | float]) -> Array:
        x = np.asarray(args[0], dtype=np.float64)
        valid = np.isfinite(x)
        self.weighted = self.decay * self.weighted + np.where(valid, x, 0.0)
        self.seen = self.seen + valid
        out = self.weighted
        if self.normalized:
            self.weights = self.decay * self.weights + valid
            out = out / np.where(self.weights > 0.0, self.weights, np.nan)
        masked: Array = np.where(self.seen >= self.min_periods, out, np.nan)
        return masked


def replay_features(
    feature_set: FeatureSet,
    bars: Iterable[Bar],
    *,
    news: Iterable[tuple[int, Sequence[str], float]] = (),
    symbols: Iterable[str] | None = None,
) -> tuple[OnlineFeatures, list[FeatureStep]]:
    """Feed stored bars (and headlines) through :class:`OnlineFeatures` in time order.

    This is how a live process warms its state up from history, and how the parity test
    drives the online path. A headline ``(ts_ns, symbols, score)`` is added before the
    interval it was published in closes.

    Returns:
        The evaluator (ready to continue live) and one step per interval from the first bar.
    """
    by_start: dict[int, list[Bar]] = {}
    for bar in bars:
        by_start.setdefault(bar.start_ns, []).append(bar)
    universe = {b.symbol for group in by_start.values() for b in group} if symbols is None else set(symbols)
    online = OnlineFeatures(feature_set, universe)
    headlines = sorted(news, key=lambda item: item[0])
    interval_ns = feature_set.interval_s * NS_PER_S
    steps: list[FeatureStep] = []
    i = 0
    for start in sorted(by_start):
        while i < len(headlines) and headlines[i][0] < start + interval_ns:
            online.add_news(*headlines[i])
            i += 1
        if online.next_ts_ns is not None:
            while online.next_ts_ns < start:
                skipped = online.next_ts_ns
                step = online.update(skipped, ())
                assert step is not None
                steps.append(step)
        step = online.update(start, by_start[start])
        assert step is not None
        steps.append(step)
    return online, steps
