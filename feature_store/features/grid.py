"""Bars (and news) on a regular time grid: the common input of both evaluators.

Every symbol gets one row per open bar slot from its first bar on (every slot for a 24/7
market; the slots of its sessions for a market that closes, see
:mod:`feature_store.features.calendars`). A slot with no bar is filled as a bar with no
trades: open, high, low, close and VWAP at the last close, volume,
buy volume and trade count zero. Before a symbol's first bar every input is NaN. The
online evaluator fills in exactly the same way, bar by bar.

Input policy (offline data is checked whole; one bad row rejects the input, naming it):
bars must have one interval, starts aligned to it, no (symbol, start) twice, finite positive
prices with ``low <= open, close <= high``, and finite volumes with
``0 <= buy_volume <= volume``. Headlines must have a finite ``score``; mentions of symbols
outside the grid's universe are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_store.errors import DataValidationError, UnknownFeatureError
from feature_store.features.calendars import ALWAYS_OPEN, SessionCalendar, session_calendar
from feature_store.features.expressions import INPUTS
from feature_store.features.kernels import Array
from feature_store.records import NS_PER_S

__all__ = ["BarGrid", "bar_grid", "check_bars", "day_angle"]

_PRICES = ("open", "high", "low", "close", "vwap")
_REQUIRED = ("symbol", "start_ns", "open", "high", "low", "close", "volume", "buy_volume", "vwap", "trades")


@dataclass(frozen=True)
class BarGrid:
    """Per-bar inputs as (time x symbol) arrays.

    Attributes:
        interval_s: bar length.
        times: bar starts, UTC epoch ns, ascending: every slot (24/7) or every open slot of
            the calendar's sessions.
        symbols: the universe, sorted (the column order).
        inputs: each of ``INPUTS`` as a float64 array of shape (times, symbols).
        present: True from each symbol's first bar on.
        observed: True where a real bar existed (False where the bar was gap-filled).
    """

    interval_s: int
    times: npt.NDArray[np.int64]
    symbols: tuple[str, ...]
    inputs: dict[str, Array]
    present: npt.NDArray[np.bool_]
    observed: npt.NDArray[np.bool_]


def day_angle(start_ns: npt.NDArray[np.int64] | int) -> Array:
    """``2 * pi`` times the fraction of the UTC day at which a bar starts (the 24/7 time of day)."""
    return SessionCalendar(ALWAYS_OPEN, 60).day_angle(start_ns)


def check_bars(
    bars: pd.DataFrame, interval_s: int, source: str = "bars", calendar: SessionCalendar | None = None
) -> None:
    """Raise :class:`DataValidationError` naming the first row that breaks the input policy.

    With a ``calendar`` that closes, a bar outside its sessions is an error too.
    """
    missing = [c for c in _REQUIRED if c not in bars]
    if missing:
        raise DataValidationError(source, None, f"missing column(s) {missing}")
    n = len(bars)
    start = bars["start_ns"].to_numpy(np.int64)
    problems: list[tuple[npt.NDArray[np.bool_], str]] = []
    if "interval_s" in bars:
        problems.append((bars["interval_s"].to_numpy(np.int64) != interval_s, f"interval_s is not {interval_s}"))
    problems.append((start % (interval_s * NS_PER_S) != 0, f"start_ns is not a multiple of {interval_s} s"))
    prices = {c: bars[c].to_numpy(np.float64) for c in _PRICES}
    for c, v in prices.items():
        problems.append((~(np.isfinite(v) & (v > 0.0)), f"{c} is not a finite positive price"))
    high, low = prices["high"], prices["low"]
    for c in ("open", "close"):
        problems.append(((prices[c] > high) | (prices[c] < low), f"{c} is outside [low, high]"))
    volume = bars["volume"].to_numpy(np.float64)
    buy = bars["buy_volume"].to_numpy(np.float64)
    problems.append((~(np.isfinite(volume) & (volume >= 0.0)), "volume is not finite and >= 0"))
    problems.append(
        (~(np.isfinite(buy) & (buy >= 0.0) & (buy <= volume * (1 + 1e-12))), "buy_volume not in [0, volume]")
    )
    problems.append((bars.duplicated(["symbol", "start_ns"]).to_numpy(), "the same (symbol, start_ns) appears twice"))
    if calendar is not None and not calendar.always_open and n:
        problems.append((~calendar.is_open(start), f"the bar starts outside the {calendar.name} sessions"))
    bad = np.zeros(n, dtype=bool)
    for mask, _ in problems:
        bad |= mask
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        why = next(text for mask, text in problems if mask[row])
        symbol, ts = bars["symbol"].iloc[row], int(start[row])
        raise DataValidationError(source, row + 1, f"{why} (symbol {symbol}, start_ns {ts})")


def bar_grid(
    bars: pd.DataFrame,
    interval_s: int,
    *,
    news: pd.DataFrame | None = None,
    symbols: Sequence[str] | None = None,
    calendar: str = ALWAYS_OPEN,
) -> BarGrid:
    """Check ``bars`` and lay them (and news) out on the grid of open bar slots.

    Args:
        bars: columns as in ``BAR_COLUMNS`` (any order of rows).
        interval_s: the bar length of the feature set.
        news: headlines with ``ts_ns``, ``symbols`` and a numeric ``score``; a headline counts
            in the bar during which it was published.
        symbols: the universe (default: every symbol in ``bars``); bars of other symbols are
            an error.
        calendar: the session calendar (``24/7`` or an exchange calendar name).

    Raises:
        DataValidationError: a row breaks the input policy.
        UnknownFeatureError: ``bars`` has symbols outside ``symbols``.
    """
    sessions = session_calendar(calendar, interval_s)
    check_bars(bars, interval_s, calendar=sessions)
    universe = tuple(sorted(set(bars["symbol"].tolist()) if symbols is None else set(symbols)))
    unknown = sorted(set(bars["symbol"].tolist()) - set(universe))
    if unknown:
        raise UnknownFeatureError(f"bars have symbols outside the universe: {unknown[:10]}")
    if len(bars) == 0:
        times = np.empty(0, dtype=np.int64)
    else:
        start = bars["start_ns"].to_numpy(np.int64)
        times = sessions.slots(int(start.min()), int(start.max()))
    shape = (len(times), len(universe))
    col_of = {s: i for i, s in enumerate(universe)}
    rows = np.searchsorted(times, bars["start_ns"].to_numpy(np.int64)).astype(np.intp)
    cols = np.array([col_of[s] for s in bars["symbol"].tolist()], dtype=np.intp)

    observed = np.zeros(shape, dtype=bool)
    observed[rows, cols] = True
    present = np.logical_or.accumulate(observed, axis=0) if len(times) else observed
    raw: dict[str, Array] = {}
    for name in ("open", "high", "low", "close", "vwap", "volume", "buy_volume", "trades"):
        grid = np.full(shape, np.nan)
        grid[rows, cols] = bars[name].to_numpy(np.float64)
        raw[name] = grid
    # Index of the last observed row at or before each row: carries the close forward.
    last_seen = np.where(observed, np.arange(len(times))[:, None], 0)
    last_seen = np.maximum.accumulate(last_seen, axis=0) if len(times) else last_seen
    carried = np.take_along_axis(raw["close"], last_seen, axis=0)
    filled = present & ~observed
    inputs: dict[str, Array] = {}
    for name in ("open", "high", "low", "close", "vwap"):
        inputs[name] = np.where(filled, carried, raw[name])
    for name in ("volume", "buy_volume", "trades"):
        inputs[name] = np.where(filled, 0.0, raw[name])
    score, count = _news_grid(news, times, col_of, sessions, shape)
    inputs["news_score"] = np.where(present, score, np.nan)
    inputs["news_count"] = np.where(present, count, np.nan)
    inputs["day_angle"] = np.where(present, sessions.day_angle(times)[:, None], np.nan)
    assert set(inputs) == set(INPUTS)
    return BarGrid(interval_s, times, universe, inputs, present, observed)


def _news_grid(
    news: pd.DataFrame | None,
    times: npt.NDArray[np.int64],
    col_of: dict[str, int],
    sessions: SessionCalendar,
    shape: tuple[int, int],
) -> tuple[Array, Array]:
    score = np.zeros(shape)
    count = np.zeros(shape)
    if news is None or len(news) == 0 or len(times) == 0:
        return score, count
    for c in ("ts_ns", "symbols", "score"):
        if c not in news:
            raise DataValidationError("news", None, f"missing column {c!r}")
    values = pd.to_numeric(news["score"], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataValidationError("news", row + 1, f"score {news['score'].iloc[row]!r} is not a finite number")
    ts = news["ts_ns"].to_numpy(np.int64)
    order = np.argsort(ts, kind="stable")
    flat_index: list[int] = []
    flat_score: list[float] = []
    # A headline counts in the slot it was published in, or (published while the market was
    # closed) the next session's first slot; headlines whose slot is not on the grid are ignored.
    interval_ns = sessions.interval_s * NS_PER_S
    bucket = ts // interval_ns * interval_ns
    if not sessions.always_open and len(ts):
        closed = ~sessions.is_open(bucket)
        if closed.any():
            ahead = sessions.slots(int(ts.min()) // interval_ns * interval_ns, int(ts.max()) + 16 * 86_400 * NS_PER_S)
            following = np.searchsorted(ahead, ts[closed], side="right")
            bucket[closed] = np.where(following < len(ahead), ahead[np.minimum(following, len(ahead) - 1)], -1)
    bar_of = np.searchsorted(times, bucket)
    on_grid = (bar_of < len(times)) & (times[np.minimum(bar_of, len(times) - 1)] == bucket)
    for i in order.tolist():
        row = int(bar_of[i])
        if not on_grid[i]:
            continue
        for symbol in news["symbols"].iloc[i]:
            col = col_of.get(symbol)
            if col is not None:
                flat_index.append(row * shape[1] + col)
                flat_score.append(float(values[i]))
    # np.add.at adds in order, one by one: the same sums as the online accumulator.
    np.add.at(score.reshape(-1), np.asarray(flat_index, dtype=np.intp), np.asarray(flat_score))
    np.add.at(count.reshape(-1), np.asarray(flat_index, dtype=np.intp), 1.0)
    return score, count
