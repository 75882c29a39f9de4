"""CSV/Parquet import: round trips, the Binance layouts, and every bad-input case."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest

from feature_store.database import open_pool
from feature_store.errors import DataValidationError
from feature_store.ingest import import_file
from feature_store.market_data import MarketDataStore
from feature_store.sources.files import read_bars_file, read_trades_file
from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market

# Real rows from data.binance.vision (BTCUSDT-1m-2024-01-01.csv), layout as published.
BINANCE_KLINES = """\
1704067200000,42283.58000000,42298.62000000,42261.02000000,42298.61000000,35.92724000,1704067259999,1519348.31032540,1327,18.08991000,765102.67208180,0
1704067260000,42298.62000000,42320.00000000,42298.61000000,42320.00000000,21.07470000,1704067319999,891648.99096740,1034,14.66645000,620545.11932430,0
1704067320000,42319.99000000,42331.54000000,42319.99000000,42325.50000000,21.60513000,1704067379999,914625.02698140,921,12.45064000,527085.12436230,0
"""
BINANCE_TRADES = """\
3344468493,42283.58000000,0.00100000,42.28358000,1704067200002,True,True
3344468494,42283.59000000,0.00042000,17.75910780,1704067200150,False,True
3344468495,42283.59000000,0.03000000,1268.50770000,1704067200150,False,True
"""


@pytest.fixture(scope="module")
def market():
    return simulate_market(SyntheticMarketConfig(symbols=3, days=0.2, seed=5))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_trades_and_bars_round_trip_through_files(tmp_path: Path, market, suffix: str) -> None:
    bars = market.bars()
    trades = market.trades
    for name, frame in (("trades", trades), ("bars", bars)):
        path = tmp_path / f"{name}{suffix}"
        frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    got_trades = read_trades_file(tmp_path / f"trades{suffix}")
    got_bars = read_bars_file(tmp_path / f"bars{suffix}")
    pd.testing.assert_frame_equal(got_trades, trades.reset_index(drop=True), check_dtype=False)
    pd.testing.assert_frame_equal(got_bars, bars.reset_index(drop=True), check_dtype=False)


def test_binance_kline_csv_layout(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m-2024-01-01.csv"
    path.write_text(BINANCE_KLINES)
    bars = read_bars_file(path)
    assert bars["symbol"].unique().tolist() == ["BTCUSDT"]
    assert bars["interval_s"].unique().tolist() == [60]
    assert bars["start_ns"].iloc[0] == 1_704_067_200_000 * 10**6
    first = bars.iloc[0]
    assert (first.open, first.high, first.low, first.close) == (42283.58, 42298.62, 42261.02, 42298.61)
    assert first.trades == 1327 and first.buy_volume == 18.08991
    assert first.vwap == pytest.approx(1519348.3103254 / 35.92724)


def test_binance_microsecond_timestamps_are_recognized(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m-2025-01-01.csv"
    path.write_text(
        BINANCE_KLINES.replace("1704067200000,", "1704067200000000,")
        .replace("1704067260000,", "1704067260000000,")
        .replace("1704067320000,", "1704067320000000,")
    )
    assert read_bars_file(path)["start_ns"].iloc[1] == 1_704_067_260_000 * 10**6


def test_binance_trades_csv_layout(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-01-01.csv"
    path.write_text(BINANCE_TRADES)
    trades = read_trades_file(path)
    assert trades["side"].tolist() == ["sell", "buy", "buy"]  # buyer was maker -> taker sold
    assert trades["trade_id"].tolist() == ["3344468493", "3344468494", "3344468495"]
    assert trades["venue"].unique().tolist() == ["binance"]


def test_iso_timestamps_and_aliases_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("Time,Symbol,Price,Qty,Side\n2024-01-01T00:00:00.5Z,ABC,10,1,B\n2024-01-01 00:00:01,ABC,11,2,s\n")
    trades = read_trades_file(path)
    assert trades["ts_ns"].tolist() == [1_704_067_200_500_000_000, 1_704_067_201_000_000_000]
    assert trades["side"].tolist() == ["buy", "sell"]


GOOD_BARS = "timestamp,symbol,open,high,low,close,volume\n{rows}"
ROW = "{ts},ABC,{o},{h},{l},{c},{v}\n"


def _bars_csv(tmp_path: Path, rows: list[dict], header: str | None = None) -> Path:
    base = {"o": 10, "h": 11, "l": 9, "c": 10.5, "v": 100}
    text = "".join(ROW.format(**{**base, **row}) for row in rows)
    path = tmp_path / "bars.csv"
    path.write_text((header or GOOD_BARS).format(rows=text))
    return path


@pytest.mark.parametrize(
    ("rows", "bad_line", "problem"),
    [
        ([{"ts": 60}, {"ts": 120, "c": "nan"}], 3, "close is NaN"),
        ([{"ts": 60}, {"ts": 120, "c": ""}], 3, "close is missing"),
        ([{"ts": 60, "o": "abc"}], 2, "open 'abc' is not a number"),
        ([{"ts": 60}, {"ts": 120}, {"ts": 180, "l": 0}], 4, "low must be > 0"),
        ([{"ts": 60}, {"ts": 120, "o": -3}], 3, "open must be > 0"),
        ([{"ts": 60, "v": -1}], 2, "volume must be >= 0"),
        ([{"ts": 60}, {"ts": 120, "h": 8}], 3, "high 8.0 is below low 9.0"),
        ([{"ts": 60}, {"ts": 120}, {"ts": 120}], 4, "duplicate timestamp for ABC (same as row 3)"),
        ([{"ts": 60}, {"ts": 180}, {"ts": 120}], 4, "goes back in time for ABC (earlier than row 3)"),
        ([{"ts": 60, "c": "inf"}], 2, "close is infinite"),
    ],
)
def test_bad_bar_files_name_the_file_row_and_problem(tmp_path: Path, rows, bad_line, problem) -> None:
    rows = [{**r, "ts": 1_704_067_200 + r["ts"]} for r in rows]
    path = _bars_csv(tmp_path, rows)
    with pytest.raises(DataValidationError) as info:
        read_bars_file(path)
    err = info.value
    assert err.source == str(path) and err.row == bad_line
    assert problem in err.problem
    assert f"{path}, row {bad_line}: " in str(err)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text("timestamp,symbol,open,high,close\n1704067260,ABC,1,2,1.5\n")
    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['low', 'volume'\]") as info:
        read_bars_file(path)
    assert info.value.row is None and info.value.source == str(path)


@pytest.mark.parametrize(
    ("body", "bad_line", "problem"),
    [
        ("1704067200,ABC,10,-1,buy,1\n", 2, "size must be > 0"),
        ("1704067200,ABC,0,1,buy,1\n", 2, "price must be > 0"),
        ("1704067200,ABC,10,1,buy,1\n1704067201,ABC,10,1,sell,1\n", 3, "duplicate trade id '1'"),
        ("1704067201,ABC,10,1,buy,1\n1704067200,ABC,10,1,buy,2\n", 3, "goes back in time"),
        ("1704067200,ABC,10,1,maybe,1\n", 2, "side 'maybe' is not buy or sell"),
        ("1704067200,ABC,NaN,1,buy,1\n", 2, "price is NaN"),
        ("17040,ABC,10,1,buy,1\n", 2, "outside 2000-2100"),
    ],
)
def test_bad_trade_files_name_the_file_row_and_problem(tmp_path: Path, body, bad_line, problem) -> None:
    path = tmp_path / "trades.csv"
    path.write_text("timestamp,symbol,price,size,side,trade_id\n" + body)
    with pytest.raises(DataValidationError) as info:
        read_trades_file(path)
    assert info.value.row == bad_line and problem in info.value.problem


def _kline(**changes: str) -> str:
    """The first Binance kline row with some of its fields replaced."""
    fields = BINANCE_KLINES.splitlines()[0].split(",")
    names = ["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "trades"]
    for name, value in changes.items():
        fields[names.index(name)] = value
    return ",".join(fields) + "\n"


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (_kline(quote_volume="abc"), "quote_volume 'abc' is not a number"),
        (_kline(quote_volume=""), "quote_volume is missing"),
        (_kline(trades="1e30"), "trades '1e30' is larger than 1e+15"),
        (_kline(trades="1327.5"), "trades '1327.5' is not a whole number"),
        (_kline(trades="-1"), "trades must be >= 0"),
    ],
)
def test_bad_binance_klines_name_the_row_and_never_truncate(tmp_path: Path, row: str, problem: str) -> None:
    path = tmp_path / "BTCUSDT-1m-2024-01-01.csv"
    lines = BINANCE_KLINES.splitlines(keepends=True)
    path.write_text(
        lines[0]
        + lines[1].replace(lines[1].split(",")[0], "1704067260000")
        + row.replace("1704067200000,", "1704067320000,", 1)
    )
    with pytest.raises(DataValidationError) as info:
        read_bars_file(path)
    assert info.value.row == 3 and problem in info.value.problem, info.value


@pytest.mark.parametrize(
    ("body", "bad_line", "problem"),
    [
        ("1704067200,AB\x00C,10,1,buy,1\n", 2, "symbol 'AB\\x00C' is not valid"),
        ("1704067200,ABC,10,1,buy,1\n1704067201,BTC USD,10,1,buy,2\n", 3, "symbol 'BTC USD' is not valid"),
        ("1704067200,ABC,10,1,buy,7\x00\n", 2, "trade_id '7\\x00' is not valid"),
        # a mixed time column names the row that differs, not the first one
        ("1704067200,ABC,10,1,buy,1\n2024-01-01T00:00:01Z,ABC,10,1,buy,2\n", 3, "is text where row 2"),
        ("2024-01-01T00:00:00Z,ABC,10,1,buy,1\n1704067201,ABC,10,1,buy,2\n", 3, "is a number where row 2"),
        ("1704067200,ABC,10,1,buy,1\n1704067201000,ABC,10,1,buy,2\n", 3, "reads as milliseconds where row 2"),
        ("1704067200,ABC,10,1e30,buy,1\n", None, None),  # a huge size is a size: stored as given
    ],
)
def test_bad_text_and_mixed_times_in_trade_files(tmp_path: Path, body: str, bad_line, problem) -> None:
    path = tmp_path / "trades.csv"
    path.write_text("timestamp,symbol,price,size,side,trade_id\n" + body)
    if problem is None:
        assert read_trades_file(path)["size"].tolist() == [1e30]
        return
    with pytest.raises(DataValidationError) as info:
        read_trades_file(path)
    assert info.value.row == bad_line and problem in info.value.problem, info.value


def test_importing_the_same_trades_twice_is_refused_without_replace(tmp_path: Path, fresh_database_url: str) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-01-01.csv"
    path.write_text(BINANCE_TRADES)
    other = tmp_path / "ETHUSDT-trades-2024-01-01.csv"
    other.write_text(BINANCE_TRADES)

    async def run() -> list[int]:
        pool = await open_pool(fresh_database_url)
        try:
            store = MarketDataStore(pool)
            counts = [await import_file(store, path, "trades")]
            with pytest.raises(DataValidationError, match=r"trades of BTCUSDT are already stored.*--replace"):
                await import_file(store, path, "trades")
            counts.append(await store.count("trades"))
            counts.append(await import_file(store, path, "trades", replace=True))
            counts.append(await import_file(store, other, "trades"))  # another symbol, same span: fine
            counts.append(await store.count("trades"))
            return counts
        finally:
            await pool.close()

    assert asyncio.run(run()) == [3, 3, 3, 3, 6]


def test_seeded_fuzz_of_bar_and_trade_files_gives_a_table_or_a_named_row(tmp_path: Path) -> None:
    """Mutated real files: each either reads or raises DataValidationError naming the file."""
    import random

    rng = random.Random(2026)
    seeds = {
        "BTCUSDT-1m-2024-01-01.csv": (BINANCE_KLINES, read_bars_file),
        "BTCUSDT-trades-2024-01-01.csv": (BINANCE_TRADES, read_trades_file),
        "bars.csv": (
            "timestamp,symbol,open,high,low,close,volume,trades\n"
            "1704067260,ABC,10,11,9,10.5,100,3\n1704067320,ABC,10,11,9,10.5,100,4\n",
            read_bars_file,
        ),
        "trades.csv": (
            "timestamp,symbol,price,size,side,trade_id\n"
            "2024-01-01T00:00:00Z,ABC,10,1,buy,1\n2024-01-01T00:00:01Z,ABC,10,1,sell,2\n",
            read_trades_file,
        ),
    }
    junk = ["", "nan", "inf", "-1", "1e30", "1.5", "abc", "\x00", "2024-13-01", "0", " ", "NULL", "1e-30", "9" * 40]
    outcomes = {"read": 0, "rejected": 0}
    for n in range(400):
        name, (text, reader) = rng.choice(list(seeds.items()))
        lines = text.splitlines()
        row = rng.randrange(len(lines))
        fields = lines[row].split(",")
        fields[rng.randrange(len(fields))] = rng.choice(junk)
        lines[row] = ",".join(fields)
        folder = tmp_path / str(n)
        folder.mkdir()
        path = folder / name
        path.write_text("\n".join(lines) + "\n")
        try:
            table = reader(path)
        except DataValidationError as exc:
            assert exc.source == str(path), exc
            outcomes["rejected"] += 1
            continue
        outcomes["read"] += 1
        assert not table.isna().any().any()
    assert outcomes["read"] > 0 and outcomes["rejected"] > 100


def test_trades_may_share_a_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    path.write_text("timestamp,symbol,price,size,side,trade_id\n1704067200,ABC,10,1,buy,1\n1704067200,ABC,10,1,buy,2\n")
    assert len(read_trades_file(path)) == 2


def test_bad_parquet_rows_are_numbered_from_one(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    pd.DataFrame(
        {
            "timestamp": [1_704_067_260, 1_704_067_320],
            "symbol": ["A", "A"],
            "open": [1.0, float("nan")],
            "high": [2.0, 2.0],
            "low": [0.5, 0.5],
            "close": [1.5, 1.5],
            "volume": [1.0, 1.0],
        }
    ).to_parquet(path)
    with pytest.raises(DataValidationError, match=r"row 2: open is NaN"):
        read_bars_file(path)


def test_unreadable_and_unsupported_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="does not exist"):
        read_bars_file(tmp_path / "nope.csv")
    (tmp_path / "x.xlsx").write_text("hi")
    with pytest.raises(DataValidationError, match="unsupported file type"):
        read_bars_file(tmp_path / "x.xlsx")


def test_a_rejected_file_stores_nothing_and_a_good_one_is_stored(tmp_path: Path, fresh_database_url: str) -> None:
    good = tmp_path / "BTCUSDT-1m-2024-01-01.csv"
    good.write_text(BINANCE_KLINES)
    bad = tmp_path / "BTCUSDT-1m-2024-01-02.csv"
    bad.write_text(BINANCE_KLINES + BINANCE_KLINES.splitlines()[0] + "\n")  # the first minute again

    async def run() -> tuple[int, int]:
        pool = await open_pool(fresh_database_url)
        try:
            store = MarketDataStore(pool)
            with pytest.raises(DataValidationError, match="row 4: timestamp goes back in time"):
                await import_file(store, bad, "bars")
            after_bad = await store.count("bars")
            await import_file(store, good, "bars")
            return after_bad, await store.count("bars")
        finally:
            await pool.close()

    assert asyncio.run(run()) == (0, 3)


def test_the_import_command_stores_a_good_file_and_names_the_problem_of_a_bad_one(
    tmp_path: Path, fresh_database_url: str, service_urls
) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": fresh_database_url, "REDIS_URL": service_urls.redis_url}
    good = tmp_path / "BTCUSDT-1m-2024-01-01.csv"
    good.write_text(BINANCE_KLINES)
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,symbol,price,size\n1704067200,ABC,-1,1\n")
    command = [sys.executable, "-m", "feature_store.ingest"]
    ok = subprocess.run([*command, "bars", str(good)], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == "3 bars rows stored"
    rejected = subprocess.run([*command, "trades", str(bad)], env=env, capture_output=True, text=True, timeout=60)
    assert rejected.returncode == 2
    assert f"{bad}, row 2: price must be > 0" in rejected.stderr
