"""Trades to bars to online features to Redis, and everything to the recorder.

:class:`DataPlane` is the sink the feeds deliver to. Per trade it updates the symbol's
open bar (:class:`feature_store.bars.BarAggregator`, O(1)) and hands the trade to the
recorder. Bars close on the venue's clock: an interval ``[t, t + bar)`` closes once the
feeds' clock passes ``t + bar + grace`` (the latest venue time seen, advanced by the local
clock while the market is quiet), so trades that arrive a little late still count. The
close is an event, not a poll: the first message stamped past that time starts it at once,
and a timer set for that time starts it in a quiet market. At each close, every feature
set's :class:`~feature_store.features.online.OnlineFeatures` steps once for all symbols
(gap-filling those without a bar), and the steps of all sets are written to Redis in one
round trip (``RedisOnlineStore.write_latest_many``); then the trader decides (``on_close``),
and only then are the bars and features handed to the recorder.

When Redis is away the features keep being computed in memory; the steps not yet written
(at most the store's window of bars per set) are written, oldest first, once it answers
again. A trade older than an interval already closed is still recorded, but counted in
``late_trades`` and left out of the bars. The first interval is partial (the engine joined
it mid-way), so its bars are neither used nor recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from engine.config import BarInterval
from engine.feeds.book import OrderBook
from engine.feeds.records import Quote
from engine.recorder import Recorder
from feature_store.bars import BarAggregator
from feature_store.errors import DataValidationError, StorageError
from feature_store.features.online import FeatureStep, OnlineFeatures
from feature_store.features.registry import FeatureSet
from feature_store.records import NS_PER_S, Bar, Trade
from feature_store.redis_store import RedisOnlineStore

__all__ = ["DataPlane", "DataPlaneStats"]

log = logging.getLogger("engine.dataplane")


@dataclass
class DataPlaneStats:
    """Counters of the data plane (exported as Prometheus metrics)."""

    trades: int = 0
    late_trades: int = 0
    bars: int = 0
    intervals_closed: int = 0
    book_snapshots: int = 0
    online_writes: int = 0
    online_failures: int = 0
    online_unwritten: int = 0
    online_refused: int = 0
    gaps_skipped: int = 0  # gaps in stored data jumped over (a backtest)
    intervals_skipped: int = 0  # the intervals without a trade in those gaps
    last_close_ns: int = 0
    last_error: str = ""
    # Seconds from the close decision to the features being in Redis, per interval.
    close_to_online_s: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    # Seconds from the interval's end (venue clock) to the features being in Redis.
    interval_end_to_online_s: deque[float] = field(default_factory=lambda: deque(maxlen=4096))


class DataPlane:
    """The feeds' sink: bars, online features, book snapshots and recording.

    Args:
        symbols: the universe (every feed's symbols).
        feature_sets: the sets to compute online (their interval is set to ``bar_seconds``).
        online: where features go (None: computed, not stored online).
        recorder: where trades, bars, snapshots and features are recorded (None: nowhere).
        interval: the bar interval.
        grace_s: how long after an interval's end trades may still arrive for it.
        book_every_s: record each book at most this often (0: never).
        book_depth: levels per side in a recorded snapshot.
        on_close: awaited after each interval is closed and its features are online, with
            the interval's start, its bars, the feature steps and the monotonic time at
            which the close began (the trading plane decides there).
        wall_clock: advance the venue clock with the local clock while the market is quiet
            (live). A backtest turns it off: only the data moves its clock.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        feature_sets: Sequence[FeatureSet],
        *,
        online: RedisOnlineStore | None,
        recorder: Recorder | None,
        interval: BarInterval,
        grace_s: float = 0.25,
        book_every_s: float = 1.0,
        book_depth: int = 10,
        on_close: Callable[[int, list[Bar], list[FeatureStep], float], Awaitable[None]] | None = None,
        wall_clock: bool = True,
    ) -> None:
        self.symbols = sorted(set(symbols))
        self.interval = interval
        bar_seconds = self.bar_seconds = interval.seconds
        self.interval_ns = interval.ns
        self.grace_ns = int(grace_s * NS_PER_S)
        self.feature_sets = [fs.with_interval(bar_seconds) for fs in feature_sets]
        self.features = [OnlineFeatures(fs, self.symbols) for fs in self.feature_sets]
        self.online = online
        self.recorder = recorder
        self.book_every_ns = int(book_every_s * NS_PER_S)
        self.book_depth = book_depth
        self.stats = DataPlaneStats()
        self.bars = BarAggregator(bar_seconds)
        self._closed_bars: dict[int, list[Bar]] = {}
        self._closed_until: int | None = None  # every interval starting before this is closed
        self._first_full: int | None = None
        self._clock_ns = 0
        self._clock_seen = 0.0
        self._last_book: dict[str, int] = {}
        # Older intervals than the store's window would be refused anyway.
        self._unwritten: deque[list[FeatureStep]] = deque(maxlen=online.layout.window if online else 1)
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self.on_close = on_close
        self.wall_clock = wall_clock
        # While an interval is being closed: the venue time of its close (see next_close_ns).
        self.closing_ns: int | None = None
        self._crossed_at: float | None = None  # arrival of the message past the next close
        self.last_steps: list[FeatureStep] = []
        self._warm_last: tuple[int, list[Bar], list[FeatureStep]] | None = None

    # --- FeedSink -------------------------------------------------------------------------

    def on_trade(self, trade: Trade) -> None:
        stats = self.stats
        stats.trades += 1
        if self.recorder is not None:
            self.recorder.add_trade(trade)
        ts = trade.ts_ns
        if ts > self._clock_ns:
            self._advance_clock(ts)
        if self._first_full is None:
            self._first_full = (ts // self.interval_ns + 1) * self.interval_ns
            self._closed_until = self._first_full
            self._wake.set()  # the first close's time is known: run() sets its timer
        if ts < self._first_full:
            return  # the partial first interval
        if self._closed_until is not None and ts < self._closed_until:
            stats.late_trades += 1
            return
        for bar in self.bars.add(trade):
            self._closed_bars.setdefault(bar.start_ns, []).append(bar)

    def on_book(self, venue: str, book: OrderBook) -> None:
        if not self.book_every_ns or self.recorder is None:
            return
        last = self._last_book.get(book.symbol, 0)
        if book.ts_ns - last >= self.book_every_ns:
            self._last_book[book.symbol] = book.ts_ns
            bids, asks = book.top(self.book_depth)
            self.recorder.add_book(venue, book.symbol, book.ts_ns, bids, asks)
            self.stats.book_snapshots += 1

    def on_quote(self, quote: Quote) -> None:
        return None

    def add_news(self, ts_ns: int, symbols: Sequence[str], score: float) -> None:
        """A scored headline: it counts in the sentiment features of the interval it falls in."""
        for fs, online in zip(self.feature_sets, self.features, strict=True):
            if fs.name == "sentiment":
                online.add_news(ts_ns, symbols, score)

    def on_time(self, venue: str, ts_ns: int) -> None:
        if ts_ns > self._clock_ns:
            self._advance_clock(ts_ns)

    def _advance_clock(self, ts_ns: int) -> None:
        """The venue clock moved to ``ts_ns`` (a message just arrived). The first message at or
        past the next close's time closes the interval: it wakes :meth:`run` at once, and its
        arrival is when that close began (the tick-to-decision latency counts from it)."""
        now = time.monotonic()
        self._clock_ns, self._clock_seen = ts_ns, now
        until = self._closed_until
        if self._crossed_at is None and until is not None and ts_ns >= until + self.interval_ns + self.grace_ns:
            self._crossed_at = now
            self._wake.set()

    # --- warming up -----------------------------------------------------------------------

    async def warm_up(self, bars: Sequence[Bar], *, record: bool = True) -> int:
        """Step the features through past ``bars`` (the engine's start-up history) before any
        trade; the last window of steps goes to Redis so that models can read full windows at
        once. ``record`` stores the bars too (a backtest of this run warms up from them).

        The interval after the last warm-up bar is the first live one, even if the engine
        joins it part-way (better a thin bar than a hole in every window). Returns the
        intervals stepped."""
        by_start: dict[int, list[Bar]] = {}
        for bar in bars:
            if bar.interval_s != self.bar_seconds:
                raise ValueError(
                    f"warm-up bar of {bar.symbol} is {bar.interval_s} s long; the engine uses {self.bar_seconds} s bars"
                )
            by_start.setdefault(bar.start_ns, []).append(bar)
        keep = self._unwritten.maxlen or 1
        for start in sorted(by_start):
            steps = [s for s in (online.update(start, by_start[start]) for online in self.features) if s is not None]
            self._warm_last = (start, by_start[start], steps)
            if self.recorder is not None and record:
                for bar in by_start[start]:
                    self.recorder.add_bar(bar)
            if self.online is not None:
                self._unwritten.append(steps)
                if len(self._unwritten) >= keep:
                    self._unwritten.popleft()
        if by_start and (self._first_full is None or (not self.stats.trades and max(by_start) >= self._first_full)):
            self._first_full = self._closed_until = max(by_start) + self.interval_ns
        if self.online is not None:
            await self._write_online()
        return len(by_start)

    async def decide_warm_up(self) -> int | None:
        """Hand the last warm-up interval to ``on_close`` (a trader decides on it at once, rather
        than a bar later); return its start, or None when there was no warm-up."""
        if self._warm_last is None or self.on_close is None:
            return None
        start, bars, steps = self._warm_last
        self._warm_last = None
        self.last_steps = steps
        await self.on_close(start, bars, steps, time.monotonic())
        return start

    # --- closing intervals ----------------------------------------------------------------

    def clock_ns(self) -> int:
        """The venue clock: the latest venue time seen, advanced by the local clock since."""
        if not self._clock_ns or not self.wall_clock:
            return self._clock_ns
        return self._clock_ns + int((time.monotonic() - self._clock_seen) * NS_PER_S)

    def next_close_ns(self) -> int | None:
        """The venue time at which the next interval closes (None before the first trade), or,
        while one is being closed, the time of that close."""
        if self.closing_ns is not None:
            return self.closing_ns
        if self._closed_until is None:
            return None
        return self._closed_until + self.interval_ns + self.grace_ns

    def due(self) -> int | None:
        """The start of the next interval to close, if its time has come."""
        if self._closed_until is None:
            return None
        if self.clock_ns() >= self._closed_until + self.interval_ns + self.grace_ns:
            return self._closed_until
        return None

    def wake(self) -> None:
        """Check for a due interval now rather than at the next tick."""
        self._wake.set()

    async def run(self) -> None:
        """Close intervals as their time comes, until :meth:`stop`: at the message that carries
        the venue clock past an interval's close (see :meth:`_advance_clock`), or, in a quiet
        market, at a timer set for when the local clock carries it there."""
        while not self._stopping.is_set():
            start = self.due()
            if start is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._until_due())
                continue
            await self.close_interval(start, self._close_began(start))

    def _until_due(self) -> float | None:
        """Seconds until the local clock carries the venue clock to the next close (None: not
        known before the first trade; a message wakes :meth:`run` then)."""
        due = self.next_close_ns()
        if due is None or not self._clock_ns or not self.wall_clock:
            return None
        return min(1.0, max(0.0, (due - self.clock_ns()) / NS_PER_S))

    def _close_began(self, start_ns: int) -> float:
        """When the close of the interval at ``start_ns`` began (monotonic): the arrival of the
        message past its close time, or else when the local clock carried the venue clock there."""
        crossed, self._crossed_at = self._crossed_at, None
        if crossed is not None:
            return crossed
        due = start_ns + self.interval_ns + self.grace_ns
        return self._clock_seen + max(0, due - self._clock_ns) / NS_PER_S

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def skip_to(self, ts_ns: int) -> int:
        """Jump over a gap in the data: the next interval to close is the one holding ``ts_ns``,
        and the features start again with no history (they warm up over the bars that follow),
        as at a fresh start. Returns the intervals skipped."""
        assert self._closed_until is not None, "nothing closed yet: there is no gap to skip"
        start = ts_ns // self.interval_ns * self.interval_ns
        skipped = max(0, (start - self._closed_until) // self.interval_ns)
        if not skipped:
            return 0
        self._closed_until = start
        self.features = [online.restarted() for online in self.features]
        self._unwritten.clear()  # older than anything written from now on
        self.stats.gaps_skipped += 1
        self.stats.intervals_skipped += skipped
        return skipped

    async def close_interval(self, start_ns: int, began: float | None = None) -> list[FeatureStep]:
        """Close ``[start_ns, start_ns + bar)``: bars, features, Redis, the decision
        (``on_close``), then recording. ``began``: when the close began (monotonic; default now)."""
        decided = time.monotonic() if began is None else began
        self._crossed_at = None  # from here on, a message past the next close starts that one
        end = start_ns + self.interval_ns
        self.closing_ns = end + self.grace_ns
        try:
            return await self._close(start_ns, end, decided)
        finally:
            self.closing_ns = None

    async def _close(self, start_ns: int, end: int, decided: float) -> list[FeatureStep]:
        for bar in self.bars.flush(end):
            self._closed_bars.setdefault(bar.start_ns, []).append(bar)
        bars = self._closed_bars.pop(start_ns, [])
        for stale in [k for k in self._closed_bars if k < start_ns]:
            self._closed_bars.pop(stale)  # cannot happen with a monotone clock; never kept
        self._closed_until = end
        self.stats.intervals_closed += 1
        self.stats.bars += len(bars)
        self.stats.last_close_ns = start_ns
        steps: list[FeatureStep] = []
        for online in self.features:
            step = online.update(start_ns, bars)
            if step is not None:
                steps.append(step)
        self.last_steps = steps
        try:
            if self.online is not None:
                self._unwritten.append(steps)
                await self._write_online()
                if not self._unwritten:
                    now = time.monotonic()
                    self.stats.close_to_online_s.append(now - decided)
                    self.stats.interval_end_to_online_s.append(max(0.0, (self.clock_ns() - end) / NS_PER_S))
            if self.on_close is not None:
                await self.on_close(start_ns, bars, steps, decided)
        finally:  # recorded after the decision: nothing on its path that can wait
            if self.recorder is not None:
                for bar in bars:
                    self.recorder.add_bar(bar)
                for fs, step in zip(self.feature_sets, steps, strict=True):
                    if step.symbols:
                        self.recorder.add_features(fs, step.ts_ns, step.symbols, step.values)
        return steps

    async def _write_online(self) -> None:
        assert self.online is not None
        while self._unwritten:
            steps = self._unwritten[0]
            items = [
                (fs, s.ts_ns, s.symbols, s.values) for fs, s in zip(self.feature_sets, steps, strict=True) if s.symbols
            ]
            try:
                refused = await asyncio.to_thread(self.online.write_latest_many, items)
            except StorageError as exc:
                self.stats.online_failures += 1
                self.stats.last_error = str(exc)
                if self.stats.online_failures <= 5 or self.stats.online_failures % 100 == 0:
                    log.warning("online store unavailable (%s); %d intervals wait", exc, len(self._unwritten))
                break
            except DataValidationError as exc:  # a bug, not an outage: say so and move on
                log.error("online write refused: %s", exc)
                self.stats.last_error = str(exc)
            else:
                self.stats.online_writes += 1
                self.stats.online_refused += refused
            self._unwritten.popleft()
        self.stats.online_unwritten = len(self._unwritten)
