"""History backfill over REST from the replay exchange into real PostgreSQL: paging at each
venue's limits, rate limits, resume after an interruption, and re-runs that store nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from engine.backfill import BackfillOptions, BackfillSummary, backfill, missing_runs, parse_page
from engine.errors import EngineError, FeedError
from engine.replay.market import SyntheticFeed
from engine.replay.server import ReplayExchange
from feature_store.database import open_pool
from feature_store.records import NS_PER_S

MIN = 60 * NS_PER_S


def _run(database_url: str, scenario: Callable[[Any, ReplayExchange], Awaitable[Any]], **exchange_kw: Any) -> Any:
    async def main() -> Any:
        market = SyntheticFeed(3, trades_per_s=2.0, books=False)
        exchange = await ReplayExchange(synthetic=market, speed=0.0, history_bars=2500, **exchange_kw).start()
        exchange.pause()  # history only: what the venue had before it opened to us
        pool = await open_pool(database_url, min_size=1, max_size=2)
        try:
            return await scenario(pool, exchange)
        finally:
            await pool.close()
            await exchange.stop()

    return asyncio.run(main())


def _options(exchange: ReplayExchange, venue: str, bars: int, **kw: Any) -> BackfillOptions:
    assert exchange.synthetic is not None
    end = exchange.started_ns // MIN * MIN
    return BackfillOptions(
        venue=venue, symbols=tuple(exchange.synthetic.symbols), start_ns=end - bars * MIN, end_ns=end,
        rest_url=exchange.rest_url, max_requests_per_s=200.0, **kw,
    )  # fmt: skip


async def _stored(pool: Any, symbols: tuple[str, ...]) -> dict[str, list[tuple[Any, ...]]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT symbol, start_ns, open, high, low, close, volume, buy_volume, trades FROM bars "
            "WHERE symbol = ANY($1::text[]) AND interval_s = 60 ORDER BY symbol, start_ns",
            list(symbols),
        )
    out: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        out.setdefault(r["symbol"], []).append(tuple(r)[1:])
    return out


def test_binance_klines_are_paged_resumed_and_never_stored_twice(fresh_database_url: str) -> None:
    async def scenario(pool: Any, exchange: ReplayExchange) -> None:
        options = _options(exchange, "binance", 2400)
        first = await backfill(options, pool)
        assert first.bars_stored == 3 * 2400 and first.bars_already_stored == 0
        assert first.requests == 3 * 3  # 1,000 klines a page: 3 pages per symbol
        stored = await _stored(pool, options.symbols)
        truth = {
            s: [(b.start_ns, b.open, b.high, b.low, b.close, b.volume, b.buy_volume, b.trades)
                for b in await exchange.bars(s, 60, options.start_ns, options.end_ns)]
            for s in options.symbols
        }  # fmt: skip
        assert stored == truth  # trade counts and taker volume included
        assert all(b[-1] > 0 for rows in stored.values() for b in rows)

        again = await backfill(options, pool)  # a re-run: nothing missing, nothing fetched
        assert again.requests == 0 and again.bars_stored == 0 and again.bars_already_stored == 3 * 2400

        # An interrupted backfill (a hole in the middle, the last hour missing): only that is fetched.
        symbol = options.symbols[1]
        async with pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM bars WHERE symbol = $1 AND start_ns >= $2 AND start_ns < $3",
                symbol, options.start_ns + 500 * MIN, options.start_ns + 700 * MIN,
            )  # fmt: skip
            await conn.execute("DELETE FROM bars WHERE start_ns >= $1", options.end_ns - 60 * MIN)
        resumed = await backfill(options, pool)
        assert resumed.bars_stored == 200 + 3 * 60 and resumed.requests == 1 + 3
        assert await _stored(pool, options.symbols) == stored

    _run(fresh_database_url, scenario)


def test_coinbase_candles_are_paged_at_300(fresh_database_url: str) -> None:
    async def scenario(pool: Any, exchange: ReplayExchange) -> BackfillSummary:
        options = _options(exchange, "coinbase", 700)
        summary = await backfill(options, pool)
        stored = await _stored(pool, options.symbols)
        for symbol in options.symbols:
            truth = await exchange.bars(symbol, 60, options.start_ns, options.end_ns)
            assert [r[:6] for r in stored[symbol]] == [
                (b.start_ns, b.open, b.high, b.low, b.close, b.volume) for b in truth if b.trades
            ]
            # Candles carry no trade counts or taker volume: stored as rrr-import stores OHLCV files.
            assert all(r[-1] == 0 and r[-2] == pytest.approx(r[-3] / 2) for r in stored[symbol])
        return summary

    summary = _run(fresh_database_url, scenario)
    assert summary.requests == 3 * 3 and summary.bars_stored > 3 * 600


def test_rate_limits_are_waited_out_with_retry_after(fresh_database_url: str) -> None:
    async def scenario(pool: Any, exchange: ReplayExchange) -> tuple[BackfillSummary, int, int]:
        options = _options(exchange, "binance", 3000)
        summary = await backfill(options, pool)
        served = sum([len(await exchange.bars(s, 60, options.start_ns, options.end_ns)) for s in options.symbols])
        return summary, exchange.stats["rest_rate_limited"], served

    # 3 pages per symbol asked as fast as 200 a second of an exchange that answers 2 a second.
    summary, refused, served = _run(fresh_database_url, scenario, rest_limit=2)
    assert summary.rate_limited == refused > 0 and summary.requests == 9 + refused
    assert summary.bars_stored == served > 3 * 2400


def test_bad_pages_and_bad_options_are_refused_by_name() -> None:
    with pytest.raises(EngineError, match="not in the venue's format"):
        parse_page("binance", "X-USDT", 60, b'{"code": -1121}')
    with pytest.raises(EngineError, match="inconsistent"):
        parse_page("binance", "X-USDT", 60, b'[[60000, "1", "0.5", "0.9", "1", "1", 0, "1", 1, "0.5", "0.5", "0"]]')
    with pytest.raises(FeedError, match="no 7 s klines"):
        BackfillOptions("binance", ("X-USDT",), 0, MIN, bar_seconds=7)
    with pytest.raises(FeedError, match="no 120 s candles"):
        BackfillOptions("coinbase", ("X-USD",), 0, MIN, bar_seconds=120)
    with pytest.raises(FeedError, match="unknown venue"):
        BackfillOptions("kraken", ("X-USD",), 0, MIN)
    assert missing_runs([2 * MIN, 3 * MIN, 6 * MIN], 0, 8 * MIN, MIN) == [
        (0, 2 * MIN),
        (4 * MIN, 6 * MIN),
        (7 * MIN, 8 * MIN),
    ]


def test_a_replay_of_recordings_serves_the_recorded_trades_as_klines(fresh_database_url: str, recordings_dir) -> None:
    from engine.replay.market import RecordedTape
    from feature_store.sources.recordings import read_recording_trades

    path = recordings_dir / "binance_spot_ws_2021-10-12.cryptofeed.txt"
    trades = read_recording_trades(path).trades
    first, last = min(t.ts_ns for t in trades), max(t.ts_ns for t in trades)

    async def scenario() -> tuple[BackfillSummary, int]:
        exchange = await ReplayExchange(binance_tape=RecordedTape(path), speed=0.0).start()
        pool = await open_pool(fresh_database_url, min_size=1, max_size=2)
        try:
            symbols = tuple(sorted({f"{t.symbol[:-4]}-{t.symbol[-4:]}" for t in trades if t.symbol.endswith("USDT")}))
            options = BackfillOptions("binance", symbols, first // NS_PER_S * NS_PER_S, last + NS_PER_S, 1,
                                      rest_url=exchange.rest_url)  # fmt: skip
            summary = await backfill(options, pool)
            async with pool.acquire() as conn:
                volume = await conn.fetchval(
                    "SELECT sum(volume) FROM bars WHERE symbol = ANY($1::text[])", list(symbols)
                )
            return summary, volume
        finally:
            await pool.close()
            await exchange.stop()

    summary, volume = asyncio.run(scenario())
    usdt = [t for t in trades if t.symbol.endswith("USDT")]
    assert summary.bars_stored == len({(t.symbol, t.ts_ns // NS_PER_S) for t in usdt}) > 0
    assert volume == pytest.approx(sum(t.size for t in usdt))
