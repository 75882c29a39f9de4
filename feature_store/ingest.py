"""Load market data from a source into the offline store in one step.

These are the functions the demo, the Dagster assets and the command line share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from feature_store.bars import bars_from_trades
from feature_store.errors import DataValidationError
from feature_store.market_data import MarketDataStore
from feature_store.records import trades_frame
from feature_store.sources.files import read_bars_file, read_trades_file
from feature_store.sources.recordings import read_recording_trades
from feature_store.sources.synthetic import SyntheticMarket, SyntheticMarketConfig, simulate_market

__all__ = ["IngestSummary", "import_file", "import_recording", "store_synthetic_market"]


@dataclass
class IngestSummary:
    """Rows stored per table and seconds spent per step."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


async def store_synthetic_market(
    store: MarketDataStore, config: SyntheticMarketConfig | None = None
) -> tuple[SyntheticMarket, IngestSummary]:
    """Generate the synthetic market and store its trades, 1-minute bars and news.

    Re-running with the same config replaces the same rows (idempotent).
    """
    summary = IngestSummary()
    started = time.perf_counter()
    market = simulate_market(config)
    summary.seconds["simulate"] = time.perf_counter() - started

    started = time.perf_counter()
    bars = market.bars()
    summary.seconds["bars"] = time.perf_counter() - started

    for name, frame, write in (
        ("trades", market.trades, store.write_trades),
        ("bars", bars, store.write_bars),
        ("news", market.news, store.write_news),
    ):
        started = time.perf_counter()
        summary.rows[name] = await write(frame, replace=True)
        summary.seconds[f"store_{name}"] = time.perf_counter() - started
    return market, summary


async def import_file(
    store: MarketDataStore,
    path: str | Path,
    kind: Literal["trades", "bars"],
    *,
    symbol: str | None = None,
    interval_s: int | None = None,
    replace: bool = False,
) -> int:
    """Validate a CSV/Parquet file and store it atomically; return the rows stored.

    Trades have no key the database could refuse a second copy by, so without ``replace`` a
    trades file whose symbols already have trades stored within its time span is refused
    (importing the same file twice would store every trade twice).

    Raises:
        DataValidationError: the file breaks a rule, or (trades, without ``replace``) overlaps
            stored trades; nothing is stored.
        StorageError: the write failed (nothing is stored).
    """
    if kind == "trades":
        trades = read_trades_file(path, symbol=symbol)
        if not replace and len(trades):
            symbols = sorted(trades["symbol"].unique().tolist())
            first, last = int(trades["ts_ns"].min()), int(trades["ts_ns"].max())
            stored = await store.trade_span(first, last, symbols)
            if stored is not None:
                shown = ", ".join(stored[2][:5]) + (f" and {len(stored[2]) - 5} more" if len(stored[2]) > 5 else "")
                raise DataValidationError(
                    str(path),
                    None,
                    f"trades of {shown} are already stored within this file's span "
                    f"({_iso(first)} to {_iso(last)}); import it with --replace to replace them",
                )
        return await store.write_trades(trades, replace=replace)
    return await store.write_bars(read_bars_file(path, symbol=symbol, interval_s=interval_s), replace=replace)


async def import_recording(store: MarketDataStore, path: str | Path, *, interval_s: int = 60) -> IngestSummary:
    """Store the trades of an exchange recording and the bars built from them."""
    summary = IngestSummary()
    report = read_recording_trades(path)
    trades = trades_frame(report.trades)
    summary.rows["trades"] = await store.write_trades(trades, replace=True)
    summary.rows["bars"] = await store.write_bars(bars_from_trades(trades, interval_s), replace=True)
    summary.rows["malformed_messages"] = report.malformed
    return summary


def _iso(ts_ns: int) -> str:
    return str(pd.Timestamp(ts_ns, unit="ns", tz="UTC").isoformat())


def main(argv: list[str] | None = None) -> int:
    """``python -m feature_store.ingest {trades,bars,recording} PATH [...]``.

    Exits 2 with the validation error (file, row, problem) when a file is rejected.
    """
    import argparse
    import asyncio
    import sys

    from feature_store.database import open_pool
    from feature_store.errors import DataValidationError, StorageError
    from feature_store.services import resolve_service_urls

    parser = argparse.ArgumentParser(
        prog="python -m feature_store.ingest", description="Validate a market data file and store it."
    )
    parser.add_argument("kind", choices=["trades", "bars", "recording"])
    parser.add_argument("path", type=Path)
    parser.add_argument("--symbol", help="symbol of every row, for files without a symbol column")
    parser.add_argument("--interval-s", type=int, help="bar length in seconds (bars files)")
    parser.add_argument("--replace", action="store_true", help="replace stored rows of the same symbols and times")
    args = parser.parse_args(argv)

    async def run() -> str:
        pool = await open_pool(resolve_service_urls().database_url)
        try:
            store = MarketDataStore(pool)
            if args.kind == "recording":
                summary = await import_recording(store, args.path)
                return ", ".join(f"{k} {v}" for k, v in summary.rows.items())
            rows = await import_file(
                store, args.path, args.kind, symbol=args.symbol, interval_s=args.interval_s, replace=args.replace
            )
            return f"{rows} {args.kind} rows stored"
        finally:
            await pool.close()

    try:
        print(asyncio.run(run()))
    except (DataValidationError, StorageError) as exc:
        print(f"rejected: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
