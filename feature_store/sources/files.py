"""Import trades and OHLCV bars from CSV or Parquet files, validated as a whole.

Accepted layouts:

* **Generic**, with a header row (names are case-insensitive; aliases in brackets):
  trades ``timestamp [ts, time, ts_ns], symbol, price, size [qty, quantity, amount]`` and
  optionally ``side`` (buy/sell, b/s), ``trade_id [id]``, ``venue``;
  bars ``timestamp [open_time, start, start_ns, time], symbol, open, high, low, close,
  volume`` and optionally ``buy_volume [taker_buy_base]``, ``vwap``, ``trades [count]``,
  ``interval_s``.
* **Binance public data** (data.binance.vision), no header: klines with 12 columns
  (open time, OHLC, volume, close time, quote volume, trade count, taker buy base, taker buy
  quote, ignore) and trades with 7 (id, price, qty, quote qty, time, is buyer maker,
  is best match). The symbol and interval come from the file name
  (``BTCUSDT-1m-2024-01-01.csv``) unless given.

Numeric timestamps may be seconds, milliseconds, microseconds (Binance spot since 2025) or
nanoseconds; the unit is inferred from their magnitude. Text timestamps are parsed as
ISO 8601, UTC when no zone is given.

Validation rejects the whole file on the first problem, naming the file, the row (the line
number in a CSV file, the 1-based row in a Parquet file) and what is wrong: missing
columns, unparseable or NaN or infinite numbers, non-positive prices, negative sizes,
inconsistent OHLC, duplicate or out-of-order timestamps per symbol. For trades, several
trades may share a timestamp (busy venues print many per millisecond): a duplicate is the
same trade twice (same symbol and trade id).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from feature_store.errors import DataValidationError
from feature_store.records import BAR_COLUMNS, NS_PER_S, SYMBOL_PATTERN, TRADE_COLUMNS

__all__ = ["read_bars_file", "read_trades_file"]

_BINANCE_KLINE = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base",
    "taker_buy_quote",
    "ignore",
]
_BINANCE_TRADE = ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match"]
_BINANCE_NAME = re.compile(r"^(?P<symbol>[A-Z0-9]+)-(?P<interval>\d+[smhdw])-")
_INTERVAL_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

_TRADE_ALIASES = {
    "ts_ns": ("timestamp", "ts", "time", "ts_ns"),
    "symbol": ("symbol",),
    "price": ("price",),
    "size": ("size", "qty", "quantity", "amount"),
    "side": ("side",),
    "trade_id": ("trade_id", "id"),
    "venue": ("venue",),
}
_BAR_ALIASES = {
    "start_ns": ("timestamp", "open_time", "start", "start_ns", "time"),
    "symbol": ("symbol",),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "volume": ("volume",),
    "buy_volume": ("buy_volume", "taker_buy_base"),
    "vwap": ("vwap",),
    "trades": ("trades", "count"),
    "interval_s": ("interval_s",),
}
# Keep the text as written ("nan", "NA", "null" stay visible) so errors can quote it; only
# an empty field stays "" and is reported as missing.
_RAW: dict[str, Any] = {"keep_default_na": False, "na_values": []}
_MIN_NS = 946_684_800 * NS_PER_S  # 2000-01-01
_MAX_NS = 4_102_444_800 * NS_PER_S  # 2100-01-01
_MAX_COUNT = 1e15  # trades in one bar: far beyond any venue, well inside int64
# Symbols, venues and trade ids are text keys: printable, no control characters (a NUL would be
# refused by PostgreSQL halfway through a file), of a bounded length.
_KEY_TEXT = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")
_SYMBOL_TEXT = re.compile(SYMBOL_PATTERN)


@dataclass(frozen=True, slots=True)
class _Table:
    frame: pd.DataFrame
    source: str
    first_line: int  # line/row number of frame row 0

    def row(self, index: int) -> int:
        return self.first_line + index


def read_trades_file(path: str | Path, *, symbol: str | None = None, venue: str = "file") -> pd.DataFrame:
    """Read and validate a trades file; return a table with the columns ``TRADE_COLUMNS``.

    Args:
        path: a ``.csv`` (optionally ``.gz``) or ``.parquet`` file.
        symbol: the symbol of every row, for files without a symbol column.
        venue: venue recorded for rows without a venue column.

    Raises:
        DataValidationError: the file breaks a rule; nothing of it should be stored.
    """
    table = _load(Path(path), _BINANCE_TRADE)
    frame = table.frame
    if list(frame.columns) == _BINANCE_TRADE:
        taker_sold = frame["is_buyer_maker"].astype(str).str.lower().isin(["true", "1"])
        frame = pd.DataFrame(
            {
                "ts_ns": frame["time"],
                "price": frame["price"],
                "size": frame["qty"],
                "side": np.where(taker_sold, "sell", "buy"),
                "trade_id": frame["id"],
                "venue": "binance",
            }
        )
    frame = _rename(frame, _TRADE_ALIASES, table.source)
    frame = _with_symbol(frame, symbol, Path(path), table.source)
    _require(frame, ("ts_ns", "symbol", "price", "size"), table.source)
    out = pd.DataFrame(index=frame.index)
    out["venue"] = frame["venue"].astype("str") if "venue" in frame else venue
    out["symbol"] = frame["symbol"].astype("str")
    out["ts_ns"] = _timestamps(frame["ts_ns"], table)
    out["price"] = _numbers(frame["price"], "price", table, positive=True)
    out["size"] = _numbers(frame["size"], "size", table, positive=True)
    out["side"] = _sides(frame["side"], table) if "side" in frame else "unknown"
    if "trade_id" in frame:
        out["trade_id"] = frame["trade_id"].astype("str")
    else:
        out["trade_id"] = pd.Series(np.arange(len(frame)) + table.first_line).astype("str").values
    _check_symbols(out, table)
    _check_order(out, "ts_ns", table, allow_equal=True)
    _check_unique(out, ["symbol", "trade_id"], "trade id", table)
    return out[list(TRADE_COLUMNS)].reset_index(drop=True)


def read_bars_file(path: str | Path, *, symbol: str | None = None, interval_s: int | None = None) -> pd.DataFrame:
    """Read and validate an OHLCV file; return a table with the columns ``BAR_COLUMNS``.

    Optional columns the file lacks are filled as follows: ``buy_volume`` with half the
    volume (neutral order flow), ``vwap`` with the typical price ``(high + low + close) / 3``
    (also used for bars without volume), ``trades`` with 0.

    Args:
        path: a ``.csv`` (optionally ``.gz``) or ``.parquet`` file.
        symbol: the symbol of every row, for files without a symbol column.
        interval_s: bar length; inferred from the file name or the timestamps when omitted.

    Raises:
        DataValidationError: the file breaks a rule; nothing of it should be stored.
    """
    path = Path(path)
    table = _load(path, _BINANCE_KLINE)
    frame = table.frame
    binance = list(frame.columns) == _BINANCE_KLINE
    if binance:
        quote = _numbers(frame["quote_volume"], "quote_volume", table, positive=False)
        base = _numbers(frame["volume"], "volume", table, positive=False)
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 of a bar without trades: see vwap
            frame = frame.assign(vwap=quote / base)
        frame = frame.drop(columns=["close_time", "quote_volume", "taker_buy_quote", "ignore"])
    frame = _rename(frame, _BAR_ALIASES, table.source)
    frame = _with_symbol(frame, symbol, path, table.source)
    _require(frame, ("start_ns", "symbol", "open", "high", "low", "close", "volume"), table.source)
    out = pd.DataFrame(index=frame.index)
    out["symbol"] = frame["symbol"].astype("str")
    out["start_ns"] = _timestamps(frame["start_ns"], table)
    for column in ("open", "high", "low", "close"):
        out[column] = _numbers(frame[column], column, table, positive=True)
    out["volume"] = _numbers(frame["volume"], "volume", table, positive=False)
    if "buy_volume" in frame:
        out["buy_volume"] = _numbers(frame["buy_volume"], "buy_volume", table, positive=False)
    else:
        out["buy_volume"] = out["volume"] / 2.0
    typical = (out["high"] + out["low"] + out["close"]) / 3.0
    if "vwap" in frame:
        vwap = pd.to_numeric(frame["vwap"], errors="coerce")
        # A bar without volume has no VWAP (Binance: 0/0); the typical price stands in.
        out["vwap"] = vwap.where(out["volume"] > 0, typical)
        out["vwap"] = _numbers(out["vwap"], "vwap", table, positive=True)
    else:
        out["vwap"] = typical
    if "trades" in frame:
        out["trades"] = _counts(frame["trades"], "trades", table)
    else:
        out["trades"] = 0
    out["interval_s"] = _interval(frame, out, interval_s, path, table)
    _check_ohlc(out, table)
    _check_symbols(out, table)
    _check_order(out, "start_ns", table, allow_equal=False)
    return out[list(BAR_COLUMNS)].reset_index(drop=True)


# --- loading ---------------------------------------------------------------------------------


def _load(path: Path, headerless_layout: list[str]) -> _Table:
    source = str(path)
    if not path.exists():
        raise DataValidationError(source, None, "file does not exist")
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            return _Table(pd.read_parquet(path), source, 1)
        if not name.endswith((".csv", ".csv.gz")):
            raise DataValidationError(source, None, "unsupported file type (use .csv, .csv.gz or .parquet)")
        head = pd.read_csv(path, header=None, nrows=1, dtype=str)
        first = [str(v).strip() for v in head.iloc[0].tolist()] if len(head) else []
        if first and len(first) == len(headerless_layout) and _is_number(first[0]):
            frame = pd.read_csv(path, header=None, names=headerless_layout, dtype=str, **_RAW)
            return _Table(frame, source, 1)
        return _Table(pd.read_csv(path, dtype=str, **_RAW), source, 2)
    except DataValidationError:
        raise
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataValidationError(source, None, f"cannot be read: {exc}") from exc


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _rename(frame: pd.DataFrame, aliases: dict[str, tuple[str, ...]], source: str) -> pd.DataFrame:
    lower = {str(c).strip().lower(): c for c in frame.columns}
    mapping: dict[str, str] = {}
    for target, names in aliases.items():
        found = [lower[n] for n in names if n in lower]
        if len(found) > 1:
            raise DataValidationError(source, None, f"columns {found} all mean {target!r}; keep one of them")
        if found:
            mapping[found[0]] = target
    return frame[list(mapping)].rename(columns=mapping)


def _with_symbol(frame: pd.DataFrame, symbol: str | None, path: Path, source: str) -> pd.DataFrame:
    if "symbol" in frame:
        return frame
    if symbol is None:
        match = _BINANCE_NAME.match(path.name)
        if match is None and re.match(r"^[A-Z0-9]+-trades-", path.name):
            symbol = path.name.split("-")[0]
        elif match is not None:
            symbol = match.group("symbol")
    if symbol is None:
        raise DataValidationError(
            source, None, "missing column 'symbol' (pass symbol=... or name the file like BTCUSDT-1m-...)"
        )
    return frame.assign(symbol=symbol)


def _require(frame: pd.DataFrame, columns: tuple[str, ...], source: str) -> None:
    missing = [c for c in columns if c not in frame]
    if missing:
        raise DataValidationError(source, None, f"missing column(s) {missing}; found {sorted(map(str, frame.columns))}")


# --- column parsers ------------------------------------------------------------------------


def _fail(table: _Table, index: int, problem: str) -> DataValidationError:
    return DataValidationError(table.source, table.row(index), problem)


def _numbers(column: pd.Series, name: str, table: _Table, *, positive: bool) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce").astype(np.float64).to_numpy()
    raw = column.to_numpy()
    bad = np.isnan(values)
    if bad.any():
        i = int(np.argmax(bad))
        shown = raw[i]
        if shown is None or shown is pd.NA or str(shown).strip() == "":
            what = "is missing"
        elif str(shown).strip().lower() == "nan":
            what = "is NaN"
        else:
            what = f"{shown!r} is not a number"
        raise _fail(table, i, f"{name} {what}")
    if np.isinf(values).any():
        raise _fail(table, int(np.argmax(np.isinf(values))), f"{name} is infinite")
    bad = values <= 0 if positive else values < 0
    if bad.any():
        i = int(np.argmax(bad))
        rule = "> 0" if positive else ">= 0"
        raise _fail(table, i, f"{name} must be {rule}, got {float(values[i])}")
    return pd.Series(values, index=column.index)


def _counts(column: pd.Series, name: str, table: _Table) -> pd.Series:
    """Whole, non-negative counts that fit a 64-bit integer (a fractional count is refused, not truncated)."""
    values = _numbers(column, name, table, positive=False).to_numpy()
    fractional = values != np.floor(values)
    if fractional.any():
        i = int(np.argmax(fractional))
        raise _fail(table, i, f"{name} {column.iloc[i]!r} is not a whole number")
    too_big = values > _MAX_COUNT
    if too_big.any():
        i = int(np.argmax(too_big))
        raise _fail(table, i, f"{name} {column.iloc[i]!r} is larger than {_MAX_COUNT:.0e}")
    return pd.Series(values.astype(np.int64), index=column.index)


def _timestamps(column: pd.Series, table: _Table) -> pd.Series:
    numeric = pd.to_numeric(column, errors="coerce")
    is_number = numeric.notna().to_numpy()
    if len(column) and is_number.any() and not is_number.all():
        # Numbers and text in one column: name the first row that differs from the first row.
        i = int(np.argmax(is_number != is_number[0]))
        odd = column.iloc[i]
        if pd.isna(pd.to_datetime(odd, errors="coerce", utc=True, format="ISO8601")) and not is_number[i]:
            raise _fail(table, i, f"timestamp {odd!r} is not a time")
        kinds = ("a number", "text") if is_number[0] else ("text", "a number")
        raise _fail(
            table,
            i,
            f"timestamp {odd!r} is {kinds[1]} where row {table.row(0)} ({column.iloc[0]!r}) is {kinds[0]}: "
            "write every time one way",
        )
    if is_number.all():
        values = numeric.to_numpy()
        if np.isnan(values).any() or np.isinf(values).any():
            raise _fail(table, int(np.argmax(~np.isfinite(values))), "timestamp is not finite")
        # The unit follows from the magnitude: seconds, ms, µs or ns. One file, one unit.
        units = np.digitize(np.abs(values.astype(np.float64)), [1e11, 1e14, 1e17])
        if len(units) and (units != units[0]).any():
            i = int(np.argmax(units != units[0]))
            names = ("seconds", "milliseconds", "microseconds", "nanoseconds")
            raise _fail(
                table,
                i,
                f"timestamp {column.iloc[i]!r} reads as {names[units[i]]} where row {table.row(0)} "
                f"({column.iloc[0]!r}) reads as {names[units[0]]}: one unit per file",
            )
        magnitude = float(np.nanmax(np.abs(values))) if len(values) else 0.0
        factor = 10**9 if magnitude < 1e11 else 10**6 if magnitude < 1e14 else 10**3 if magnitude < 1e17 else 1
        ns = (numeric.astype(np.float64) * factor).round().astype(np.int64).to_numpy()
        if factor != 10**9 and (numeric % 1 == 0).all():
            ns = numeric.astype(np.int64).to_numpy() * factor  # exact for integer inputs
    else:
        parsed = pd.to_datetime(column, errors="coerce", utc=True, format="ISO8601")
        if parsed.isna().any():
            i = int(np.argmax(parsed.isna().to_numpy()))
            raise _fail(table, i, f"timestamp {column.iloc[i]!r} is not a time")
        ns = parsed.dt.as_unit("ns").astype(np.int64).to_numpy()
    out_of_range = (ns < _MIN_NS) | (ns > _MAX_NS)
    if out_of_range.any():
        i = int(np.argmax(out_of_range))
        raise _fail(table, i, f"timestamp {column.iloc[i]!r} is outside 2000-2100")
    return pd.Series(ns, index=column.index, dtype=np.int64)


def _sides(column: pd.Series, table: _Table) -> pd.Series:
    text = column.astype("str").str.strip().str.lower()
    mapped = text.map({"buy": "buy", "b": "buy", "sell": "sell", "s": "sell", "unknown": "unknown"})
    if mapped.isna().any():
        i = int(np.argmax(mapped.isna().to_numpy()))
        raise _fail(table, i, f"side {column.iloc[i]!r} is not buy or sell")
    return mapped.astype("str")


def _interval(frame: pd.DataFrame, out: pd.DataFrame, interval_s: int | None, path: Path, table: _Table) -> pd.Series:
    if interval_s is None and "interval_s" in frame:
        values = _numbers(frame["interval_s"], "interval_s", table, positive=True)
        return values.astype(np.int64)
    if interval_s is None:
        match = _BINANCE_NAME.match(path.name)
        if match is not None:
            spec = match.group("interval")
            interval_s = int(spec[:-1]) * _INTERVAL_S[spec[-1]]
    if interval_s is None:
        steps = out.sort_values(["symbol", "start_ns"]).groupby("symbol")["start_ns"].diff().dropna()
        steps = steps[steps > 0]
        if steps.empty:
            raise DataValidationError(table.source, None, "cannot infer the bar interval; pass interval_s=...")
        interval_s = int(steps.min() // NS_PER_S)
    if interval_s <= 0:
        raise DataValidationError(table.source, None, f"interval_s must be > 0, got {interval_s}")
    return pd.Series(interval_s, index=out.index, dtype=np.int64)


# --- table-wide checks -----------------------------------------------------------------------


def _check_symbols(out: pd.DataFrame, table: _Table) -> None:
    empty = out["symbol"].isna() | (out["symbol"].str.strip() == "")
    if empty.any():
        raise _fail(table, int(np.argmax(empty.to_numpy())), "symbol is empty")
    _check_text(out, "symbol", _SYMBOL_TEXT, "letters, digits and . _ / - only, at most 64", table)
    if "venue" in out:
        _check_text(out, "venue", _SYMBOL_TEXT, "letters, digits and . _ / - only, at most 64", table)
    if "trade_id" in out:
        _check_text(out, "trade_id", _KEY_TEXT, "no control characters, at most 64", table)


def _check_text(out: pd.DataFrame, column: str, rule: re.Pattern[str], words: str, table: _Table) -> None:
    values = out[column]
    # Each distinct value once: a file of millions of trades holds a handful of symbols.
    invalid = [v for v in values.unique() if rule.match(v) is None]
    if invalid:
        i = int(np.argmax(values.isin(invalid).to_numpy()))
        raise _fail(table, i, f"{column} {values.iloc[i]!r} is not valid ({words})")


def _check_ohlc(out: pd.DataFrame, table: _Table) -> None:
    h, lo, o, c = (out[k].to_numpy() for k in ("high", "low", "open", "close"))
    rules: tuple[tuple[np.ndarray, Callable[[int], str]], ...] = (
        (h < lo, lambda i: f"high {float(h[i])} is below low {float(lo[i])}"),
        (h < np.maximum(o, c), lambda i: f"high {float(h[i])} is below open/close"),
        (lo > np.minimum(o, c), lambda i: f"low {float(lo[i])} is above open/close"),
        (out["buy_volume"].to_numpy() > out["volume"].to_numpy(), lambda i: "buy_volume exceeds volume"),
    )
    firsts = [(int(np.argmax(bad)), message) for bad, message in rules if bad.any()]
    if firsts:
        i, message = min(firsts, key=lambda item: item[0])
        raise _fail(table, i, message(i))


def _check_order(out: pd.DataFrame, column: str, table: _Table, *, allow_equal: bool) -> None:
    # Compare each row with the previous row of the same symbol, in file order.
    previous = out.groupby("symbol", sort=False)[column].shift(1)
    prev_index = out.groupby("symbol", sort=False)[column].transform(lambda s: s.index.to_series().shift(1))
    ts = out[column]
    backwards = (ts < previous).to_numpy()
    duplicate = np.zeros(len(out), dtype=bool) if allow_equal else (ts == previous).to_numpy()
    bad = backwards | duplicate
    if bad.any():
        i = int(np.argmax(bad))
        j = int(prev_index.iloc[i])
        if duplicate[i]:
            problem = f"duplicate timestamp for {out['symbol'].iloc[i]} (same as row {table.row(j)})"
        else:
            problem = f"timestamp goes back in time for {out['symbol'].iloc[i]} (earlier than row {table.row(j)})"
        raise _fail(table, i, problem)


def _check_unique(out: pd.DataFrame, keys: list[str], what: str, table: _Table) -> None:
    dup = out.duplicated(keys, keep="first").to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        raise _fail(table, i, f"duplicate {what} {out[keys[-1]].iloc[i]!r} for {out['symbol'].iloc[i]}")
