"""The market data sources behind the raw daily partitions.

:func:`load_days` returns what a source delivered for some UTC days, unvalidated (checking
it is the data-quality checks' job): ``trades``, ``bars``, ``news`` and, for the synthetic
market, ``oracle`` (its true expected forward return, the ceiling the price model is scored
against). :func:`available` fingerprints the days a source holds, so a sensor can tell when
new data arrived.

* ``synthetic``: the deterministic synthetic market (simulated once per process).
* ``files``: ``<dir>/{trades,bars,news}/YYYY-MM-DD.{parquet,csv}``; bars files are read
  like ``rrr-import`` reads them (OHLCV alone is enough: taker volume, VWAP and trade counts
  are filled as neutral), and built from trades when a day has trades but no bars file.
* ``recorded``: trades and news the engine recorded into PostgreSQL (any venue but the
  synthetic one); bars are built from the trades.

Bars are of the pipeline's bar length (``RRR_BAR_SECONDS``): bars of another length in a file
are an error naming both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchestration.config import OrchestrationSettings, day_bounds_ns

Frames = dict[str, pd.DataFrame]


@functools.lru_cache(maxsize=1)
def _synthetic(symbols: int, days: float, seed: int, start_ns: int, interval_s: int) -> tuple[Any, pd.DataFrame]:
    from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market

    config = SyntheticMarketConfig(symbols=symbols, days=days, seed=seed, start_ns=start_ns, interval_s=interval_s)
    market = simulate_market(config)
    return market, market.bars()


def synthetic_market(settings: OrchestrationSettings) -> tuple[Any, pd.DataFrame]:
    """The synthetic market of ``settings`` and its bars (simulated once per process)."""
    return _synthetic(
        settings.synthetic_symbols,
        settings.synthetic_days,
        settings.synthetic_seed,
        settings.synthetic_start_ns(),
        settings.bar_seconds,
    )


def load_days(settings: OrchestrationSettings, days: Sequence[str], run_db: Callable[..., Any]) -> Frames:
    """What the configured source holds for ``days`` (``run_db(work)`` runs ``work(pool)``)."""
    start, end = day_bounds_ns(days[0])[0], day_bounds_ns(days[-1])[1]
    if settings.source == "synthetic":
        market, bars = synthetic_market(settings)
        trades = market.trades
        news = market.news
        truth = market.truth
        oracle = truth.loc[truth["start_ns"].between(start, end - 1), ["symbol", "start_ns", "oracle"]]
        return {
            "trades": trades[trades["ts_ns"].between(start, end - 1)].reset_index(drop=True),
            "bars": bars[bars["start_ns"].between(start, end - 1)].reset_index(drop=True),
            "news": news.loc[
                news["ts_ns"].between(start, end - 1), ["ts_ns", "symbols", "headline", "source", "label"]
            ].reset_index(drop=True),
            "oracle": oracle.rename(columns={"start_ns": "ts_ns"}).dropna().reset_index(drop=True),
        }
    if settings.source == "files":
        assert settings.source_dir is not None
        return _from_files(settings.source_dir, days, settings.bar_seconds)
    return run_db(functools.partial(_from_database, start=start, end=end, interval_s=settings.bar_seconds))


def _empty(table: str) -> pd.DataFrame:
    from feature_store.market_data import NEWS_COLUMNS_STORED
    from feature_store.records import BAR_COLUMNS, TRADE_COLUMNS

    columns = {"trades": TRADE_COLUMNS, "bars": BAR_COLUMNS, "news": NEWS_COLUMNS_STORED}.get(
        table, ("symbol", "ts_ns", "oracle")
    )
    return pd.DataFrame(columns=list(columns))


def _read_file(folder: Path, table: str, day: str, interval_s: int) -> pd.DataFrame | None:
    for suffix, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        path = folder / table / f"{day}{suffix}"
        if path.exists():
            if table == "bars":
                return _read_bars(path, interval_s)
            frame = reader(path)
            if table == "news" and "symbols" in frame and len(frame) and isinstance(frame["symbols"].iloc[0], str):
                frame["symbols"] = frame["symbols"].str.split("|")  # CSV: symbols joined by '|'
            return frame
    return None


def _read_bars(path: Path, interval_s: int) -> pd.DataFrame:
    """A day's bars file. In the platform's own layout (every column of ``BAR_COLUMNS``) it is
    taken as it is, for the quality checks to judge row by row; any other layout (OHLCV alone,
    a ``timestamp`` column, Binance klines) is read as ``rrr-import`` reads it, which fills
    what OHLCV lacks and names the first bad row."""
    from feature_store.errors import DataValidationError
    from feature_store.records import BAR_COLUMNS
    from feature_store.sources.files import read_bars_file

    raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if set(BAR_COLUMNS) <= set(raw.columns):
        bars = raw
    else:
        # The file's own bar length when it says or shows it (two bars of a symbol); else the pipeline's.
        shows = "symbol" in raw.columns and raw["symbol"].duplicated().any()
        bars = read_bars_file(path, interval_s=None if "interval_s" in raw.columns or shows else interval_s)
    other = sorted(set(bars["interval_s"].tolist()) - {interval_s})
    if other:
        raise DataValidationError(
            str(path),
            None,
            f"holds {other[0]}-second bars; the pipeline runs on {interval_s}-second bars "
            f"(set RRR_BAR_SECONDS={other[0]} to use them)",
        )
    return bars


def _from_files(folder: Path, days: Sequence[str], interval_s: int) -> Frames:
    from feature_store.bars import bars_from_trades

    out: dict[str, list[pd.DataFrame]] = {t: [] for t in ("trades", "bars", "news")}
    for day in days:
        trades = _read_file(folder, "trades", day, interval_s)
        bars = _read_file(folder, "bars", day, interval_s)
        if bars is None and trades is not None and len(trades):
            bars = bars_from_trades(trades, interval_s)
        news = _read_file(folder, "news", day, interval_s)
        for table, frame in (("trades", trades), ("bars", bars), ("news", news)):
            if frame is not None:
                out[table].append(frame)
    frames = {t: pd.concat(f, ignore_index=True) if f else _empty(t) for t, f in out.items()}
    frames["oracle"] = _empty("oracle")
    return frames


async def _from_database(pool: Any, *, start: int, end: int, interval_s: int) -> Frames:
    from feature_store.bars import bars_from_trades
    from feature_store.market_data import MarketDataStore

    store = MarketDataStore(pool)
    trades = await store.read_trades(start, end)
    trades = trades[trades["venue"] != "synthetic"].reset_index(drop=True)
    news = await store.read_news(start, end)
    bars = bars_from_trades(trades, interval_s) if len(trades) else _empty("bars")
    return {"trades": trades, "bars": bars, "news": news, "oracle": _empty("oracle")}


def available(settings: OrchestrationSettings, run_db: Callable[..., Any]) -> dict[str, str]:
    """``{day: fingerprint}`` of the days the source holds; a changed fingerprint is new data.

    The synthetic market is fixed by its settings, so it reports nothing new.
    """
    if settings.source == "synthetic":
        return {}
    if settings.source == "files":
        assert settings.source_dir is not None
        found: dict[str, list[str]] = {}
        for path in sorted(settings.source_dir.glob("*/*")):
            if path.parent.name in ("trades", "bars", "news") and path.suffix in (".parquet", ".csv"):
                stat = path.stat()
                found.setdefault(path.stem, []).append(f"{path.parent.name}:{stat.st_size}:{stat.st_mtime_ns}")
        return {day: "|".join(parts) for day, parts in sorted(found.items())}
    return dict(run_db(_recorded_days))


_RECORDED_DAYS_SQL = """
SELECT ts_ns / 86400000000000 AS day, count(*) AS n, max(ts_ns) AS last
FROM trades WHERE venue <> 'synthetic' GROUP BY 1 ORDER BY 1
"""


async def _recorded_days(pool: Any) -> dict[str, str]:
    rows = await pool.fetch(_RECORDED_DAYS_SQL)
    out = {}
    for row in rows:
        day = np.datetime64(int(row["day"]), "D").astype(str)
        out[day] = f"{row['n']}:{row['last']}"
    return out
