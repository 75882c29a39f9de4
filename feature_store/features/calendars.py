"""Session calendars: which bar slots a market is open for, and where a bar sits in its session.

Bars are slots aligned to the bar length on the UTC epoch (a 1-hour bar starts on the hour,
a daily bar at 00:00 UTC). Crypto trades around the clock (``24/7``): every slot is a bar
and a slot without trades is gap-filled. Equities and FX close: with an exchange calendar
(``XNYS``, ``XLON``, ``24/5``... any name :mod:`exchange_calendars` knows) a slot is a bar
when it overlaps one of the exchange's sessions, so nights, weekends and holidays are not
gap-filled, and lags, rolling windows and forward returns count session bars.

The time-of-day input (``day_angle``) is the bar's position in its session: 2 pi times
the share of the session elapsed at the bar's start (for 24/7, the share of the UTC day).
On daily bars every bar is a whole session, so it is constant there.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_store.errors import DataValidationError
from feature_store.records import NS_PER_S

__all__ = ["ALWAYS_OPEN", "SessionCalendar", "session_calendar"]

ALWAYS_OPEN = "24/7"
_DAY_NS = 86_400 * NS_PER_S
# exchange_calendars builds a calendar for a span of years; sessions outside it raise.
_FIRST_YEAR, _LAST_YEAR = 1990, 2040


@dataclass(frozen=True)
class _Sessions:
    opens: npt.NDArray[np.int64]  # epoch ns, ascending
    closes: npt.NDArray[np.int64]


@functools.lru_cache(maxsize=8)
def _sessions(name: str) -> _Sessions:
    import exchange_calendars as xc

    try:
        # exchange_calendars warns about its own use of pandas APIs that pandas is deprecating.
        with warnings.catch_warnings(action="ignore"):
            calendar = xc.get_calendar(name, start=f"{_FIRST_YEAR}-01-01", end=f"{_LAST_YEAR}-12-31")
            schedule = calendar.schedule
    except xc.errors.InvalidCalendarName:
        raise DataValidationError(
            "calendar", None, f"unknown session calendar {name!r}: use 24/7 or an exchange_calendars name such as XNYS"
        ) from None
    opens = pd.DatetimeIndex(schedule["open"]).as_unit("ns").asi8.astype(np.int64)
    closes = pd.DatetimeIndex(schedule["close"]).as_unit("ns").asi8.astype(np.int64)
    return _Sessions(opens, closes)


@dataclass(frozen=True)
class SessionCalendar:
    """The bar slots of one market's sessions for one bar length.

    Attributes:
        name: ``24/7`` or an :mod:`exchange_calendars` name (``XNYS``, ``XLON``, ``24/5``...).
        interval_s: the bar length.
    """

    name: str
    interval_s: int

    @property
    def always_open(self) -> bool:
        return self.name == ALWAYS_OPEN

    @property
    def _interval_ns(self) -> int:
        return self.interval_s * NS_PER_S

    def slots(self, first_ns: int, last_ns: int) -> npt.NDArray[np.int64]:
        """Every open slot start from ``first_ns`` to ``last_ns`` inclusive (both slot starts)."""
        step = self._interval_ns
        if self.always_open:
            return np.arange(first_ns, last_ns + step, step, dtype=np.int64)
        sessions = _sessions(self.name)
        lo = max(0, int(np.searchsorted(sessions.closes, first_ns, side="right")) - 1)
        hi = int(np.searchsorted(sessions.opens, last_ns + step, side="left"))
        parts = []
        for open_ns, close_ns in zip(sessions.opens[lo:hi].tolist(), sessions.closes[lo:hi].tolist(), strict=True):
            # Slots [s, s + step) that overlap [open, close).
            first = open_ns // step * step
            parts.append(np.arange(first, close_ns, step, dtype=np.int64))
        if not parts:
            return np.empty(0, dtype=np.int64)
        out = np.unique(np.concatenate(parts))
        return out[(out >= first_ns) & (out <= last_ns)]

    def next_slot(self, after_ns: int) -> int:
        """The first open slot that starts after ``after_ns``."""
        step = self._interval_ns
        candidate = after_ns // step * step + step
        if self.always_open:
            return candidate
        ahead = self.slots(candidate, candidate + 15 * _DAY_NS + step)
        if len(ahead) == 0:
            raise DataValidationError("calendar", None, f"{self.name} has no session in the 15 days after {after_ns}")
        return int(ahead[0])

    def is_open(self, start_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """True where a slot starting at ``start_ns`` overlaps a session."""
        start = np.asarray(start_ns, dtype=np.int64)
        if self.always_open:
            return np.ones(start.shape, dtype=bool)
        sessions = _sessions(self.name)
        # The last session opening before the slot ends must still be open when the slot starts.
        i = np.searchsorted(sessions.opens, start + self._interval_ns, side="left") - 1
        ok = i >= 0
        closes = sessions.closes[np.clip(i, 0, None)]
        return np.asarray(ok & (closes > start), dtype=bool)

    def bar_numbers(self, start_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Each open slot's number: consecutive across sessions (Friday's last bar and Monday's
        first are neighbours), the epoch bar count for 24/7. Slots that are not open get the
        number of the next open slot."""
        start = np.asarray(start_ns, dtype=np.int64)
        if self.always_open:
            return start // self._interval_ns
        return np.asarray(np.searchsorted(_all_slots(self.name, self.interval_s), start), dtype=np.int64)

    def previous_slots(self, last_ns: int, count: int) -> npt.NDArray[np.int64]:
        """The ``count`` open slots ending with ``last_ns`` (an open slot), oldest first."""
        if self.always_open:
            return last_ns - self._interval_ns * np.arange(count - 1, -1, -1, dtype=np.int64)
        every = _all_slots(self.name, self.interval_s)
        end = int(np.searchsorted(every, last_ns)) + 1
        out = every[max(0, end - count) : end]
        if len(out) < count:  # before the calendar's first year: pad with slots nothing is stored at
            out = np.concatenate([np.full(count - len(out), -1, dtype=np.int64), out])
        return out

    def day_angle(self, start_ns: npt.NDArray[np.int64] | int) -> npt.NDArray[np.float64]:
        """2 pi times the share of its session (24/7: of the UTC day) elapsed at each bar start."""
        start = np.asarray(start_ns, dtype=np.int64)
        if self.always_open:
            seconds = start // NS_PER_S % 86400
            return np.asarray(seconds * (2.0 * np.pi / 86400.0), dtype=np.float64)
        sessions = _sessions(self.name)
        i = np.clip(np.searchsorted(sessions.opens, start + self._interval_ns, side="left") - 1, 0, None)
        opens, closes = sessions.opens[i], sessions.closes[i]
        share = np.clip((start - opens) / np.maximum(closes - opens, 1), 0.0, 1.0)
        return np.asarray(share * 2.0 * np.pi, dtype=np.float64)


@functools.lru_cache(maxsize=8)
def _all_slots(name: str, interval_s: int) -> npt.NDArray[np.int64]:
    """Every open slot of the calendar's span (a few MB for one-minute bars, built once)."""
    sessions = _sessions(name)
    calendar = SessionCalendar(name, interval_s)
    return calendar.slots(
        int(sessions.opens[0]) // (interval_s * NS_PER_S) * interval_s * NS_PER_S, int(sessions.closes[-1])
    )


def session_calendar(name: str, interval_s: int) -> SessionCalendar:
    """The calendar ``name`` for bars of ``interval_s`` seconds (checked: unknown names raise)."""
    if name != ALWAYS_OPEN:
        _sessions(name)
    return SessionCalendar(name, interval_s)
