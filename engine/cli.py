"""The engine's command line.

::

    python -m engine record --replay 20 --duration 10 --bar-seconds 1
    python -m engine record --venue coinbase --symbols BTC-USD,ETH-USD
    python -m engine record --venue binance --symbols BTC-USDT --binance-url ws://127.0.0.1:8765 \\
        --binance-rest-url http://127.0.0.1:8765
    python -m engine replay --symbols 50 --speed 10 --faults drop=100@book,close=5000
    python -m engine replay --coinbase-recording PATH --speed 0
    python -m engine run --replay 20 --speed 60 --market-clock --duration 20   # paper trading, synthetic market
    python -m engine backtest --venue coinbase --account bt1                   # the same code over stored trades
    python -m engine status --account paper
    python -m engine backfill --venue binance --symbols BTC-USDT,ETH-USDT --days 7      # bar history over REST

PostgreSQL and Redis come from ``DATABASE_URL``/``REDIS_URL`` or the embedded servers
under ``RRR_HOME`` (started when needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from engine.backfill import VENUES as BACKFILL_VENUES
from engine.backfill import BackfillOptions, backfill, print_progress
from engine.backtest import BacktestOptions, backtest
from engine.config import EngineConfig
from engine.errors import ConfigError, EngineError
from engine.feeds import binance, coinbase, polygon
from engine.record import RecordOptions, RecordSummary, record
from engine.replay.faults import parse_faults
from engine.replay.market import RecordedTape, SyntheticFeed
from engine.replay.server import ReplayExchange
from engine.summary import TradeSummary
from engine.trade import TradingOptions, account_status, run_trading
from engine.trading.execution import PaperCosts
from engine.trading.risk import RiskLimits
from engine.trading.strategy import FAMILIES, ORDER_TYPES, StrategyParams
from feature_store.config import FeatureStoreSettings
from feature_store.database import open_pool
from feature_store.errors import FeatureStoreError
from feature_store.features.catalog import FEATURE_SETS, ONLINE_DEFAULT
from feature_store.records import NS_PER_S

__all__ = ["main"]

T = TypeVar("T", int, float)


def _number(kind: Callable[[str], T], least: float, what: str) -> Callable[[str], T]:
    """An argparse type: ``kind(text)``, refused with a clear message when not a ``what`` >= ``least``."""

    def parse(text: str) -> T:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not value >= least:
            raise argparse.ArgumentTypeError(f"must be >= {least:g}, got {text}")
        return value

    return parse


_positive_float = _number(float, 0, "a number")
_count = _number(int, 1, "a whole number")


def _faults(text: str) -> str:
    try:
        parse_faults(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _symbols(text: str) -> list[str]:
    out = [s.strip() for s in text.split(",") if s.strip()]
    if not out:
        raise argparse.ArgumentTypeError("give at least one symbol, e.g. BTC-USD,ETH-USD")
    return out


def _stream_arguments(rec: argparse.ArgumentParser) -> None:
    rec.add_argument(
        "--venue",
        action="append",
        choices=["coinbase", "binance", "polygon"],
        help="venue (repeatable; default coinbase; polygon needs POLYGON_API_KEY)",
    )
    rec.add_argument("--symbols", type=_symbols, default=[], help="comma-separated BASE-QUOTE symbols")
    rec.add_argument(
        "--replay",
        type=int,
        default=0,
        metavar="N",
        help="start a local replay exchange with N synthetic symbols and record it",
    )
    rec.add_argument(
        "--replay-url",
        default="",
        metavar="URL",
        help="stream from a replay exchange already running at URL (python -m engine replay), all its symbols "
        "unless --symbols names some",
    )
    rec.add_argument("--trades-per-s", type=_positive_float, default=2.0, help="synthetic trades per symbol per second")
    rec.add_argument("--speed", type=_positive_float, default=1.0, help="replay speed (0: as fast as possible)")
    rec.add_argument("--faults", type=_faults, default="", help="replay fault switches, e.g. drop=100@book,close=500")
    rec.add_argument(
        "--market-clock",
        action="store_true",
        help="stamp replayed trades with market time (with --speed 60, a 1-minute bar closes every second)",
    )
    rec.add_argument("--coinbase-url", default=coinbase.DEFAULT_URL)
    rec.add_argument("--binance-url", default=binance.DEFAULT_URL)
    rec.add_argument("--binance-rest-url", default=binance.DEFAULT_REST_URL)
    rec.add_argument("--polygon-url", default=polygon.DEFAULT_URL, help="Polygon stocks WebSocket")
    rec.add_argument("--polygon-rest-url", default=polygon.DEFAULT_REST_URL, help="Polygon REST (aggregates)")
    rec.add_argument("--duration", type=_positive_float, default=None, help="seconds to record (default: until Ctrl-C)")
    rec.add_argument(
        "--bar-seconds", type=int, default=None, help="bar length in seconds (default RRR_BAR_SECONDS or 60)"
    )
    rec.add_argument("--no-books", action="store_true", help="trades only: no L2 books")
    rec.add_argument("--book-every", type=_positive_float, default=1.0, help="seconds between recorded book snapshots")
    rec.add_argument("--book-depth", type=int, default=10, help="levels per side in a recorded snapshot")
    rec.add_argument(
        "--feature-sets",
        type=_symbols,
        default=list(ONLINE_DEFAULT),
        help=f"online feature sets (default {','.join(ONLINE_DEFAULT)}; "
        f"run and backtest add those the served models read; known: {','.join(sorted(FEATURE_SETS))})",
    )
    rec.add_argument("--metrics-port", type=int, default=9108, help="Prometheus port on 127.0.0.1 (-1: off)")
    rec.add_argument("--no-redis", action="store_true", help="compute features without storing them online")
    rec.add_argument("--no-database", action="store_true", help="do not record to PostgreSQL")
    rec.add_argument("--quiet", action="store_true", help="no progress line")


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _trading_arguments(p: argparse.ArgumentParser) -> None:
    limits, costs = RiskLimits(), PaperCosts()
    p.add_argument("--account", default="paper", help="account name (state is kept per account; default paper)")
    p.add_argument("--initial-cash", type=_decimal, default=Decimal(1_000_000), help="cash of a new account")
    p.add_argument("--serving-url", default=None, help="model service (default RRR_SERVING_URL or :3000)")
    p.add_argument("--model-timeout", type=_positive_float, default=0.5, help="seconds per forecast call")
    p.add_argument(
        "--order-ttl", type=_positive_float, default=None, help="seconds an order may wait for fills (default: one bar)"
    )
    p.add_argument("--grace", type=_positive_float, default=0.25, help="seconds late trades may still join a bar")
    p.add_argument("--max-position-notional", type=_decimal, default=limits.max_position_notional)
    p.add_argument("--max-gross-notional", type=_decimal, default=limits.max_gross_notional)
    p.add_argument("--max-orders-per-s", type=int, default=limits.max_orders_per_s)
    p.add_argument("--price-band", type=_decimal, default=limits.price_band, help="fraction from the last trade")
    p.add_argument("--max-var", type=_decimal, default=limits.max_var_fraction, help="portfolio VaR99 / equity")
    p.add_argument("--max-data-age", type=_positive_float, default=limits.max_data_age_s, help="seconds")
    p.add_argument("--max-drawdown", type=_decimal, default=limits.max_drawdown, help="kill switch, a fraction")
    p.add_argument("--fee-bps", type=_decimal, default=costs.taker_fee_bps, help="paper taker fee")
    p.add_argument("--maker-fee-bps", type=_decimal, default=costs.maker_fee_bps, help="paper maker fee")
    p.add_argument("--slippage-bps", type=_decimal, default=costs.slippage_bps, help="paper slippage")
    p.add_argument("--participation", type=_decimal, default=costs.participation, help="share of a trade a fill takes")
    s = p.add_argument_group(
        "strategy overrides",
        "the engine trades the strategy the price model was validated with (published by the model "
        "service); each flag given overrides one parameter, with a warning",
    )
    s.add_argument("--strategy-family", choices=FAMILIES, default=None, help="default: the validated family")
    s.add_argument("--gross", type=_positive_float, default=None, help="gross exposure, a fraction of equity")
    s.add_argument("--cap", type=_positive_float, default=None, help="largest weight of one symbol")
    s.add_argument("--band", type=_positive_float, default=None, help="no-trade band, in weight")
    s.add_argument("--holding", type=int, default=None, help="bars over which the book moves to a new target")
    s.add_argument("--entry-z", type=_positive_float, default=None, help="per-symbol: |mean/sd| to open")
    s.add_argument("--exit-z", type=_positive_float, default=None, help="per-symbol: |mean/sd| to keep")
    s.add_argument("--order-type", choices=ORDER_TYPES, default=None, help="market or limit (at the bar close)")
    p.add_argument(
        "--warmup-bars",
        type=int,
        default=800,
        help="bars of history to warm the features up with (replay: from the synthetic market; else stored bars)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


_OVERRIDES = {
    "strategy_family": "family",
    "gross": "gross",
    "cap": "cap",
    "band": "band",
    "holding": "holding",
    "entry_z": "entry_z",
    "exit_z": "exit_z",
    "order_type": "order_type",
}


def _strategy_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The strategy flags given on the command line (checked when they meet the served strategy)."""
    return {field: getattr(args, flag) for flag, field in _OVERRIDES.items() if getattr(args, flag, None) is not None}


def _trading_options(args: argparse.Namespace) -> TradingOptions:
    try:
        return TradingOptions(
            account=args.account,
            initial_cash=args.initial_cash,
            serving_url=args.serving_url,
            model_timeout_s=args.model_timeout,
            order_ttl_s=args.order_ttl,
            grace_s=args.grace,
            limits=RiskLimits(
                max_position_notional=args.max_position_notional,
                max_gross_notional=args.max_gross_notional,
                max_orders_per_s=args.max_orders_per_s,
                price_band=args.price_band,
                max_var_fraction=args.max_var,
                max_data_age_s=args.max_data_age,
                max_drawdown=args.max_drawdown,
            ),
            costs=PaperCosts(
                taker_fee_bps=args.fee_bps,
                maker_fee_bps=args.maker_fee_bps,
                slippage_bps=args.slippage_bps,
                participation=args.participation,
            ),
            strategy_overrides=_strategy_overrides(args),
            news=getattr(args, "news", None),
            warmup_bars=args.warmup_bars,
            namespace=getattr(args, "online_namespace", None),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


class _DefaultsShown(argparse.HelpFormatter):
    """Help that shows each option's default, unless the help already says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsShown)
        super().__init__(*args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="The RRRalgorithms trading engine.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection event")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    rec = sub.add_parser("record", help="stream venues into Redis (features) and PostgreSQL (trades, bars, books)")
    _stream_arguments(rec)

    run = sub.add_parser("run", help="trade on paper: stream venues (or --replay N), decide at each bar, store it all")
    _stream_arguments(run)
    _trading_arguments(run)
    run.add_argument("--news", type=Path, default=None, help="JSON-lines headlines file to follow and score")
    run.add_argument("--online-namespace", default=None, help="keep online features apart from the live ones")

    ing = sub.add_parser("ingest", help="services mode: one shard's feeds, bars, features and recording; "
                         "announces each close on the bar stream")  # fmt: skip
    _stream_arguments(ing)
    ing.add_argument("--shard", required=True, help="this shard, i/n (e.g. 0/2): the symbols whose CRC-32 mod n is i")
    ing.add_argument("--warmup-bars", type=int, default=800, help="bars of history to warm up from (default 800)")

    trd = sub.add_parser("trade", help="services mode: decide every bar the ingest shards announce, trade on paper")
    _stream_arguments(trd)
    _trading_arguments(trd)
    trd.add_argument("--shards", type=_count, required=True, help="how many ingest shards announce bars")
    trd.add_argument("--consumer", default="trader-1", help="this trader's name in the stream's consumer group")

    bt = sub.add_parser("backtest", help="the same trading code over stored trades, with a simulated clock")
    bt.add_argument("--symbols", type=_symbols, default=[], help="comma-separated symbols (default: all stored)")
    bt.add_argument("--venue", default=None, help="only trades of this venue")
    bt.add_argument("--start-ns", type=int, default=None, help="first trade time, epoch ns (default: the first stored)")
    bt.add_argument("--end-ns", type=int, default=None, help="last trade time, epoch ns (default: the last stored)")
    bt.add_argument(
        "--bar-seconds", type=int, default=None, help="bar length in seconds (default RRR_BAR_SECONDS or 60)"
    )
    bt.add_argument("--pace", type=_positive_float, default=0.0, help="wall seconds per bar at least (to watch it)")
    bt.add_argument(
        "--max-gap-bars",
        type=_count,
        default=None,
        help="jump over more bars than this without a stored trade, warming the features up again after them "
        "(default: twice the warm-up bars, at least 120)",
    )
    _trading_arguments(bt)

    st = sub.add_parser("status", help="an account from the database: positions, PnL, open orders, last decisions")
    st.add_argument("--account", default="paper")
    st.add_argument("--decisions", type=int, default=10, help="how many recent decisions to show")
    st.add_argument("--json", action="store_true", help="print JSON")

    bf = sub.add_parser("backfill", help="fetch a venue's bar history over REST into the bars table (resumable)")
    bf.add_argument("--venue", required=True, choices=list(BACKFILL_VENUES))
    bf.add_argument("--symbols", type=_symbols, required=True, help="comma-separated BASE-QUOTE symbols")
    bf.add_argument("--days", type=_positive_float, default=1.0, help="days of history before now (default 1)")
    bf.add_argument(
        "--bar-seconds", type=int, default=None, help="bar length in seconds (default RRR_BAR_SECONDS or 60)"
    )
    bf.add_argument("--rest-url", default="", help="the venue's REST URL (default: the venue's public API)")
    bf.add_argument("--max-requests-per-s", type=_positive_float, default=10.0, help="request pacing (default 10)")
    bf.add_argument("--json", action="store_true", help="print the summary as JSON")

    rep = sub.add_parser("replay", help="run the local replay exchange (Coinbase and Binance protocols)")
    rep.add_argument("--symbols", type=int, default=20, help="synthetic symbols (default 20)")
    rep.add_argument("--trades-per-s", type=_positive_float, default=2.0, help="trades per symbol per market second")
    rep.add_argument("--speed", type=_positive_float, default=1.0, help="1 = real time, 0 = as fast as clients read")
    rep.add_argument("--faults", type=_faults, default="", help="fault switches, e.g. drop=100@book,stall=500:3")
    rep.add_argument("--no-books", action="store_true", help="trades only")
    rep.add_argument("--history-bars", type=int, default=1000, help="bars of history served over REST (default 1000)")
    rep.add_argument("--rest-limit", type=int, default=None, help="REST requests answered per second (default: all)")
    rep.add_argument("--coinbase-recording", type=Path, help="replay this Coinbase recording instead")
    rep.add_argument("--binance-recording", type=Path, help="replay this Binance recording instead")
    rep.add_argument("--binance-rest", type=Path, help="the Binance REST depth recording that goes with it")
    rep.add_argument("--host", default="127.0.0.1")
    rep.add_argument("--port", type=int, default=8765)
    rep.add_argument("--duration", type=_positive_float, default=None, help="seconds to run (default: until Ctrl-C)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        # The one configuration every command shares: refuses RRR_ENGINE_MODE=live rather than
        # paper-trading in its place, and gives the bar length its default.
        config = EngineConfig.from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "bar_seconds", 0) is None:
        args.bar_seconds = config.interval.seconds
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "record":
            return asyncio.run(_record(args))
        if args.command == "run":
            return asyncio.run(_run(args))
        if args.command == "backtest":
            return asyncio.run(_backtest(args))
        if args.command == "status":
            return asyncio.run(_status(args))
        if args.command == "backfill":
            return asyncio.run(_backfill(args))
        if args.command in ("ingest", "trade"):
            from engine.streams import main as streams_main

            settings = FeatureStoreSettings.from_env()
            trading = _trading_options(args) if args.command == "trade" else None
            return asyncio.run(streams_main(args, _record_options(args, settings), trading, settings))
        return asyncio.run(_replay(args))
    except (EngineError, FeatureStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _record_options(args: argparse.Namespace, settings: FeatureStoreSettings) -> RecordOptions:
    if not args.symbols and not args.replay and not args.replay_url:
        raise EngineError(
            f"{args.command} needs --symbols (or --replay N for the local synthetic market, or --replay-url URL)"
        )
    unknown = [name for name in args.feature_sets if name not in FEATURE_SETS]
    if unknown:
        raise EngineError(f"unknown feature set(s) {unknown}; known: {sorted(FEATURE_SETS)}")
    if args.bar_seconds <= 0:
        raise EngineError(f"--bar-seconds must be > 0, got {args.bar_seconds}")
    return RecordOptions(
        venues=args.venue or ["coinbase"],
        symbols=args.symbols,
        coinbase_url=args.coinbase_url,
        binance_url=args.binance_url,
        binance_rest_url=args.binance_rest_url,
        polygon_url=args.polygon_url,
        polygon_rest_url=args.polygon_rest_url,
        replay_symbols=args.replay,
        replay_url=args.replay_url,
        trades_per_s=args.trades_per_s or 2.0,
        speed=args.speed,
        market_clock=args.market_clock,
        faults=args.faults,
        duration_s=args.duration,
        bar_seconds=args.bar_seconds,
        books=not args.no_books,
        book_every_s=args.book_every,
        book_depth=args.book_depth,
        feature_sets=args.feature_sets,
        metrics_port=args.metrics_port,
        online=not args.no_redis,
        database=not args.no_database,
        spool_dir=settings.home / "spool",
    )


async def _urls(settings: FeatureStoreSettings) -> Any:
    from feature_store.services import resolve_service_urls

    return await asyncio.to_thread(resolve_service_urls, settings)


async def _record(args: argparse.Namespace) -> int:
    settings = FeatureStoreSettings.from_env()
    options = _record_options(args, settings)
    urls = await _urls(settings)
    interactive = sys.stderr.isatty() and not args.quiet

    def progress(summary: RecordSummary) -> None:
        if args.quiet:
            return
        feeds = " ".join(f"{v}:{s['messages']}msg/{s['trades']}tr" for v, s in summary.feeds.items())
        stored = sum(summary.written.values())
        line = (
            f"[{summary.seconds:6.1f}s] {feeds} bars {summary.plane['bars']} stored {stored} "
            f"pending {summary.pending_rows}"
        )
        print(("\r" + line) if interactive else line, end="" if interactive else "\n", file=sys.stderr, flush=True)

    summary = await record(options, database_url=urls.database_url, redis_url=urls.redis_url, progress=progress)
    if interactive:
        print(file=sys.stderr)
    print("\n".join(summary.lines()))
    return 0


def _print_progress(args: argparse.Namespace, line: str) -> None:
    if getattr(args, "quiet", False):
        return
    interactive = sys.stderr.isatty()
    print(("\r" + line) if interactive else line, end="" if interactive else "\n", file=sys.stderr, flush=True)


def _print_summary(args: argparse.Namespace, summary: TradeSummary) -> None:
    if sys.stderr.isatty() and not getattr(args, "quiet", False):
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        print("\n".join(summary.lines()))


def _trade_progress(args: argparse.Namespace) -> Any:
    def progress(s: TradeSummary) -> None:
        _print_progress(
            args,
            f"[{s.seconds:6.1f}s] trades {s.trades} bars {s.bars} orders {s.orders} fills {s.fills} "
            f"denials {sum(s.denials.values())} PnL {s.pnl:.2f}",
        )

    return progress


async def _run(args: argparse.Namespace) -> int:
    settings = FeatureStoreSettings.from_env()
    record_options = _record_options(args, settings)
    if not record_options.database:
        raise EngineError("run stores every order before sending it: it needs PostgreSQL (drop --no-database)")
    options = _trading_options(args)
    urls = await _urls(settings)
    summary = await run_trading(
        record_options,
        options,
        database_url=urls.database_url,
        redis_url=urls.redis_url if record_options.online else None,
        progress=_trade_progress(args),
    )
    _print_summary(args, summary)
    failure = summary.failure()
    if failure:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    return 0


async def _backtest(args: argparse.Namespace) -> int:
    if args.bar_seconds <= 0:
        raise EngineError(f"--bar-seconds must be > 0, got {args.bar_seconds}")
    options = _trading_options(args)
    urls = await _urls(FeatureStoreSettings.from_env())
    data = BacktestOptions(
        symbols=args.symbols,
        venue=args.venue,
        start_ns=args.start_ns,
        end_ns=args.end_ns,
        bar_seconds=args.bar_seconds,
        pace_s=args.pace,
        max_gap_bars=args.max_gap_bars,
    )
    summary = await backtest(
        data, options, database_url=urls.database_url, redis_url=urls.redis_url, progress=_trade_progress(args)
    )
    _print_summary(args, summary)
    return 130 if summary.stopped_early else 0


async def _backfill(args: argparse.Namespace) -> int:
    now = time.time_ns()
    options = BackfillOptions(
        venue=args.venue,
        symbols=tuple(args.symbols),
        start_ns=now - int(args.days * 86400 * NS_PER_S),
        end_ns=now,
        bar_seconds=args.bar_seconds,
        rest_url=args.rest_url,
        max_requests_per_s=args.max_requests_per_s or 10.0,
    )
    urls = await _urls(FeatureStoreSettings.from_env())
    pool = await open_pool(urls.database_url, min_size=1, max_size=2)
    try:
        summary = await backfill(options, pool, progress=None if args.json else print_progress)
    finally:
        await pool.close()
    if args.json:
        print(json.dumps({**vars(summary), "bars_per_s": summary.bars_per_s}, indent=2))
    else:
        print("\n".join(summary.lines()))
    return 0


async def _status(args: argparse.Namespace) -> int:
    urls = await _urls(FeatureStoreSettings.from_env())
    status = await account_status(urls.database_url, args.account, decisions=args.decisions)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    print(f"account {status['account']}: equity {status['equity']}", end=" ")
    print(f"(PnL {status['pnl']}, realized {status['realized_pnl']})")
    print(f"  cash {status['cash']} of {status['initial_cash']}; kill switch: {status['kill_switch'] or 'not tripped'}")
    strategy = status["strategy"]
    if strategy:
        params = StrategyParams.from_json({k: v for k, v in strategy.items() if k != "since_ns"})
        print(f"  strategy: {params.describe()}")
        print(f"    in force since {strategy.get('since_ns')} (ns); parameters: ", end="")
        print(", ".join(f"{k}={v}" for k, v in sorted(strategy.items()) if k not in ("origin", "since_ns")))
    else:
        print("  strategy: none recorded (the account has not traded yet)")
    print(f"  positions ({len(status['positions'])}):")
    for p in status["positions"]:
        print(f"    {p['symbol']:<12} {p['quantity']:>16} @ {p['average_price']} (mark {p['mark']})")
    print(f"  open orders ({len(status['open_orders'])}):")
    for o in status["open_orders"]:
        print(f"    {o['client_order_id']} {o['side']} {o['quantity']} filled {o['filled']} [{o['status']}]")
    print("  last decisions:")
    for d in status["last_decisions"]:
        models = ", ".join(f"{k}={v}" for k, v in sorted(d["model_versions"].items()))
        print(f"    {d['ts_ns']} {d['symbol']:<12} {d['action']:<6} target {d['target_position']}", end=" ")
        print(f"[{models}] {d['reason']}")
    for e in status["risk_events"]:
        print(f"  risk event {e['ts_ns']} {e['kind']} {e['symbol']}: {e['reason']}")
    return 0


async def _replay(args: argparse.Namespace) -> int:
    if args.coinbase_recording or args.binance_recording:
        exchange = ReplayExchange(
            coinbase_tape=RecordedTape(args.coinbase_recording) if args.coinbase_recording else None,
            binance_tape=RecordedTape(args.binance_recording) if args.binance_recording else None,
            binance_rest=RecordedTape.rest_depth(args.binance_rest) if args.binance_rest else None,
            speed=args.speed,
            faults=args.faults,
            host=args.host,
            port=args.port,
        )
    else:
        if args.symbols < 1:
            raise EngineError(f"--symbols must be >= 1, got {args.symbols}")
        market = SyntheticFeed(args.symbols, trades_per_s=args.trades_per_s or 2.0, books=not args.no_books)
        exchange = ReplayExchange(
            synthetic=market, speed=args.speed, faults=args.faults, host=args.host, port=args.port,
            history_bars=args.history_bars, rest_limit=args.rest_limit,
        )  # fmt: skip
    try:
        await exchange.start()
    except OSError as exc:
        raise EngineError(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
    print(f"coinbase  {exchange.coinbase_url}")
    print(f"binance   {exchange.binance_url}/stream?streams=...   REST {exchange.rest_url}/api/v3/depth, /klines")
    print(f"history   {exchange.rest_url}/products/<id>/candles (Coinbase)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.duration)
    except TimeoutError:
        pass
    finally:
        await exchange.stop()
    print(f"served: {dict(exchange.stats)}")
    return 0
