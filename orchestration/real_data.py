"""Real market data that ships inside an installed package, laid out as a ``files`` source.

``arch`` (a dependency, for GARCH) carries the daily S&P 500 and NASDAQ Composite OHLCV bars
of 1999-2018. :func:`export_index_bars` writes them as the daily files the ``files`` source
reads, so the whole loop can be tried on a real market without a download::

    python -m orchestration.real_data /tmp/indices --start 2016-01-01 --end 2019-01-01
    RRR_SOURCE=files RRR_SOURCE_DIR=/tmp/indices RRR_BAR_SECONDS=86400 RRR_CALENDAR=XNYS \\
    RRR_PARTITIONS_START=2016-01-01 RRR_PARTITIONS_END=2019-01-01 RRR_HORIZON_BARS=5 \\
        dagster job execute -m orchestration.definitions -j whole_loop

Two symbols, daily bars, a market that closes, OHLCV only and no news: the price model
forecasts each index's own return, from the OHLCV feature set, on the NYSE calendar.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

import pandas as pd

__all__ = ["export_index_bars", "index_bars"]


def index_bars(start: str = "1999-01-01", end: str = "2019-01-01") -> pd.DataFrame:
    """The daily SP500 and NASDAQ bars of ``[start, end)``: ``timestamp`` (the session's date,
    00:00 UTC), ``symbol``, ``open``, ``high``, ``low``, ``close``, ``volume``."""
    from arch.data import nasdaq, sp500

    frames = []
    for symbol, module in (("SP500", sp500), ("NASDAQ", nasdaq)):
        raw = module.load()
        raw = raw[(raw.index >= pd.Timestamp(start)) & (raw.index < pd.Timestamp(end))]
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": raw.index.strftime("%Y-%m-%d"),
                    "symbol": symbol,
                    "open": raw["Open"].to_numpy(),
                    "high": raw["High"].to_numpy(),
                    "low": raw["Low"].to_numpy(),
                    "close": raw["Close"].to_numpy(),
                    "volume": raw["Volume"].to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True).sort_values(["timestamp", "symbol"], kind="stable")


def export_index_bars(folder: Path, start: str = "1999-01-01", end: str = "2019-01-01") -> int:
    """Write :func:`index_bars` as ``<folder>/bars/YYYY-MM-DD.csv``; return the number of days written."""
    bars = index_bars(start, end)
    out = folder / "bars"
    out.mkdir(parents=True, exist_ok=True)
    days = 0
    for day, group in bars.groupby("timestamp", sort=True):
        group.to_csv(out / f"{day}.csv", index=False)
        days += 1
    return days


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write the S&P 500 and NASDAQ daily bars shipped with arch as daily files."
    )
    parser.add_argument("folder", type=Path, help="where to write bars/YYYY-MM-DD.csv")
    parser.add_argument("--start", default="1999-01-01", type=date.fromisoformat, help="first day (default 1999-01-01)")
    parser.add_argument(
        "--end", default="2019-01-01", type=date.fromisoformat, help="day after the last (default 2019-01-01)"
    )
    args = parser.parse_args(argv)
    days = export_index_bars(args.folder, args.start.isoformat(), args.end.isoformat())
    print(f"wrote {days} days of SP500 and NASDAQ daily bars to {args.folder / 'bars'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
