"""Seeded fuzzing of the feed clients: real messages, mutated, through ``FeedClient.handle``.

The seed corpus is a venue's real recording (where one is given) and a synthetic stream in
the venue's own format (always). Each input is a corpus message, mutated (with probability
``mutate_share``) by one of: a field dropped, duplicated or given a value of the wrong type;
numbers huge, negative, zero, NaN or infinite; ids at or past the 64-bit limits; times out
of range; a product that is not subscribed; a book made crossed; the JSON truncated, bytes
flipped or the message made huge. Clean messages keep flowing between the mutated ones, so
that state the bad ones leave behind (a bogus trade id, a frozen book) shows as trades that
stop arriving.

A *crash* is any exception out of ``handle()`` (each would stop the engine), or a record
that reaches the sink broken: a non-finite or non-positive price or size, a time out of
range, a symbol not subscribed, a crossed book. :func:`fuzz` counts them by place and
keeps the first input of each.

Run it: ``python -m engine.feeds.fuzz --venue coinbase --inputs 1000000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from engine.errors import DecodeError
from engine.feeds import binance
from engine.feeds.book import OrderBook
from engine.feeds.client import FeedClient
from engine.feeds.decoding import MAX_TS_NS, MIN_TS_NS
from engine.feeds.polygon import PolygonDecoder
from engine.feeds.records import Quote
from engine.feeds.venues import BinanceFeed, CoinbaseFeed, PolygonFeed
from feature_store.records import Trade

__all__ = ["FuzzReport", "fuzz", "mutate", "seed_corpus"]

VENUES = ("coinbase", "binance", "polygon")
RECORDINGS = {
    "coinbase": ("coinbase_exchange_ws_2021-04-17.cryptofeed.txt", None),
    "binance": ("binance_spot_ws_2021-10-12.cryptofeed.txt", "binance_spot_rest_depth_2021-10-12.cryptofeed.txt"),
    "polygon": (None, None),  # no recording: the synthetic stream in Polygon's format
}

_WEIRD: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2**31, 2**62, 2**63 - 1, -(2**63), 1e308, -1e308, 0.5, "", "0", "-1", "abc",
    "nan", "NaN", "inf", "-inf", "1e400", "0x10", "9" * 40, "  1", [], {}, [[]], ["1", "2"], {"a": 1}, [None],
    "2021-04-17T16:43:37.089723Z", "9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z", "\u0000", "\ud7ff" * 3,
)  # fmt: skip
_TIMES: tuple[Any, ...] = (
    "9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00.000000Z", "2021-13-45T25:61:61.000000Z",
    "2021-04-17T16:43:37.089723+14:00", "2021-04-17T16:43:37", "2021-04-17T16:43:37.0897231234567Z",
    "1969-12-31T23:59:59.999999Z", "2200-01-01T00:00:00Z", "2021-04-17 16:43:37Z", -1, 0, 2**62, 10**20,
    1e300, "1634000000000", 1634000000000.5, 32503680000000, 4102444800000,
)  # fmt: skip


class Crash(Exception):
    """A broken record reached the sink."""


class CheckingSink:
    """A sink that checks every record the way the data plane relies on it."""

    def __init__(self, symbols: list[str]) -> None:
        self.symbols = set(symbols)
        self.trades = 0
        self.per_symbol: dict[str, int] = dict.fromkeys(symbols, 0)
        self.seen: set[tuple[str, str]] = set()  # trades delivered since the last reconnect

    def on_trade(self, trade: Trade) -> None:
        if trade.symbol not in self.symbols:
            raise Crash(f"trade of unsubscribed symbol {trade.symbol!r}")
        if not (0 < trade.price < math.inf and 0 < trade.size < math.inf):
            raise Crash(f"trade with price {trade.price!r} size {trade.size!r}")
        if type(trade.ts_ns) is not int or not MIN_TS_NS <= trade.ts_ns < MAX_TS_NS:
            raise Crash(f"trade time {trade.ts_ns!r}")
        if trade.side not in ("buy", "sell") or type(trade.trade_id) is not str:
            raise Crash(f"trade side {trade.side!r} id {trade.trade_id!r}")
        self.trades += 1
        self.per_symbol[trade.symbol] += 1
        self.seen.add((trade.symbol, trade.trade_id))

    def on_book(self, venue: str, book: OrderBook) -> None:
        if book.symbol not in self.symbols:
            raise Crash(f"book of unsubscribed symbol {book.symbol!r}")
        if book.crossed():
            raise Crash(f"crossed book delivered: bid {book.best_bid()} ask {book.best_ask()}")
        if type(book.ts_ns) is not int:
            raise Crash(f"book time {book.ts_ns!r}")
        bids, asks = book.top(1)
        for price, size in bids + asks:
            if not (0 < price < math.inf and 0 < size < math.inf):
                raise Crash(f"book level {price!r} {size!r}")

    def on_quote(self, quote: Quote) -> None:
        if quote.symbol not in self.symbols or not 0 < quote.bid < quote.ask < math.inf:
            raise Crash(f"quote {quote!r}")

    def on_time(self, venue: str, ts_ns: int) -> None:
        if type(ts_ns) is not int or not MIN_TS_NS <= ts_ns < MAX_TS_NS:
            raise Crash(f"venue time {ts_ns!r}")


@dataclass
class Corpus:
    """Messages of one venue, the symbols they name and (Binance) REST depth snapshots."""

    venue: str
    messages: list[bytes]
    symbols: list[str]
    snapshots: dict[str, bytes] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)


def seed_corpus(venue: str, recordings_dir: Path | None = None, synthetic: int = 4000, seed: int = 7) -> Corpus:
    """The real recording of ``venue`` (if ``recordings_dir`` has it) plus a synthetic stream."""
    from engine.replay.encoding import synthetic_stream  # the replay exchange's own messages

    messages, symbols, snapshots, sources = [], set(), {}, []
    ws_name, rest_name = RECORDINGS[venue]
    if recordings_dir is not None and ws_name is not None:
        path = recordings_dir / ws_name
        if path.is_file():
            from engine.replay.market import RecordedTape
            from feature_store.sources.recordings import iter_messages

            for message in iter_messages(path):
                messages.append(message.payload)
            sources.append(str(path))
            if rest_name is not None and (recordings_dir / rest_name).is_file():
                for name, body in RecordedTape.rest_depth(recordings_dir / rest_name).items():
                    snapshots[_engine_symbol(venue, name)] = body
    stream, stream_symbols, stream_snapshots = synthetic_stream(venue, synthetic, seed=seed)
    symbols.update(stream_symbols)
    snapshots.update(stream_snapshots)
    sources.append(f"synthetic ({synthetic} messages)")
    for payload in messages:
        symbols.update(_symbols_of(venue, payload))
    return Corpus(venue, messages + stream, sorted(symbols), snapshots, sources)


def _engine_symbol(venue: str, name: str) -> str:
    if venue == "binance" and "-" not in name:
        for quote in ("USDT", "BUSD", "USDC", "BTC", "ETH", "BNB", "USD"):
            if name.endswith(quote) and len(name) > len(quote):
                return f"{name[: -len(quote)]}-{quote}"
    return name


def _symbols_of(venue: str, payload: bytes) -> set[str]:
    try:
        msg = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return set()
    if not isinstance(msg, dict):
        return set()
    if venue == "coinbase":
        product = msg.get("product_id")
        return {product} if isinstance(product, str) else set()
    if venue == "polygon":
        return set()  # the synthetic stream names its tickers
    data = msg.get("data", msg)
    name = data.get("s") if isinstance(data, dict) else None
    return {_engine_symbol(venue, name)} if isinstance(name, str) else set()


# --- mutations ----------------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value[:4]):
            yield (*prefix, i)
            yield from _paths(item, (*prefix, i))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


def _crossed(doc: Any, rng: random.Random) -> bool:
    """Make a book message crossed: a bid above the asks (or an ask below the bids)."""
    data = doc.get("data", doc) if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        return False
    for bids_key, asks_key in (("bids", "asks"), ("b", "a")):
        bids, asks = data.get(bids_key), data.get(asks_key)
        if isinstance(bids, list) and isinstance(asks, list) and (bids or asks):
            top = max([_f(x) for x in asks if isinstance(x, list) and x] + [_f(x) for x in bids if x] + [1.0])
            data[bids_key] = [[repr(top * (1 + rng.random())), "1.5"], *bids]
            return True
    changes = data.get("changes")
    if isinstance(changes, list):
        prices = [_f(c[1:]) for c in changes if isinstance(c, list) and len(c) == 3]
        high = max([*prices, 1.0])
        changes.append(["buy", repr(high * 10), "2"])
        changes.append(["sell", repr(high / 10), "2"])
        return True
    return False


def _f(level: Any) -> float:
    try:
        return float(level[0])
    except (TypeError, ValueError, IndexError, KeyError):
        return 0.0


def mutate(payload: bytes, rng: random.Random, symbols: list[str]) -> bytes:
    """One mutation of ``payload`` (see the module's docstring)."""
    choice = rng.random()
    if choice < 0.12:  # byte-level damage
        data = bytearray(payload)
        damage = rng.randrange(5)
        if damage == 0 and data:
            return bytes(data[: rng.randrange(len(data))])
        if damage == 1 and data:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            return bytes(data)
        if damage == 2:
            return payload + payload[: rng.randrange(1, max(2, len(payload)))]
        if damage == 3:
            return rng.choice([b"", b"null", b"[]", b"{}", b"1", b'"x"', b"[{}]", b'{"data":1}', b'{"type":null}'])
        return payload[:-1] + b"," + b'"pad":"' + b"x" * rng.choice((10, 10**4, 9 * 2**20)) + b'"}'
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
    paths = list(_paths(doc))
    if not paths:
        return orjson.dumps(rng.choice(_WEIRD))
    op: float = rng.random()
    if op < 0.08 and _crossed(doc, rng):
        return _dump(doc, payload)
    path = rng.choice(paths)
    parent, key = _parent(doc, path), path[-1]
    name = str(key)
    if op < 0.25:  # drop the field
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    elif op < 0.35 and name in ("time", "E", "T", "t", "s", "e"):
        parent[key] = rng.choice(_TIMES)
    elif op < 0.45 and name in ("product_id", "s", "product_ids", "sym"):
        parent[key] = rng.choice([*_WEIRD[:6], "ZZZ-USD", "zzzusdt", symbols[0].lower(), symbols[0] + "\u0000"])
    elif op < 0.6 and name in ("trade_id", "last_trade_id", "a", "t", "U", "u", "lastUpdateId", "sequence", "q"):
        base = parent[key] if isinstance(parent[key], int) else 0
        parent[key] = rng.choice([2**62, 2**63 - 1, 2**63, -1, 0, base + 10**9, base - 10**9, base + 1, str(base)])
    elif op < 0.75:  # numbers scaled, negated or made special
        value = parent[key]
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = 1.0
        parent[key] = rng.choice(
            [repr(number * 1e300), repr(-number), "0", "nan", "inf", number * 1e6, -1e21, repr(number / 1e300)]
        )
    elif op < 0.9:
        parent[key] = rng.choice(_WEIRD)
    else:  # the field twice (the last one wins in most parsers)
        text = _dump(doc, payload)
        if text.endswith(b"}"):
            return text[:-1] + b"," + orjson.dumps(name) + b":" + orjson.dumps(rng.choice(_WEIRD)) + b"}"
        return text
    return _dump(doc, payload)


def _dump(doc: Any, fallback: bytes) -> bytes:
    try:
        return orjson.dumps(doc)
    except TypeError:  # a number past what JSON tools write (orjson stops at 64 bits)
        return fallback


# --- the run ------------------------------------------------------------------------------


class _OfflineBinance(BinanceFeed):
    """The Binance client with its REST depth fetch answered from the corpus, synchronously."""

    def __init__(self, corpus: Corpus, rng: random.Random, mutate_share: float, sink: CheckingSink) -> None:
        super().__init__(corpus.symbols, sink, url="ws://127.0.0.1:1", rest_url="http://127.0.0.1:1", max_ahead_s=None)
        self.corpus, self.rng, self.mutate_share = corpus, rng, mutate_share

    def _fetch_snapshot_later(self, symbol: str) -> None:
        body = self.corpus.snapshots.get(symbol)
        if body is None:
            return
        if self.rng.random() < self.mutate_share:
            body = mutate(body, self.rng, self.corpus.symbols)
        try:
            snapshot = binance.parse_depth_snapshot(symbol, body)
        except DecodeError:
            return  # a failed fetch: the book stays out of sync until the next resync
        self._install(symbol, snapshot)


def _client(corpus: Corpus, rng: random.Random, mutate_share: float, sink: CheckingSink) -> FeedClient:
    if corpus.venue == "coinbase":
        return CoinbaseFeed(corpus.symbols, sink, url="ws://127.0.0.1:1", max_ahead_s=None)
    if corpus.venue == "polygon":
        return PolygonFeed(corpus.symbols, sink, url="ws://127.0.0.1:1", api_key="fuzz", max_ahead_s=None)
    return _OfflineBinance(corpus, rng, mutate_share, sink)


@dataclass
class FuzzReport:
    """What one fuzz run found."""

    venue: str
    inputs: int
    mutated: int
    crashes: int
    seconds: float
    by_place: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)  # place -> first input (truncated)
    dropped: dict[str, int] = field(default_factory=dict)
    clean_trades_sent: int = 0  # unmutated trade messages fed
    clean_trades_lost: int = 0  # ... whose trade never reached the sink (neither then nor before)
    sources: list[str] = field(default_factory=list)

    @property
    def inputs_per_s(self) -> float:
        return self.inputs / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "venue": self.venue,
            "inputs": self.inputs,
            "mutated": self.mutated,
            "crashes": self.crashes,
            "seconds": round(self.seconds, 2),
            "inputs_per_s": round(self.inputs_per_s),
            "by_place": self.by_place,
            "examples": self.examples,
            "dropped": self.dropped,
            "clean_trades_sent": self.clean_trades_sent,
            "clean_trades_lost": self.clean_trades_lost,
            "sources": self.sources,
        }


def _place(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    inner = next((f for f in reversed(frames) if "/engine/" in f.filename and "fuzz.py" not in f.filename), None)
    where = f"{Path(inner.filename).name}:{inner.lineno}" if inner is not None else "?"
    return f"{type(exc).__name__} at {where}" if not isinstance(exc, Crash) else f"broken record: {str(exc)[:60]}"


def fuzz(
    venue: str,
    inputs: int,
    *,
    seed: int = 1,
    recordings_dir: Path | None = None,
    mutate_share: float = 0.5,
    reconnect_every: int = 20_000,
    corpus: Corpus | None = None,
) -> FuzzReport:
    """Feed ``inputs`` messages (a ``mutate_share`` of them mutated) through one client."""
    if venue not in VENUES:
        raise ValueError(f"unknown venue {venue!r}; known: {', '.join(VENUES)}")
    corpus = corpus or seed_corpus(venue, recordings_dir, seed=seed)
    rng = random.Random(seed)
    sink = CheckingSink(corpus.symbols)
    report = FuzzReport(venue, 0, 0, 0, 0.0, sources=corpus.sources)
    return asyncio.run(_run(corpus, rng, sink, report, inputs, mutate_share, reconnect_every))


async def _run(
    corpus: Corpus,
    rng: random.Random,
    sink: CheckingSink,
    report: FuzzReport,
    inputs: int,
    mutate_share: float,
    reconnect_every: int,
) -> FuzzReport:
    client = _client(corpus, rng, mutate_share, sink)
    messages, n = corpus.messages, len(corpus.messages)
    if corpus.venue == "polygon":
        decoder: Any = _first_of(PolygonDecoder())
    else:
        decoder = _client(corpus, random.Random(0), 0.0, CheckingSink(corpus.symbols))._decode
    trade_of = [_trade_key(decoder, m) for m in messages]
    began = time.perf_counter()
    position = 0

    def reconnect() -> None:
        sink.seen.clear()
        client._reset_books()
        client._reset_trade_ids()
        if isinstance(client, BinanceFeed):
            for symbol in client.symbols:
                client._resync(symbol, count=False)

    reconnect()
    for i in range(inputs):
        if reconnect_every and i and i % reconnect_every == 0:
            reconnect()
        if rng.random() < mutate_share:
            payload = mutate(messages[rng.randrange(n)], rng, corpus.symbols)
            report.mutated += 1
            key = None
        else:
            if position and position % n == 0:
                reconnect()  # the corpus starts over: a new connection, as the replay exchange does
            key = trade_of[position % n]
            payload = messages[position % n]
            position += 1
        try:
            client.handle(payload)
        except Exception as exc:
            report.crashes += 1
            place = _place(exc)
            report.by_place[place] = report.by_place.get(place, 0) + 1
            report.examples.setdefault(place, payload[:400].decode("utf-8", "replace"))
        if key is not None:
            report.clean_trades_sent += 1
            report.clean_trades_lost += key not in sink.seen
    report.inputs = inputs
    report.seconds = time.perf_counter() - began
    report.dropped = dict(client.stats.dropped)
    await asyncio.sleep(0)
    return report


def _first_of(decoder: PolygonDecoder) -> Any:
    def decode(payload: bytes) -> Any:
        records = decoder.decode(payload).records
        return next((r for r in records if type(r) is Trade), None)

    return decode


def _trade_key(decode: Any, payload: bytes) -> tuple[str, str] | None:
    try:
        record = decode(payload)
    except DecodeError:
        return None
    return (record.symbol, record.trade_id) if type(record) is Trade else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.feeds.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--venue", choices=VENUES, action="append", help="repeat for several (default: all)")
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--recordings", type=Path, default=None, help="folder of venue recordings to start from")
    args = parser.parse_args(argv)
    worst = 0
    for venue in args.venue or VENUES:
        report = fuzz(venue, args.inputs, seed=args.seed, recordings_dir=args.recordings)
        print(json.dumps(report.as_dict(), indent=1))
        worst = max(worst, report.crashes)
    return 1 if worst else 0


if __name__ == "__main__":
    sys.exit(main())
