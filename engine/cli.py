"""The engine's command line.

::

    python -m engine record --replay 20 --duration 30 --bar-seconds 1
    python -m engine record --venue coinbase --symbols BTC-USD,ETH-USD
    python -m engine record --venue binance --symbols BTC-USDT --binance-url ws://127.0.0.1:8765 \\
        --binance-rest-url http://127.0.0.1:8765
    python -m engine replay --symbols 50 --speed 10 --faults drop=100@book,close=5000
    python -m engine replay --coinbase-recording PATH --speed 0

PostgreSQL and Redis come from ``DATABASE_URL``/``REDIS_URL`` or the embedded servers
under ``RRR_HOME`` (started when needed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from engine.errors import EngineError
from engine.feeds import binance, coinbase
from engine.record import RecordOptions, RecordSummary, record
from engine.replay.faults import parse_faults
from engine.replay.market import RecordedTape, SyntheticFeed
from engine.replay.server import ReplayExchange
from feature_store.config import FeatureStoreSettings
from feature_store.errors import FeatureStoreError
from feature_store.features.catalog import FEATURE_SETS

__all__ = ["main"]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="The RRRalgorithms trading engine.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection event")
    sub = parser.add_subparsers(dest="command", required=True)

    rec = sub.add_parser("record", help="stream venues into Redis (features) and PostgreSQL (trades, bars, books)")
    rec.add_argument(
        "--venue", action="append", choices=["coinbase", "binance"], help="venue (repeatable; default coinbase)"
    )
    rec.add_argument("--symbols", type=_symbols, default=[], help="comma-separated BASE-QUOTE symbols")
    rec.add_argument(
        "--replay",
        type=int,
        default=0,
        metavar="N",
        help="start a local replay exchange with N synthetic symbols and record it",
    )
    rec.add_argument("--trades-per-s", type=_positive_float, default=2.0, help="synthetic trades per symbol per second")
    rec.add_argument("--speed", type=_positive_float, default=1.0, help="replay speed (0: as fast as possible)")
    rec.add_argument("--faults", type=_faults, default="", help="replay fault switches, e.g. drop=100@book,close=500")
    rec.add_argument("--coinbase-url", default=coinbase.DEFAULT_URL)
    rec.add_argument("--binance-url", default=binance.DEFAULT_URL)
    rec.add_argument("--binance-rest-url", default=binance.DEFAULT_REST_URL)
    rec.add_argument("--duration", type=_positive_float, default=None, help="seconds to record (default: until Ctrl-C)")
    rec.add_argument("--bar-seconds", type=int, default=60, help="bar length in seconds (default 60)")
    rec.add_argument("--no-books", action="store_true", help="trades only: no L2 books")
    rec.add_argument("--book-every", type=_positive_float, default=1.0, help="seconds between recorded book snapshots")
    rec.add_argument("--book-depth", type=int, default=10, help="levels per side in a recorded snapshot")
    rec.add_argument(
        "--feature-sets",
        type=_symbols,
        default=sorted(FEATURE_SETS),
        help=f"online feature sets (default {','.join(sorted(FEATURE_SETS))})",
    )
    rec.add_argument("--metrics-port", type=int, default=9108, help="Prometheus port on 127.0.0.1 (-1: off)")
    rec.add_argument("--no-redis", action="store_true", help="compute features without storing them online")
    rec.add_argument("--no-database", action="store_true", help="do not record to PostgreSQL")
    rec.add_argument("--quiet", action="store_true", help="no progress line")

    rep = sub.add_parser("replay", help="run the local replay exchange (Coinbase and Binance protocols)")
    rep.add_argument("--symbols", type=int, default=20, help="synthetic symbols (default 20)")
    rep.add_argument("--trades-per-s", type=_positive_float, default=2.0, help="trades per symbol per market second")
    rep.add_argument("--speed", type=_positive_float, default=1.0, help="1 = real time, 0 = as fast as clients read")
    rep.add_argument("--faults", type=_faults, default="", help="fault switches, e.g. drop=100@book,stall=500:3")
    rep.add_argument("--no-books", action="store_true", help="trades only")
    rep.add_argument("--coinbase-recording", type=Path, help="replay this Coinbase recording instead")
    rep.add_argument("--binance-recording", type=Path, help="replay this Binance recording instead")
    rep.add_argument("--binance-rest", type=Path, help="the Binance REST depth recording that goes with it")
    rep.add_argument("--host", default="127.0.0.1")
    rep.add_argument("--port", type=int, default=8765)
    rep.add_argument("--duration", type=_positive_float, default=None, help="seconds to run (default: until Ctrl-C)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "record":
            return asyncio.run(_record(args))
        return asyncio.run(_replay(args))
    except (EngineError, FeatureStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _record(args: argparse.Namespace) -> int:
    if not args.symbols and not args.replay:
        raise EngineError("record needs --symbols (or --replay N for the local synthetic market)")
    unknown = [name for name in args.feature_sets if name not in FEATURE_SETS]
    if unknown:
        raise EngineError(f"unknown feature set(s) {unknown}; known: {sorted(FEATURE_SETS)}")
    if args.bar_seconds <= 0:
        raise EngineError(f"--bar-seconds must be > 0, got {args.bar_seconds}")
    settings = FeatureStoreSettings.from_env()
    from feature_store.services import resolve_service_urls

    urls = await asyncio.to_thread(resolve_service_urls, settings)
    options = RecordOptions(
        venues=args.venue or ["coinbase"],
        symbols=args.symbols,
        coinbase_url=args.coinbase_url,
        binance_url=args.binance_url,
        binance_rest_url=args.binance_rest_url,
        replay_symbols=args.replay,
        trades_per_s=args.trades_per_s or 2.0,
        speed=args.speed,
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
            synthetic=market, speed=args.speed, faults=args.faults, host=args.host, port=args.port
        )
    try:
        await exchange.start()
    except OSError as exc:
        raise EngineError(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
    print(f"coinbase  {exchange.coinbase_url}")
    print(f"binance   {exchange.binance_url}/stream?streams=...   REST {exchange.rest_url}/api/v3/depth", flush=True)
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
